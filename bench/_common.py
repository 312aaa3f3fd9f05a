"""What every benchmark shares: apps under gunicorn on 127.0.0.1, a load generator, reporting.

A benchmark compares the path it measures with a baseline measured in the same run, under the
same server settings and the same load generator, and prints both and their ratio: absolute
figures depend on the machine, the ratio much less. Nothing here asserts on time.

The load generator runs on the same machine as the server, so it competes with it for CPU. It
is kept as cheap as a Python client can be (prebuilt request bytes, one blocking keep-alive
socket per client thread, a few processes so the GIL is not the limit) and it reports how much
CPU it used per request, so a reader can tell how much of the machine the server really had.
"""

from __future__ import annotations

import contextlib
import cProfile
import functools
import http.client
import itertools
import multiprocessing
import os
import platform
import pstats
import resource
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
from array import array
from collections import Counter
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

#: Load goes to the loopback interface only, never to another host.
LOOPBACK = "127.0.0.1"
BENCH_DIR = Path(__file__).resolve().parent
#: A socket read that takes longer than this counts as an error; it also bounds every wait.
SOCKET_TIMEOUT = 30.0
#: Hard cap on requests per client connection in one run, whatever the duration.
MAX_REQUESTS_PER_CLIENT = 1_000_000
#: Error samples kept per load process, so a broken run still prints what went wrong.
ERROR_SAMPLES = 5


# --- gunicorn ------------------------------------------------------------------------------


@dataclass(frozen=True)
class ServerSettings:
    """The gunicorn settings a benchmark uses, identical for the measured app and its baseline."""

    workers: int = 2
    worker_class: str = "gthread"
    threads: int = 4
    keep_alive: int = 5

    def argv(self) -> list[str]:
        args = [
            "--workers",
            str(self.workers),
            "--worker-class",
            self.worker_class,
            "--keep-alive",
            str(self.keep_alive),
        ]
        if self.worker_class == "gthread":
            args += ["--threads", str(self.threads)]
        return args

    def describe(self) -> str:
        threads = f", {self.threads} threads each" if self.worker_class == "gthread" else ""
        return (
            f"gunicorn {self.workers} workers ({self.worker_class}{threads}), "
            f"keep-alive {self.keep_alive} s, no access log"
        )


def free_port() -> int:
    """A TCP port free on the loopback interface now (the OS picks it)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind((LOOPBACK, 0))
        return probe.getsockname()[1]


def clean_environment(extra: Mapping[str, str]) -> dict[str, str]:
    """This process's environment without the caller's own ``CASEBROKER_*`` settings, plus
    ``extra``: a benchmark must never pick up (or touch) the database of the shell it runs in."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("CASEBROKER_")}
    env.update(extra)
    return env


class Server:
    """One server process on 127.0.0.1 serving with ``workers`` child processes, stopped (by
    its own pid) when the block ends."""

    def __init__(
        self,
        name: str,
        argv: Sequence[str],
        env: Mapping[str, str],
        log_path: Path,
        workers: int,
        port: int | None = None,
        ready_path: str = "/",
        cwd: Path | None = None,
        start_timeout: float = 60.0,
    ) -> None:
        self.name = name
        self.argv = list(argv)
        self.env = dict(env)
        self.log_path = log_path
        self.workers = workers
        self.port = port or free_port()
        self.ready_path = ready_path
        self.cwd = cwd
        self.start_timeout = start_timeout
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def base_url(self) -> str:
        return f"http://{LOOPBACK}:{self.port}"

    def __enter__(self) -> Server:
        with self.log_path.open("ab") as log:
            self.process = subprocess.Popen(
                self.argv,
                env=self.env,
                cwd=self.cwd,
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
            )
        try:
            self._wait_ready()
        except BaseException:
            self.stop()
            raise
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    def _wait_ready(self) -> None:
        """Poll the ready path until it answers 200, the process dies, or time runs out."""
        assert self.process is not None
        deadline = time.monotonic() + self.start_timeout
        last = "no answer"
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(
                    f"{self.name} exited with {self.process.returncode}:\n" + tail(self.log_path)
                )
            try:
                conn = http.client.HTTPConnection(LOOPBACK, self.port, timeout=5)
                conn.request("GET", self.ready_path)
                response = conn.getresponse()
                response.read()
                conn.close()
                if response.status == 200:
                    self._wait_workers_settled(deadline)
                    return
                last = f"HTTP {response.status}"
            except OSError as exc:
                last = str(exc)
            time.sleep(0.1)
        raise RuntimeError(
            f"{self.name} not ready after {self.start_timeout:.0f} s ({last}):\n"
            + tail(self.log_path)
        )

    def _wait_workers_settled(self, deadline: float) -> None:
        """Wait until every worker has booted and gone idle.

        The ready path answers as soon as one worker serves; a worker still importing the app
        would then miss the burst of keep-alive connections at the start of a run, and the
        other worker would serve the whole run alone.
        """
        idle_since = None
        previous = None
        while time.monotonic() < deadline:
            pids = self.worker_pids()
            cpu = process_cpu(pids) if len(pids) >= self.workers else None
            if cpu is None and Path("/proc/stat").exists() is False:
                time.sleep(2.0)  # no /proc: give the workers a moment instead
                return
            now = time.monotonic()
            if cpu is not None and previous is not None and cpu - previous < 0.02:
                idle_since = idle_since or now
                if now - idle_since >= 0.5:
                    return
            else:
                idle_since = None
            previous = cpu
            time.sleep(0.1)

    def stop(self) -> None:
        """SIGTERM to the master (it stops its workers), SIGKILL if it does not exit in time."""
        process, self.process = self.process, None
        if process is None or process.poll() is not None:
            return
        process.terminate()
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=5)

    def worker_pids(self) -> list[int]:
        """The master's children: where the requests are served (Linux ``/proc`` only)."""
        return children(self.process.pid) if self.process else []


class Gunicorn(Server):
    """A WSGI app under gunicorn with the benchmark's settings."""

    def __init__(
        self,
        app: str,
        settings: ServerSettings,
        env: Mapping[str, str],
        log_path: Path,
        port: int | None = None,
        ready_path: str = "/",
        chdir: Path | None = None,
    ) -> None:
        argv = [sys.executable, "-m", "gunicorn", *settings.argv()]
        argv += ["--log-level", "warning", "--timeout", "120", "--graceful-timeout", "5"]
        if chdir is not None:
            argv += ["--chdir", str(chdir)]
        super().__init__(
            f"gunicorn ({app})", argv, env, log_path, settings.workers, port, ready_path
        )
        self.argv += ["--bind", f"{LOOPBACK}:{self.port}", app]


def tail(path: Path, lines: int = 20) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log)"


# --- CPU accounting (Linux /proc; figures are omitted elsewhere) ----------------------------

_CLOCK_TICKS = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100


def children(pid: int) -> list[int]:
    found = []
    for entry in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = entry.read_text().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            continue
        if int(fields[1]) == pid:
            found.append(int(entry.parent.name))
    return found


def process_cpu(pids: Sequence[int]) -> float | None:
    """User plus system CPU seconds of ``pids`` (all their threads), or None without /proc."""
    total = 0
    for pid in pids:
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            return None
        total += int(fields[11]) + int(fields[12])
    return total / _CLOCK_TICKS


def machine_cpu() -> tuple[float, float] | None:
    """(busy, total) CPU seconds of the whole machine since boot, or None without /proc."""
    try:
        first = Path("/proc/stat").read_text().splitlines()[0].split()
    except (OSError, IndexError):
        return None
    ticks = [int(x) for x in first[1:9]]
    idle = ticks[3] + ticks[4]
    return (sum(ticks) - idle) / _CLOCK_TICKS, sum(ticks) / _CLOCK_TICKS


# --- load generator ----------------------------------------------------------------------


def http_request(
    method: str,
    path: str,
    body: bytes = b"",
    headers: Mapping[str, str] | None = None,
    host: str = LOOPBACK,
) -> bytes:
    """A complete HTTP/1.1 keep-alive request, built once so sending it costs one syscall."""
    lines = [f"{method} {path} HTTP/1.1", f"Host: {host}", "Connection: keep-alive"]
    lines += [f"{name}: {value}" for name, value in (headers or {}).items()]
    if body or method in ("POST", "PUT", "PATCH"):
        lines.append(f"Content-Length: {len(body)}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + body


@dataclass(frozen=True)
class Expect:
    """What counts as a good answer: the status and, optionally, bytes the body must hold.

    A byte search instead of JSON parsing keeps the check cheap and picklable.
    """

    status: int = 200
    contains: bytes = b""
    #: Each request may be sent once only (it carries a single-use value): a client that has
    #: sent all of its share stops and says so, instead of going round again and being
    #: refused for a replay it did not mean.
    single_use: bool = False

    def problem(self, status: int, body: bytes) -> str | None:
        if status != self.status:
            return f"HTTP {status}: {body[:160].decode(errors='replace')}"
        if self.contains and self.contains not in body:
            return f"HTTP {status} without {self.contains.decode()}: {body[:160].decode()}"
        return None


class _Closed(Exception):
    """The server closed the connection (or asked to): reconnect."""


def _connect(port: int) -> socket.socket:
    sock = socket.create_connection((LOOPBACK, port), timeout=SOCKET_TIMEOUT)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return sock


def _exchange(sock: socket.socket, request: bytes) -> tuple[int, bytes, bool]:
    """Send one request and read its response: (status, body, connection still usable)."""
    sock.sendall(request)
    data = b""
    while (end := data.find(b"\r\n\r\n")) < 0:
        chunk = sock.recv(65536)
        if not chunk:
            raise _Closed("connection closed by the server")
        data += chunk
    head = data[:end].lower()
    status = int(head[9:12])
    at = head.find(b"\r\ncontent-length:")
    if at < 0:
        raise _Closed(f"HTTP {status} response without Content-Length")
    stop = head.find(b"\r\n", at + 2)
    length = int(head[at + 17 : stop if stop >= 0 else len(head)])
    body = data[end + 4 :]
    while len(body) < length:
        chunk = sock.recv(65536)
        if not chunk:
            raise _Closed("connection closed mid-body")
        body += chunk
    return status, body, b"\r\nconnection: close" not in head


@dataclass
class _Client:
    """One simulated client: a keep-alive connection and what it measured."""

    index: int
    latencies: array = field(default_factory=lambda: array("d"))
    warm_ok: int = 0
    errors: Counter[str] = field(default_factory=Counter)
    samples: list[str] = field(default_factory=list)

    def error(self, kind: str, detail: str) -> None:
        self.errors[kind] += 1
        if len(self.samples) < ERROR_SAMPLES:
            self.samples.append(detail)


def _client_loop(
    client: _Client,
    port: int,
    requests: Sequence[bytes],
    positions: Iterator[int],
    expect: Expect,
    measure_from: float,
    until: float,
) -> None:
    """Send requests back to back until ``until``; keep latencies of those inside the window.

    The clients of a process take the next request from one shared count: the server does not
    serve its connections evenly, and a client given a fixed share could run out of
    single-use requests while others had plenty left.
    """
    sock: socket.socket | None = None
    clock = time.monotonic
    for _ in range(MAX_REQUESTS_PER_CLIENT):
        started = clock()
        if started >= until:
            break
        position = next(positions)
        if expect.single_use and position >= len(requests):
            client.error("out of requests", "every single-use request was sent; sign more")
            break
        try:
            if sock is None:
                sock = _connect(port)
            status, body, reusable = _exchange(sock, requests[position % len(requests)])
        except (OSError, ValueError, _Closed) as exc:
            if sock is not None:
                sock.close()
                sock = None
            if started >= measure_from:
                client.error(type(exc).__name__, str(exc))
            # Never resend it: the server may have handled it before the connection broke,
            # and a single-use request (a client assertion, a DPoP proof) sent again is a replay.
            time.sleep(0.01)  # a refused connection must not become a busy loop
            continue
        finished = clock()
        if not reusable:
            sock.close()
            sock = None
        if started < measure_from:
            client.warm_ok += 1
            continue
        if finished > until:
            break
        problem = expect.problem(status, body)
        if problem is None:
            client.latencies.append(finished - started)
        else:
            client.error(f"HTTP {status}" if status != expect.status else "bad body", problem)
    if sock is not None:
        sock.close()


def _load_process(
    pipe: Connection,
    port: int,
    requests: Sequence[bytes],
    indexes: Sequence[int],
    expect: Expect,
) -> None:
    """A load process: its share of the clients as threads, started on the parent's signal,
    sending its share of the requests (``next`` on a count is atomic: the threads share it)."""
    measure_from, until = pipe.recv()
    clients = [_Client(i) for i in indexes]
    positions = itertools.count()
    threads = [
        threading.Thread(
            target=_client_loop,
            args=(c, port, requests, positions, expect, measure_from, until),
            daemon=True,
        )
        for c in clients
    ]
    for thread in threads:
        thread.start()
    time.sleep(max(0.0, measure_from - time.monotonic()))
    cpu_start = _own_cpu()
    time.sleep(max(0.0, until - time.monotonic()))
    cpu = _own_cpu() - cpu_start
    for thread in threads:
        thread.join(SOCKET_TIMEOUT + 5)
    latencies = array("d")
    errors: Counter[str] = Counter()
    samples: list[str] = []
    for client in clients:
        latencies.extend(client.latencies)
        errors.update(client.errors)
        samples.extend(client.samples[: ERROR_SAMPLES - len(samples)])
    pipe.send((latencies.tobytes(), dict(errors), samples, cpu, sum(c.warm_ok for c in clients)))
    pipe.close()


def _own_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


@dataclass
class LoadResult:
    """What one load run measured inside its window (the warm-up excluded)."""

    label: str
    seconds: float
    latencies: list[float]
    errors: dict[str, int]
    error_samples: list[str]
    warmup_ok: int
    client_cpu: float
    server_cpu: float | None
    machine_busy: float | None
    machine_total: float | None

    @property
    def ok(self) -> int:
        return len(self.latencies)

    @property
    def error_count(self) -> int:
        return sum(self.errors.values())

    @property
    def rate(self) -> float:
        """Good answers per second."""
        return self.ok / self.seconds if self.seconds else 0.0

    def percentile(self, p: float) -> float:
        """Latency in seconds at percentile ``p`` (nearest rank), NaN without data."""
        if not self.latencies:
            return float("nan")
        rank = max(1, round(p / 100 * len(self.latencies)))
        return self.latencies[min(rank, len(self.latencies)) - 1]

    def per_request_ms(self, cpu: float | None) -> float | None:
        return None if cpu is None or not self.ok else cpu / self.ok * 1000

    @property
    def machine_busy_share(self) -> float | None:
        if self.machine_busy is None or not self.machine_total:
            return None
        return self.machine_busy / self.machine_total


def run_load(
    label: str,
    port: int,
    requests: Sequence[bytes],
    expect: Expect,
    concurrency: int = 32,
    duration: float = 10.0,
    warmup: float = 2.0,
    processes: int = 2,
    server_pids: Sequence[int] = (),
) -> LoadResult:
    """``concurrency`` keep-alive clients send ``requests`` round-robin to 127.0.0.1:``port``.

    The first ``warmup`` seconds are not counted; the run stops by itself after ``duration``
    more seconds (or MAX_REQUESTS_PER_CLIENT per client). Server CPU is that of
    ``server_pids`` over the measured window.
    """
    if not requests:
        raise ValueError("no requests to send")
    processes = max(1, min(processes, concurrency))
    context = multiprocessing.get_context("fork" if sys.platform == "linux" else "spawn")
    pipes = []
    workers = []
    for p in range(processes):
        indexes = list(range(p, concurrency, processes))
        parent, child = context.Pipe()
        worker = context.Process(
            target=_load_process,
            args=(child, port, requests[p::processes], indexes, expect),
            daemon=True,
        )
        worker.start()
        child.close()
        pipes.append(parent)
        workers.append(worker)
    measure_from = time.monotonic() + 0.5 + warmup
    until = measure_from + duration
    for pipe in pipes:
        pipe.send((measure_from, until))
    time.sleep(max(0.0, measure_from - time.monotonic()))
    server_before, machine_before = process_cpu(server_pids), machine_cpu()
    time.sleep(max(0.0, until - time.monotonic()))
    server_after, machine_after = process_cpu(server_pids), machine_cpu()
    latencies = array("d")
    errors: Counter[str] = Counter()
    samples: list[str] = []
    client_cpu = 0.0
    warm = 0
    for pipe, worker in zip(pipes, workers, strict=True):
        if not pipe.poll(SOCKET_TIMEOUT + 30):
            errors["load process hung"] += 1
            worker.terminate()
            continue
        raw, proc_errors, proc_samples, cpu, warm_ok = pipe.recv()
        chunk = array("d")
        chunk.frombytes(raw)
        latencies.extend(chunk)
        errors.update(proc_errors)
        samples.extend(proc_samples)
        client_cpu += cpu
        warm += warm_ok
        worker.join(10)
    server = None
    if server_before is not None and server_after is not None and server_pids:
        server = server_after - server_before
    busy = total = None
    if machine_before and machine_after:
        busy = machine_after[0] - machine_before[0]
        total = machine_after[1] - machine_before[1]
    return LoadResult(
        label=label,
        seconds=duration,
        latencies=sorted(latencies),
        errors=dict(errors),
        error_samples=samples[:ERROR_SAMPLES],
        warmup_ok=warm,
        client_cpu=client_cpu,
        server_cpu=server,
        machine_busy=busy,
        machine_total=total,
    )


# --- reporting ---------------------------------------------------------------------------


def load_runner(args: Any) -> Callable[..., LoadResult]:
    """``run_load`` with the command line's load settings (``--concurrency``, ``--duration``,
    ``--warmup``, ``--load-processes``), the same for every run a benchmark compares."""
    return functools.partial(
        run_load,
        concurrency=args.concurrency,
        duration=args.duration,
        warmup=args.warmup,
        processes=args.load_processes,
    )


def machine_summary() -> str:
    """One line about where the figures come from: they mean little without it."""
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return (
        f"{os.cpu_count()} CPUs ({cpu}), {platform.system()} {platform.release()}, "
        f"Python {platform.python_version()}"
    )


def ms(seconds: float | None) -> str:
    return "n/a" if seconds is None or seconds != seconds else f"{seconds * 1000:.1f}"


def fmt_cpu_ms(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.2f}"


def result_row(result: LoadResult) -> list[str]:
    """Throughput, latency and CPU figures of one run, as table cells."""
    busy = result.machine_busy_share
    return [
        result.label,
        f"{result.rate:,.0f}",
        ms(result.percentile(50)),
        ms(result.percentile(99)),
        str(result.error_count),
        fmt_cpu_ms(result.per_request_ms(result.server_cpu)),
        fmt_cpu_ms(result.per_request_ms(result.client_cpu)),
        "n/a" if busy is None else f"{busy:.0%}",
    ]


RESULT_COLUMNS = (
    "run",
    "req/s",
    "p50 ms",
    "p99 ms",
    "errors",
    "server CPU ms/req",
    "load-gen CPU ms/req",
    "machine busy",
)


def print_errors(result: LoadResult, out: Any = None) -> None:
    """Errors are figures too: a fast run that fails is not a result."""
    if not result.errors:
        return
    out = out or sys.stdout
    print(f"{result.label}: {result.error_count} errors {result.errors}", file=out)
    for sample in result.error_samples:
        print(f"  e.g. {sample}", file=out)


@contextlib.contextmanager
def temporary_folder(prefix: str, keep: bool = False) -> Iterator[Path]:
    """A private temporary folder, removed afterwards unless ``keep`` (to read server logs)."""
    path = Path(tempfile.mkdtemp(prefix=prefix))
    try:
        yield path
    finally:
        if keep:
            print(f"kept {path}", file=sys.stderr)
        else:
            shutil.rmtree(path, ignore_errors=True)


@contextlib.contextmanager
def postgres_database(admin_url: str, label: str) -> Iterator[str]:
    """A fresh database ``casebroker_bench_<label>_<pid>`` on the server of ``admin_url``,
    dropped afterwards, so a run never measures (or damages) anyone's data."""
    from sqlalchemy import create_engine, text
    from sqlalchemy.engine import make_url

    base = make_url(admin_url)
    name = f"casebroker_bench_{label}_{os.getpid()}"
    admin = create_engine(base, isolation_level="AUTOCOMMIT")
    try:
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
            conn.execute(text(f'CREATE DATABASE "{name}"'))
        try:
            yield base.set(database=name).render_as_string(hide_password=False)
        finally:
            with admin.connect() as conn:
                conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    finally:
        admin.dispose()


# --- profiling ---------------------------------------------------------------------------


def per_call(fn: Callable[[int], Any], count: int, warmup: int = 100) -> float:
    """Seconds per call of ``fn(i)`` over ``count`` calls, after ``warmup`` uncounted ones."""
    for i in range(min(warmup, count)):
        fn(i)
    started = time.perf_counter()
    for i in range(count):
        fn(i)
    return (time.perf_counter() - started) / count


def short_path(filename: str) -> str:
    """A profile location without machine paths: package-relative where possible."""
    for marker in ("site-packages/", "dist-packages/", "lib/python3"):
        if marker in filename:
            return filename.split(marker, 1)[1]
    root = str(BENCH_DIR.parent) + os.sep
    return filename.removeprefix(root)


def profile_calls(
    console: Console, fn: Callable[[int], Any], count: int, top: int, unit: str
) -> None:
    """Run ``fn(i)`` ``count`` times under cProfile and print its top functions."""
    profile = cProfile.Profile()
    profile.enable()
    try:
        for i in range(count):
            fn(i)
    finally:
        profile.disable()
    print_profile(console, profile, count, top, unit)


def print_profile(
    console: Console, profile: cProfile.Profile, count: int, top: int, unit: str
) -> None:
    """cProfile's top functions by cumulative and by own time, in ms per ``unit``."""
    stats = pstats.Stats(profile)
    entries = []
    for (filename, line, name), (_cc, calls, own, cumulative, _callers) in stats.stats.items():  # type: ignore[attr-defined]
        where = f"{short_path(filename)}:{line}({name})" if line else name
        entries.append((cumulative, own, calls, where))
    for title, key in (("cumulative", 0), ("own time", 1)):
        table = Table(
            f"ms/{unit} cum.",
            f"ms/{unit} own",
            f"calls/{unit}",
            "function",
            title=f"cProfile, request thread, top {top} by {title} ({count} {unit}s)",
        )
        for cumulative, own, calls, where in sorted(entries, key=lambda e: -e[key])[:top]:
            table.add_row(
                f"{cumulative / count * 1000:.3f}",
                f"{own / count * 1000:.3f}",
                f"{calls / count:.1f}",
                where,
            )
        console.print(table)
