"""Token endpoint and password login throughput under gunicorn, against bare Flask and a peer.

    python bench/token.py [--db sqlite|postgresql|both] [--duration 10] [--concurrency 32]
    python bench/token.py --profile [--db sqlite] [--grants 1000]

For each database a fresh broker is migrated and seeded in a temporary folder (and, for
PostgreSQL, a temporary database on the server named by ``--pg-url``, dropped at the end):
one FAPI agency client and a citizen account. Then, under identical gunicorn settings and the
same load generator as ``bench/lookup.py``:

- ``client_credentials`` grants with private_key_jwt and a DPoP proof: each request carries its
  own client assertion and proof (both single use, burned in the replay guard), so they are
  signed before the run, enough for its length;
- password logins (argon2id verify, throttle check, a new database session, an audit event):
  each request posts the CSRF token of a session fetched before the run;
- the bare Flask JSON endpoint (``bench/_bare.py``) taking the token requests' bytes;
- the floor endpoint (``bench/_floor_app.py``) taking the same: the bare app plus only what any
  such grant must do (check two ES256 signatures, sign one, make the reads one grant of the
  broker made, burn two single-use values, each committed), the most any implementation could
  reach.

Then, once, a peer takes the same kind of grants (its own client key, fresh assertion and proof
each): node-oidc-provider in ``bench/peer/``, two worker processes like gunicorn's, its replay
detection and tokens in Redis (its default store is per-process memory, under which a replay
sent to the other worker would pass). It is skipped, with the reason, where Node.js or its
packages (``npm ci --prefix bench/peer``) are missing.

It prints each rate, latency and CPU per request, and the ratios to the bare endpoint and the
peer.
``--profile`` runs grants in this process through Flask's test client instead: time per grant
against the bare endpoint's, then cProfile's top functions, then the floor's parts. This is
a measurement: it exits 0 whether the figures are good or bad (non-zero only when a run could
not be set up).
"""

from __future__ import annotations

import _path  # noqa: F401  (first: see _path.py)

# isort: split

import argparse
import contextlib
import http.client
import json
import re
import secrets
import shutil
import sys
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

from _common import (
    BENCH_DIR,
    LOOPBACK,
    RESULT_COLUMNS,
    Expect,
    Gunicorn,
    LoadResult,
    Server,
    ServerSettings,
    clean_environment,
    free_port,
    http_request,
    load_runner,
    machine_summary,
    per_call,
    postgres_database,
    print_errors,
    profile_calls,
    result_row,
    temporary_folder,
)
from _floor import (
    Reads,
    captured_reads,
    committed_inserts,
    measure_floor,
    print_floor,
    replay_reads,
    write_plan,
)
from rich.console import Console
from rich.table import Table

PEER_DIR = BENCH_DIR / "peer"
DEFAULT_PG_URL = "postgresql+psycopg://postgres@127.0.0.1:5432/test"
ASSERTION_TYPE = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"
FORM = "application/x-www-form-urlencoded"
CLIENT_ID = "bench-cms"
USERNAME = "bench-citizen"
PASSWORD = "bench-password-" + "x" * 8
TOKEN_OK = Expect(200, b'"DPoP"', single_use=True)
LOGIN_OK = Expect(303, single_use=True)
BARE_OK = Expect(200, b'"status":"ok"')

console = Console(width=max(120, Console().width), highlight=False)


@dataclass
class Instance:
    db: str
    folder: Path
    port: int
    env: dict[str, str]
    client_key: dict

    @property
    def issuer(self) -> str:
        return f"http://{LOOPBACK}:{self.port}"


def seed_instance(db: str, folder: Path, database_url: str | None) -> Instance:
    """Migrate, then add an agency, a FAPI client with an EC key and a citizen account."""
    from joserfc.jwk import ECKey

    from broker.app import create_app
    from broker.db import get_db
    from broker.migrate import upgrade
    from broker.models import Agency
    from identity.accounts import hash_password
    from identity.clients import register_client
    from identity.models import Account, Person

    port = free_port()
    env = {
        "CASEBROKER_INSTANCE_PATH": str(folder),
        "CASEBROKER_ISSUER": f"http://{LOOPBACK}:{port}",
        "CASEBROKER_LOG_LEVEL": "WARNING",
    }
    if database_url:
        env["CASEBROKER_DATABASE_URL"] = database_url
    app = create_app(environ=env)
    key = ECKey.generate_key("P-256", {"alg": "ES256", "use": "sig"})
    key.ensure_kid()
    with app.app_context():
        upgrade(get_db().engine)
        with get_db().session() as session:
            session.add(Agency(id="bench", name="Bench", sector="test"))
            person = Person(id=uuid.uuid4(), given_name="Bench", family_name="Citizen")
            session.add(person)
            session.flush()
            register_client(
                session, CLIENT_ID, "bench", "Bench CMS", [key.as_dict(private=False)], is_fapi=True
            )
            session.add(
                Account(
                    username=USERNAME,
                    password_hash=hash_password(PASSWORD),
                    kind="citizen",
                    person_id=person.id,
                )
            )
    get_db(app).dispose()
    return Instance(db, folder, port, env, key.as_dict(private=True))


def grant_forms(issuer: str, client_key: dict, count: int) -> list[tuple[bytes, str]]:
    """``count`` distinct grants as (form body, DPoP proof): a fresh assertion and proof (one
    DPoP key per simulated client) in each, signed now and valid for the next two minutes."""
    from joserfc import jwt
    from joserfc.jwk import ECKey

    key = ECKey.import_key(client_key)
    dpop_keys = [ECKey.generate_key("P-256") for _ in range(32)]
    now = int(time.time())
    grants = []
    for index in range(count):
        claims = {
            "iss": CLIENT_ID,
            "sub": CLIENT_ID,
            "aud": issuer,
            "iat": now,
            "exp": now + 120,
            "jti": secrets.token_urlsafe(16),
        }
        signed = jwt.encode({"alg": "ES256", "kid": key.kid}, claims, key)
        dpop_key = dpop_keys[index % len(dpop_keys)]
        proof = jwt.encode(
            {"typ": "dpop+jwt", "alg": "ES256", "jwk": dpop_key.as_dict(private=False)},
            {
                "jti": secrets.token_urlsafe(16),
                "htm": "POST",
                "htu": issuer + "/token",
                "iat": now,
            },
            dpop_key,
        )
        body = urlencode(
            {
                "grant_type": "client_credentials",
                "scope": "lookup",
                "client_assertion_type": ASSERTION_TYPE,
                "client_assertion": signed,
            }
        ).encode()
        grants.append((body, proof))
    return grants


def token_requests(issuer: str, client_key: dict, count: int, path: str = "/token") -> list[bytes]:
    """``count`` distinct grant requests, as raw HTTP for the load generator; the Host header
    is the issuer's, from which a server may work out the ``htu`` a DPoP proof must name."""
    host = issuer.split("://", 1)[1]
    return [
        http_request("POST", path, body, {"Content-Type": FORM, "DPoP": proof}, host=host)
        for body, proof in grant_forms(issuer, client_key, count)
    ]


def login_requests(port: int, count: int) -> list[bytes]:
    """``count`` login posts, each with the cookie and CSRF token of its own fresh session."""
    requests = []
    conn = http.client.HTTPConnection(LOOPBACK, port, timeout=30)
    for _ in range(count):
        conn.request("GET", "/login")
        response = conn.getresponse()
        html = response.read().decode()
        cookie = response.getheader("Set-Cookie", "").split(";", 1)[0]
        csrf = re.search(r'name="csrf_token" value="([^"]+)"', html)
        if not cookie or csrf is None:
            raise RuntimeError("the login page gave no session or CSRF token")
        body = urlencode(
            {"csrf_token": csrf.group(1), "username": USERNAME, "password": PASSWORD}
        ).encode()
        headers = {"Content-Type": "application/x-www-form-urlencoded", "Cookie": cookie}
        requests.append(http_request("POST", "/login", body, headers))
    conn.close()
    return requests


@dataclass
class Comparison:
    db: str
    bare: LoadResult
    token: LoadResult
    login: LoadResult
    #: The floor endpoint (``_floor_app.py``): the bare app plus only what any grant must do.
    floor: LoadResult


def measure(instance: Instance, settings: ServerSettings, args: argparse.Namespace) -> Comparison:
    """The broker, the bare endpoint and the floor endpoint, each under ``settings`` and the
    same load. The floor's plan is made first, from a grant by the broker in this process."""
    from broker.app import create_app

    env = clean_environment(instance.env)
    logs = instance.folder / "logs"
    logs.mkdir(exist_ok=True)
    load = load_runner(args)
    window = args.duration + args.warmup + 1
    plan = instance.folder / "floor.plan"
    app = create_app(environ=instance.env)
    url = app.config["DATABASE_URL"]
    floor_parts(instance, app, url).plan(plan)
    app.extensions["casebroker.db"].dispose()

    def serve(app: str, extra: dict[str, str], log: str) -> Gunicorn:
        return Gunicorn(app, settings, env | extra, logs / log, chdir=BENCH_DIR)

    with Gunicorn(
        "broker:create_app()",
        settings,
        env,
        logs / "broker.log",
        port=instance.port,
        ready_path="/readyz",
    ) as server:
        requests = token_requests(
            instance.issuer, instance.client_key, int(window * args.expected_token_rate)
        )
        token = load(
            f"{instance.db}: client_credentials + private_key_jwt + DPoP",
            server.port,
            requests,
            TOKEN_OK,
            server_pids=server.worker_pids(),
        )
        logins = login_requests(server.port, int(window * args.expected_login_rate))
        login = load(
            f"{instance.db}: password login (argon2id)",
            server.port,
            logins,
            LOGIN_OK,
            server_pids=server.worker_pids(),
        )
    requests = token_requests(instance.issuer, instance.client_key, 64, path="/")
    with serve("_bare:app", {}, "bare.log") as server:
        bare = load(
            f"{instance.db}: bare Flask JSON",
            server.port,
            requests,
            BARE_OK,
            server_pids=server.worker_pids(),
        )
    label = f"{instance.db}: floor endpoint"
    floor = measure_floor(label, plan, url, serve, load, requests, BARE_OK)
    return Comparison(instance.db, bare, token, login, floor)


def peer_missing() -> str | None:
    """Why the peer cannot run here, or None."""
    if shutil.which("node") is None:
        return "Node.js is not installed"
    if not (PEER_DIR / "node_modules" / "oidc-provider").is_dir():
        return "its packages are not installed: npm ci --prefix bench/peer"
    return None


def measure_peer(folder: Path, settings: ServerSettings, args: argparse.Namespace) -> LoadResult:
    """The same grants (fresh assertion and DPoP proof each) against node-oidc-provider."""
    from joserfc.jwk import ECKey

    key = ECKey.generate_key("P-256", {"alg": "ES256", "use": "sig"})
    key.ensure_kid()
    port = free_port()
    env = clean_environment(
        {
            "PEER_PORT": str(port),
            "PEER_WORKERS": str(settings.workers),
            "PEER_CLIENT_ID": CLIENT_ID,
            "PEER_CLIENT_JWK": json.dumps(key.as_dict(private=False)),
            "PEER_REDIS_URL": args.redis_url,
            "PEER_REDIS_PREFIX": f"casebroker-bench-peer-{uuid.uuid4().hex}",
        }
    )
    window = args.duration + args.warmup + 1
    logs = folder / "logs"
    logs.mkdir(exist_ok=True)
    argv = ["node", "server.mjs"]
    with Server(
        "node-oidc-provider",
        argv,
        env,
        logs / "peer.log",
        settings.workers,
        port=port,
        ready_path="/.well-known/openid-configuration",
        cwd=PEER_DIR,
    ) as server:
        issuer = f"http://{LOOPBACK}:{port}"
        requests = token_requests(
            issuer, key.as_dict(private=True), int(window * args.expected_peer_rate)
        )
        return load_runner(args)(
            "peer: node-oidc-provider, same grant (state in Redis)",
            server.port,
            requests,
            TOKEN_OK,
            server_pids=server.worker_pids(),
        )


def report(comparisons: list[Comparison], peer: LoadResult | None) -> None:
    table = Table(*RESULT_COLUMNS, title="Throughput and latency (warm-up excluded)")
    for comparison in comparisons:
        table.add_row(*result_row(comparison.bare))
        table.add_row(*result_row(comparison.floor))
        table.add_row(*result_row(comparison.token))
        table.add_row(*result_row(comparison.login), end_section=True)
    if peer is not None:
        table.add_row(*result_row(peer))
    console.print(table)
    for comparison in comparisons:
        for result in (comparison.bare, comparison.floor, comparison.token, comparison.login):
            print_errors(result)
    if peer is not None:
        print_errors(peer)
    for comparison in comparisons:
        bare = comparison.bare.rate or float("nan")
        versus_peer = (
            f"; token/peer = {comparison.token.rate / peer.rate:.0%}" if peer and peer.rate else ""
        )
        console.print(
            f"{comparison.db}: token/bare = {comparison.token.rate:,.0f} / {bare:,.0f} req/s = "
            f"{comparison.token.rate / bare:.1%}{versus_peer}; floor/bare = "
            f"{comparison.floor.rate / bare:.1%}, the most any implementation of this grant could "
            f"reach in this run; logins {comparison.login.rate:,.1f}/s = "
            f"{comparison.login.rate / bare:.2%} of bare"
        )
    if peer is not None and comparisons:
        bare = comparisons[0].bare.rate or float("nan")
        console.print(f"peer: {peer.rate:,.0f} grants/s = {peer.rate / bare:.1%} of the bare rate")


def run_benchmark(args: argparse.Namespace) -> int:
    settings = ServerSettings(
        workers=args.workers, worker_class=args.worker_class, threads=args.threads
    )
    console.print(f"machine: {machine_summary()}")
    console.print(f"server: {settings.describe()}, the same for the broker and the bare endpoint")
    console.print(
        f"load: {args.concurrency} keep-alive clients on 127.0.0.1, {args.warmup:g} s warm-up "
        f"then {args.duration:g} s measured; every request distinct (single-use jti values)"
    )
    comparisons = []
    failed = False
    for db in ["sqlite", "postgresql"] if args.db == "both" else [args.db]:
        with temporary_folder(f"casebroker-bench-token-{db}-", keep=args.keep) as folder:
            try:
                if db == "sqlite":
                    instance = seed_instance(db, folder, None)
                    comparisons.append(measure(instance, settings, args))
                else:
                    with postgres_database(args.pg_url, "token") as url:
                        instance = seed_instance(db, folder, url)
                        comparisons.append(measure(instance, settings, args))
            except Exception as exc:
                failed = True
                console.print(f"[bold red]{db}: not measured[/]: {type(exc).__name__}: {exc}")
    peer = None
    missing = peer_missing() if args.peer else "--no-peer"
    if missing:
        console.print(f"peer: not measured: {missing}")
    else:
        with temporary_folder("casebroker-bench-peer-", keep=args.keep) as folder:
            try:
                peer = measure_peer(folder, settings, args)
            except Exception as exc:
                console.print(f"[bold red]peer: not measured[/]: {type(exc).__name__}: {exc}")
    if comparisons:
        report(comparisons, peer)
    return 1 if failed else 0


def run_profile(args: argparse.Namespace) -> int:
    """Grants in this process through Flask's test client: time per grant against the bare
    endpoint's, then cProfile's top functions. It is how to find what to speed up."""
    from _bare import app as bare_app

    from broker.app import create_app

    console.print(f"machine: {machine_summary()}")
    for db in ["sqlite", "postgresql"] if args.db == "both" else [args.db]:
        with contextlib.ExitStack() as stack:
            folder = stack.enter_context(
                temporary_folder(f"casebroker-profile-token-{db}-", keep=args.keep)
            )
            url = (
                None
                if db == "sqlite"
                else stack.enter_context(postgres_database(args.pg_url, "token"))
            )
            instance = seed_instance(db, folder, url)
            app = create_app(environ=instance.env)
            client, bare = app.test_client(), bare_app.test_client()
            count = args.grants
            grants = iter(grant_forms(instance.issuer, instance.client_key, 3 * count + 100))

            def grant(
                _: int, client: Any = client, grants: Any = grants, base: str = instance.issuer
            ) -> None:
                body, proof = next(grants)
                response = client.post(
                    "/token",
                    data=body,
                    headers={"DPoP": proof},
                    content_type=FORM,
                    base_url=base,
                )
                if response.status_code != 200:
                    raise RuntimeError(f"token endpoint answered {response.status_code}")

            def bare_request(_: int, bare: Any = bare) -> None:
                bare.post("/", data=b"grant_type=client_credentials", content_type=FORM)

            per_grant = per_call(grant, count)
            per_bare = per_call(bare_request, count)
            console.print(
                f"\n[bold]{db}[/]: in-process, one thread, Flask test client, {count} grants: "
                f"{per_grant * 1000:.2f} ms per grant, {per_bare * 1000:.3f} ms per bare "
                f"request ({per_bare / per_grant:.1%} of a grant)"
            )
            profile_calls(console, grant, count, args.top, "grant")
            parts = floor_parts(instance, app, app.config["DATABASE_URL"])
            print_floor(console, "grant", floor_costs(parts, count), per_bare, per_grant)
            app.extensions["casebroker.db"].dispose()
    return 0


@dataclass
class FloorParts:
    """What any grant of this kind must do: check the client assertion's and the DPoP proof's
    signatures, sign the access token, make its reads and burn the assertion's and the proof's
    ``jti`` (two inserts, each committed: a burn must stand even if the request fails later)."""

    assertion: str
    client_jwk: dict[str, Any]
    proof: str
    proof_jwk: dict[str, Any]
    signing_jwk: dict[str, Any]
    reads: Reads
    url: str

    def plan(self, path: Path) -> None:
        """The floor endpoint's plan for this grant (``bench/_floor_app.py``)."""
        verify = [(self.assertion, self.client_jwk), (self.proof, self.proof_jwk)]
        write_plan(path, verify, self.reads, self.url, 2, sign=self.signing_jwk)


def floor_parts(instance: Instance, app: Any, url: str) -> FloorParts:
    """The parts of the floor, from the broker in this process: one grant is made to capture
    its reads; burns are inserted into a scratch table of the database at ``url``."""
    from urllib.parse import parse_qs

    from joserfc import jws
    from joserfc.jwk import ECKey

    client = app.test_client()
    grants = iter(grant_forms(instance.issuer, instance.client_key, 2))

    def grant(_: int) -> None:
        body, proof = next(grants)
        headers = {"DPoP": proof}
        response = client.post(
            "/token", data=body, headers=headers, content_type=FORM, base_url=instance.issuer
        )
        if response.status_code != 200:
            raise RuntimeError(f"token endpoint answered {response.status_code}")

    reads = captured_reads(grant)
    body, proof = next(grants)
    client_key = ECKey.import_key(instance.client_key)
    return FloorParts(
        assertion=parse_qs(body.decode())["client_assertion"][0],
        client_jwk=client_key.as_dict(private=False),
        proof=proof,
        proof_jwk=jws.extract_compact(proof.encode()).headers()["jwk"],
        signing_jwk=ECKey.generate_key("P-256").as_dict(private=True),
        reads=reads,
        url=url,
    )


def floor_costs(parts: FloorParts, count: int) -> list[tuple[str, float]]:
    """Seconds per call of each part of the floor, through the bare libraries and drivers."""
    from joserfc import jwt
    from joserfc.jwk import import_key

    client_key, proof_key = import_key(parts.client_jwk), import_key(parts.proof_jwk)
    signing_key = import_key(parts.signing_jwk)
    claims = {"sub": CLIENT_ID, "scope": "lookup", "exp": 2**31}
    return [
        (
            "ES256 signature of the client assertion (joserfc)",
            per_call(lambda i: jwt.decode(parts.assertion, client_key), count),
        ),
        (
            "ES256 signature of the DPoP proof (joserfc)",
            per_call(lambda i: jwt.decode(parts.proof, proof_key), count),
        ),
        (
            "ES256 signing of the access token (joserfc)",
            per_call(lambda i: jwt.encode({"alg": "ES256"}, claims, signing_key), count),
        ),
        (
            f"its {len(parts.reads)} reads, the SQL it sent (bare drivers, autocommit)",
            replay_reads(parts.reads, count),
        ),
        (
            "two single-use values burned, each committed (bare driver)",
            committed_inserts(parts.url, 2, count),
        ),
    ]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--db", choices=["sqlite", "postgresql", "both"], default="sqlite")
    parser.add_argument("--pg-url", default=DEFAULT_PG_URL)
    parser.add_argument("--duration", type=float, default=10.0)
    parser.add_argument("--warmup", type=float, default=2.0)
    parser.add_argument("--concurrency", type=int, default=32)
    parser.add_argument("--load-processes", type=int, default=2)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--worker-class", default="gthread")
    parser.add_argument("--threads", type=int, default=4)
    parser.add_argument(
        "--expected-token-rate",
        type=float,
        default=1500.0,
        help="Upper estimate of grants/s: that many distinct requests per second are signed.",
    )
    parser.add_argument("--expected-peer-rate", type=float, default=4000.0)
    parser.add_argument("--expected-login-rate", type=float, default=40.0)
    parser.add_argument(
        "--peer",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="also measure node-oidc-provider (bench/peer) on the same grants",
    )
    parser.add_argument("--redis-url", default="redis://127.0.0.1:6379/0", help="the peer's store")
    parser.add_argument("--keep", action="store_true", help="Keep the temporary folder.")
    parser.add_argument("--profile", action="store_true", help="profile in-process instead")
    parser.add_argument("--grants", type=int, default=1000, help="grants per profile pass")
    parser.add_argument("--top", type=int, default=25, help="functions listed by the profile")
    args = parser.parse_args(argv)
    if not 1 <= args.grants <= 100_000:
        parser.error("--grants must be in [1, 100000]")
    return run_profile(args) if args.profile else run_benchmark(args)


if __name__ == "__main__":
    sys.exit(main())
