"""The verifiable audit log at scale: append, integrate, prove and verify on PostgreSQL.

    python bench/audit.py [--sizes 100000,1000000] [--huge] [--pg-url URL] [--proofs 2000]

For each size, a fresh database (``casebroker_bench_audit_<pid>`` on the server of ``--pg-url``,
dropped at the end) is migrated and filled with that many lookup-decision events through the
request path's own ``audit.append``. Then, in the same run and on the same database:

- request-path appends: one event per committed transaction, as a lookup does, at 10^3 events
  and again once the log holds the full size, against a baseline of a plain one-row INSERT and
  commit into an unindexed table (what any durable write costs here);
- integration: all events into the Merkle tree, batch after batch with a signed checkpoint each,
  against a baseline of the same hashing done in memory with nothing stored;
- proofs: inclusion and consistency proofs read from the stored tree (random leaves and sizes),
  and the inclusion endpoint through Flask, against a baseline of one primary-key SELECT;
- verification: ``audit verify`` over the whole log, against reading the same rows only.

Targets: integration >= 20,000 events/s; inclusion proof < 5 ms. This is a measurement: it
exits 0 whether or not a target is met. ``--huge`` adds 10^7 events (about an hour and ~10 GB).
"""

from __future__ import annotations

import _path  # noqa: F401  (first: see _path.py)

# isort: split

import argparse
import base64
import os
import random
import statistics
import sys
import threading
import time
import uuid
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from _common import machine_summary, postgres_database
from rich.console import Console
from rich.table import Table
from sqlalchemy import select, text

DEFAULT_PG_URL = "postgresql+psycopg://postgres@127.0.0.1:5432/test"
INTEGRATION_TARGET = 20_000
PROOF_TARGET_MS = 5.0
FILL_BATCH = 2_000
SMALL = 1_000

console = Console(width=max(120, Console().width), highlight=False)


def make_app(url: str) -> Any:
    from broker.app import create_app
    from broker.db import get_db
    from broker.migrate import upgrade

    kek = base64.urlsafe_b64encode(os.urandom(32)).decode()
    app = create_app(
        {
            "DATABASE_URL": url,
            "KEY_ENCRYPTION_KEY": kek,
            "SECRET_KEY": "bench",
            "ISSUER": "https://broker.bench",
            "AUDIT_INTEGRATE_INTERVAL": 0,
            "DB_POOL_SIZE": 8,
        },
        environ={},
    )
    with app.app_context():
        upgrade(get_db().engine)
    return app


_PEOPLE = [str(uuid.UUID(int=random.getrandbits(128))) for _ in range(1000)]


def lookup_record(i: int) -> dict[str, Any]:
    """A realistic lookup decision (~400 bytes canonical)."""
    import audit

    return audit.make_record(
        "lookup.decision",
        f"{i:032x}",
        audit.event_time(),
        client="social-services-cms",
        officer=None,
        requester="social-services",
        person=_PEOPLE[i % len(_PEOPLE)],
        provider=("tax", "health", "vehicle-registry")[i % 3],
        source="tax-db",
        category=("income", "health.summary", "vehicle")[i % 3],
        purpose="benefit-eligibility",
        decision="permit" if i % 5 else "deny",
        policies=["agreement-7"],
        legal_basis="statute",
        fields=["annual_income", "year"],
    )


def fill(app: Any, count: int, start: int) -> float:
    """Append ``count`` events in batches; returns events per second."""
    import audit

    maker = app.extensions["casebroker.db"].sessionmaker
    began = time.perf_counter()
    done = 0
    with maker() as session:
        while done < count:
            n = min(FILL_BATCH, count - done)
            audit.append(session, [lookup_record(start + done + i) for i in range(n)])
            session.commit()
            done += n
    return count / (time.perf_counter() - began)


def request_appends(app: Any, count: int, threads: int) -> float:
    """One event per committed transaction from ``threads`` threads; events per second."""
    import audit

    maker = app.extensions["casebroker.db"].sessionmaker

    def work(n: int) -> None:
        with maker() as session:
            for i in range(n):
                audit.append(session, [lookup_record(i)])
                session.commit()

    return _threaded(work, count, threads)


def baseline_inserts(app: Any, count: int, threads: int) -> float:
    """The same number of one-row INSERT + COMMIT transactions into a plain table."""
    engine = app.extensions["casebroker.db"].engine
    with engine.begin() as conn:
        conn.execute(text("CREATE TABLE IF NOT EXISTS bench_plain (id bigserial, body text)"))
    body = '{"kind":"lookup.decision"}' * 12

    def work(n: int) -> None:
        with engine.connect() as conn:
            for _ in range(n):
                conn.execute(text("INSERT INTO bench_plain (body) VALUES (:b)"), {"b": body})
                conn.commit()

    return _threaded(work, count, threads)


def _threaded(work: Callable[[int], None], count: int, threads: int) -> float:
    share = count // threads
    pool = [threading.Thread(target=work, args=(share,)) for _ in range(threads)]
    began = time.perf_counter()
    for thread in pool:
        thread.start()
    for thread in pool:
        thread.join()
    return share * threads / (time.perf_counter() - began)


def integrate_all(app: Any) -> tuple[float, int]:
    from audit import integrator

    began = time.perf_counter()
    added, head = integrator.run(app)
    return added / (time.perf_counter() - began), head.size


def hashing_baseline(app: Any, size: int) -> float:
    """The tree's hashing alone, in memory: what integration would cost with free storage."""
    from audit import merkle
    from audit.models import AuditEvent

    maker = app.extensions["casebroker.db"].sessionmaker
    with maker() as session:
        leaves = [
            bytes(h)
            for h in session.scalars(
                select(AuditEvent.leaf_hash).where(AuditEvent.seq < size).order_by(AuditEvent.seq)
            )
        ]
    nodes: list[tuple[int, int, bytes]] = []
    began = time.perf_counter()
    tree = merkle.CompactRange()
    for leaf in leaves:
        tree.append(leaf, lambda level, idx, h: nodes.append((level, idx, h)))
    tree.root()
    return len(leaves) / (time.perf_counter() - began)


def latencies(fn: Callable[[], Any], count: int) -> list[float]:
    out = []
    for _ in range(count):
        began = time.perf_counter()
        fn()
        out.append(time.perf_counter() - began)
    return sorted(out)


def pct(values: list[float], p: float) -> float:
    return values[min(len(values) - 1, max(0, round(p / 100 * len(values)) - 1))] * 1000


def proofs(app: Any, size: int, count: int) -> dict[str, list[float]]:
    from audit import tree

    maker = app.extensions["casebroker.db"].sessionmaker
    rng = random.Random(7)
    client = app.test_client()
    with maker() as session:
        engine_conn = session.connection()

        def baseline() -> None:
            engine_conn.execute(
                text("SELECT hash FROM audit_tree_node WHERE level = 0 AND idx = :i"),
                {"i": rng.randrange(size)},
            ).scalar_one()

        def inclusion() -> None:
            tree.inclusion(session, rng.randrange(size), size)

        def consistency() -> None:
            old = rng.randrange(1, size)
            tree.consistency(session, old, size)

        def http() -> None:
            response = client.get(f"/audit/v1/proofs/inclusion?index={rng.randrange(size)}")
            assert response.status_code == 200

        result = {
            "one primary-key SELECT (baseline)": latencies(baseline, count),
            "inclusion proof (storage)": latencies(inclusion, count),
            "consistency proof (storage)": latencies(consistency, count),
        }

    def health() -> None:
        assert client.get("/healthz").status_code == 200

    result["GET /healthz (HTTP baseline, in-process)"] = latencies(health, count)
    result["inclusion proof (HTTP, in-process)"] = latencies(http, count)
    return result


def verify_all(app: Any) -> tuple[float, bool]:
    from audit import verify

    maker = app.extensions["casebroker.db"].sessionmaker
    with maker() as session:
        began = time.perf_counter()
        report = verify.verify_log(session, bodies_kept_after=datetime(1970, 1, 1, tzinfo=UTC))
        return time.perf_counter() - began, report.ok


def read_baseline(app: Any) -> float:
    """Reading every event's record and leaf hash, nothing checked."""
    engine = app.extensions["casebroker.db"].engine
    began = time.perf_counter()
    with engine.connect() as conn:
        result = conn.execution_options(stream_results=True, yield_per=20_000).execute(
            text("SELECT seq, record, leaf_hash FROM audit_event ORDER BY seq")
        )
        for _ in result:
            pass
    return time.perf_counter() - began


def run_size(url: str, size: int, proof_count: int) -> dict[str, Any]:
    app = make_app(url)
    figures: dict[str, Any] = {"size": size}
    fill(app, SMALL, 0)
    figures["append_small_1"] = request_appends(app, 1000, 1)
    figures["append_small_4"] = request_appends(app, 2000, 4)
    figures["plain_small_1"] = baseline_inserts(app, 1000, 1)
    figures["plain_small_4"] = baseline_inserts(app, 2000, 4)
    console.print(f"[dim]{size:,}: filling[/dim]")
    existing = SMALL + 3000
    figures["fill_rate"] = fill(app, size - existing, existing)
    figures["append_large_1"] = request_appends(app, 1000, 1)
    figures["append_large_4"] = request_appends(app, 2000, 4)
    figures["plain_large_1"] = baseline_inserts(app, 1000, 1)
    figures["plain_large_4"] = baseline_inserts(app, 2000, 4)
    console.print(f"[dim]{size:,}: integrating[/dim]")
    figures["integrate_rate"], figures["tree_size"] = integrate_all(app)
    figures["hash_rate"] = hashing_baseline(app, figures["tree_size"])
    console.print(f"[dim]{size:,}: proofs[/dim]")
    figures["proofs"] = proofs(app, figures["tree_size"], proof_count)
    console.print(f"[dim]{size:,}: verifying[/dim]")
    figures["verify_seconds"], figures["verify_ok"] = verify_all(app)
    figures["read_seconds"] = read_baseline(app)
    app.extensions["casebroker.db"].dispose()
    return figures


def report(all_figures: list[dict[str, Any]]) -> None:
    appends = Table(title="Request-path appends (one event per committed transaction)")
    for column in ("log size", "threads", "audit.append tx/s", "plain INSERT tx/s", "ratio"):
        appends.add_column(column, justify="right")
    for f in all_figures:
        for label, key, plain in (
            (f"{SMALL:,}", "append_small_1", "plain_small_1"),
            (f"{SMALL:,}", "append_small_4", "plain_small_4"),
            (f"{f['size']:,}", "append_large_1", "plain_large_1"),
            (f"{f['size']:,}", "append_large_4", "plain_large_4"),
        ):
            threads = key[-1]
            appends.add_row(
                label,
                threads,
                f"{f[key]:,.0f}",
                f"{f[plain]:,.0f}",
                f"{f[key] / f[plain]:.2f}",
            )
    console.print(appends)

    tree = Table(title=f"Integration (target >= {INTEGRATION_TARGET:,} events/s)")
    for column in (
        "events",
        "bulk append events/s",
        "integrated events/s",
        "in-memory hashing events/s",
        "ratio",
        "target",
    ):
        tree.add_column(column, justify="right")
    for f in all_figures:
        tree.add_row(
            f"{f['tree_size']:,}",
            f"{f['fill_rate']:,.0f}",
            f"{f['integrate_rate']:,.0f}",
            f"{f['hash_rate']:,.0f}",
            f"{f['integrate_rate'] / f['hash_rate']:.2f}",
            "met" if f["integrate_rate"] >= INTEGRATION_TARGET else "MISSED",
        )
    console.print(tree)

    proof = Table(title=f"Proof latency (target: inclusion < {PROOF_TARGET_MS} ms)")
    for column in ("events", "what", "p50 ms", "p99 ms", "mean ms"):
        proof.add_column(column, justify="right" if column != "what" else "left")
    for f in all_figures:
        for what, values in f["proofs"].items():
            proof.add_row(
                f"{f['tree_size']:,}",
                what,
                f"{pct(values, 50):.2f}",
                f"{pct(values, 99):.2f}",
                f"{statistics.fmean(values) * 1000:.2f}",
            )
    console.print(proof)

    check = Table(title="audit verify over the whole log")
    for column in ("events", "verify s", "events/s", "read-only s (baseline)", "ratio", "result"):
        check.add_column(column, justify="right")
    for f in all_figures:
        check.add_row(
            f"{f['tree_size']:,}",
            f"{f['verify_seconds']:.1f}",
            f"{f['tree_size'] / f['verify_seconds']:,.0f}",
            f"{f['read_seconds']:.2f}",
            f"{f['verify_seconds'] / f['read_seconds']:.1f}",
            "ok" if f["verify_ok"] else "FAILED",
        )
    console.print(check)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--sizes", default="100000,1000000")
    parser.add_argument("--huge", action="store_true", help="also 10,000,000 events")
    parser.add_argument("--pg-url", default=DEFAULT_PG_URL)
    parser.add_argument("--proofs", type=int, default=2000)
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    sizes = [int(s) for s in args.sizes.split(",") if s]
    if args.huge:
        sizes.append(10_000_000)
    console.print(f"[bold]audit log benchmark[/bold] on {machine_summary()}")
    results = []
    for size in sizes:
        if size < SMALL + 4000:
            console.print(f"size {size} is too small (at least {SMALL + 4000})")
            return 2
        with postgres_database(args.pg_url, "audit") as url:
            results.append(run_size(url, size, args.proofs))
    report(results)
    return 0


if __name__ == "__main__":
    sys.exit(main())
