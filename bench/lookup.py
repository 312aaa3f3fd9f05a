"""Lookup throughput: the exchange API under gunicorn against a bare Flask JSON endpoint.

    python bench/lookup.py [--db sqlite|postgresql|both] [--duration 10] [--concurrency 32]
    python bench/lookup.py --profile [--db sqlite] [--lookups 3000]

For each database, a fresh demo instance is seeded in a temporary folder (and, for PostgreSQL,
a temporary database on the server named by ``--pg-url``, dropped at the end). The broker and
the bare endpoint (``bench/_bare.py``) then run in turn under identical gunicorn settings on
127.0.0.1 and take the same load: ``--concurrency`` keep-alive clients sending the same request
bytes back to back. The lookup is one category (``income``) from one SQL source (``tax-db``) as
the social-services client, for ``benefit-eligibility``: token checked, policy decided, audited
and committed, source queried. The target is a lookup rate of at least 35% of the bare one.
Then the floor endpoint (``bench/_floor_app.py``) takes the bare endpoint's requests under the
same settings: the bare app plus only the work any lookup must do (the Cedar decision, the reads
one lookup of the broker made, replayed through the bare drivers, and one committed insert; not
the token's signature, checked once per token). Its ratio to the bare rate is the most any
implementation could reach.

``--profile`` runs lookups in this process through Flask's test client instead: time per stage
of the lookup, then cProfile's top functions, then the floor (what any implementation must spend:
one Cedar decision, the lookup's own reads replayed and one insert and commit, through the bare
drivers) and the ratio a lookup costing only that would reach. It is
how to find what to speed up.

This is a measurement: it exits 0 whether or not the target is met (non-zero only when a
database could not be set up or a run failed outright).
"""

from __future__ import annotations

import _path  # noqa: F401  (first: see _path.py)

# isort: split

import argparse
import contextlib
import functools
import json
import sqlite3
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from _common import (
    BENCH_DIR,
    LOOPBACK,
    RESULT_COLUMNS,
    Expect,
    Gunicorn,
    LoadResult,
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
from sqlalchemy import select

import audit

TARGET = 0.35
DEFAULT_PG_URL = "postgresql+psycopg://postgres@127.0.0.1:5432/test"
REQUESTER = "social-services"
CATEGORY = "income"
PURPOSE = "benefit-eligibility"
LOOKUP_PATH = "/exchange/v1/lookups"
#: A good lookup answer holds exactly one result, and it is "ok".
LOOKUP_OK = Expect(200, b'"status":"ok"')
BARE_OK = Expect(200, b'"status":"ok"')

console = Console(width=max(120, Console().width), highlight=False)


# --- the instance under test -------------------------------------------------------------


@dataclass
class Instance:
    """A seeded demo broker: its settings, the client key and the persons to look up."""

    db: str
    folder: Path
    port: int
    env: dict[str, str]
    key_file: Path
    identifiers: list[str] = field(default_factory=list)

    @property
    def issuer(self) -> str:
        return f"http://{LOOPBACK}:{self.port}"


def seed_instance(
    db: str, folder: Path, persons: int, database_url: str | None, national: int = 0
) -> Instance:
    """Migrate and seed the demo, with the issuer on the port the server will listen on."""
    from broker.app import create_app
    from broker.db import get_db
    from broker.demo_data import seed_demo
    from broker.migrate import upgrade
    from identity.models import Client

    port = free_port()
    env = {
        "CASEBROKER_INSTANCE_PATH": str(folder),
        "CASEBROKER_ISSUER": f"http://{LOOPBACK}:{port}",
        # One token serves the whole run, however long it lasts.
        "CASEBROKER_ACCESS_TOKEN_TTL": "86400",
        "CASEBROKER_LOG_LEVEL": "WARNING",
    }
    if database_url:
        env["CASEBROKER_DATABASE_URL"] = database_url
    app = create_app(environ=env)
    with app.app_context():
        upgrade(get_db().engine)
        with get_db().session() as session:
            seeded = seed_demo(session, folder, env["CASEBROKER_ISSUER"], persons=persons)
            # Prebuilt requests cannot carry a fresh DPoP proof each, so the bench client uses
            # bearer tokens; bench/token.py measures what DPoP proofs cost.
            session.get_one(Client, f"{REQUESTER}-cms").is_fapi = False
            add_national_records(session, national)
    instance = Instance(db, folder, port, env, seeded.key_files[REQUESTER])
    instance.identifiers = persons_with_income(app, seeded.source_files)
    get_db(app).dispose()
    return instance


def add_national_records(session: Any, count: int) -> None:
    """``count`` other persons, each with an active consent to the requester for the purpose
    and an open case at the requester: what a country's tables hold besides the persons looked
    up. A lookup reads consents and cases by person, so its cost must not grow with them."""
    from sqlalchemy import insert

    from broker.cases.models import Case, CasePurpose
    from consent.models import Consent
    from identity.models import Person

    now = datetime.now(UTC)
    for start in range(0, count, 10_000):
        ids = [uuid.uuid4() for _ in range(min(10_000, count - start))]
        cases = [uuid.uuid4() for _ in ids]
        session.execute(
            insert(Person), [{"id": i, "given_name": "Other", "family_name": "Person"} for i in ids]
        )
        session.execute(
            insert(Consent),
            [
                {
                    "person_id": i,
                    "grantee_agency_id": REQUESTER,
                    "purpose_id": PURPOSE,
                    "categories": [CATEGORY],
                    "valid_from": now - timedelta(days=1),
                    "valid_until": now + timedelta(days=300),
                    "status": "active",
                }
                for i in ids
            ],
        )
        session.execute(
            insert(Case),
            [
                {
                    "id": case,
                    "agency_id": REQUESTER,
                    "reference": f"NATIONAL-{start + n:08d}",
                    "person_id": i,
                    "capacity_id": "applicant",
                    "starts_on": now.date() - timedelta(days=30),
                }
                for n, (i, case) in enumerate(zip(ids, cases, strict=True))
            ],
        )
        session.execute(
            insert(CasePurpose), [{"case_id": case, "purpose_id": PURPOSE} for case in cases]
        )


def persons_with_income(app: Any, source_files: dict[str, Path]) -> list[str]:
    """The requester's identifiers of persons it has an open case on for the purpose and the
    tax source has income records for.

    Read from the broker's identity links and cases and the source database itself, with the
    demo's own income query, so every lookup of the run is expected to come back "ok".
    """
    from broker.cases.models import Case, CasePurpose
    from broker.db import get_db
    from broker.demo_data import CATEGORIES
    from identity.models import IdentityLink

    with get_db(app).sessionmaker() as session:
        cased = (
            select(Case.person_id)
            .join(CasePurpose, CasePurpose.case_id == Case.id)
            .where(
                Case.agency_id == REQUESTER,
                Case.status == "open",
                CasePurpose.purpose_id == PURPOSE,
            )
        )
        rows = session.execute(
            select(IdentityLink.person_id, IdentityLink.agency_id, IdentityLink.value).where(
                IdentityLink.agency_id.in_([REQUESTER, "tax"]), IdentityLink.person_id.in_(cased)
            )
        ).all()
    by_person: dict[Any, dict[str, str]] = {}
    for person_id, agency, value in rows:
        by_person.setdefault(person_id, {})[agency] = value
    query = next(c.query for c in CATEGORIES if c.id == CATEGORY)
    source = sqlite3.connect(f"file:{source_files['tax-db']}?mode=ro", uri=True)
    try:
        found = [
            ids[REQUESTER]
            for ids in by_person.values()
            if REQUESTER in ids
            and "tax" in ids
            and source.execute(query, {"identifier": ids["tax"]}).fetchone()
        ]
    finally:
        source.close()
    return sorted(found)


@contextlib.contextmanager
def prepared(db: str, folder: Path, args: argparse.Namespace) -> Iterator[Instance]:
    """A seeded instance on ``db``; the PostgreSQL database lives only inside the block."""
    if db == "sqlite":
        yield seed_instance(db, folder, args.persons, None, args.national)
        return
    with postgres_database(args.pg_url, "lookup") as url:
        yield seed_instance(db, folder, args.persons, url, args.national)


def lookup_body(identifier: str) -> bytes:
    return json.dumps(
        {
            "person": {"scheme": "client-no", "value": identifier},
            "categories": [CATEGORY],
            "purpose": PURPOSE,
        }
    ).encode()


def requests_for(path: str, token: str, identifiers: list[str]) -> list[bytes]:
    """One request per person, prebuilt; the bare endpoint gets the same bytes on its path."""
    headers = {"Content-Type": "application/json", "Authorization": f"Bearer {token}"}
    return [http_request("POST", path, lookup_body(i), headers) for i in identifiers]


# --- the load runs -----------------------------------------------------------------------


@dataclass
class Comparison:
    db: str
    bare: LoadResult
    lookup: LoadResult
    #: The floor endpoint (``_floor_app.py``): the bare app plus only what any lookup must do.
    floor: LoadResult

    @property
    def ratio(self) -> float:
        return self.lookup.rate / self.bare.rate if self.bare.rate else 0.0

    @property
    def ceiling(self) -> float:
        return self.floor.rate / self.bare.rate if self.bare.rate else 0.0


def first_lookup(base_url: str, token: str, identifier: str) -> None:
    """One lookup before the load, so a misconfigured run fails with the broker's own words."""
    from broker.agency_client import post_lookup

    body = post_lookup(
        base_url,
        token,
        {"person": {"scheme": "client-no", "value": identifier}, "categories": [CATEGORY]}
        | {"purpose": PURPOSE},
    )
    statuses = [r["status"] for r in body["results"]]
    if statuses != ["ok"]:
        raise RuntimeError(f"the first lookup answered {statuses}, expected ['ok']: {body}")


def measure(instance: Instance, settings: ServerSettings, args: argparse.Namespace) -> Comparison:
    """The broker, the bare endpoint and the floor endpoint, each under ``settings`` and the
    same load. The floor's plan is made first, from a lookup by the broker in this process."""
    from broker.agency_client import ClientKey, fetch_token

    env = clean_environment(instance.env)
    logs = instance.folder / "logs"
    logs.mkdir(exist_ok=True)
    load = load_runner(args)
    plan = instance.folder / "floor.plan"
    app, client, own_token = in_process_client(instance)
    url = app.config["DATABASE_URL"]
    floor_parts(app, client, own_token, instance.identifiers[0], url).plan(plan)
    app.extensions["casebroker.sources"].close()
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
        token = fetch_token(ClientKey.load(instance.key_file), server.base_url)["access_token"]
        first_lookup(server.base_url, token, instance.identifiers[0])
        requests = requests_for(LOOKUP_PATH, token, instance.identifiers)
        lookup = load(
            f"{instance.db}: lookup",
            server.port,
            requests,
            LOOKUP_OK,
            server_pids=server.worker_pids(),
        )
    requests = requests_for("/", token, instance.identifiers)
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
    return Comparison(instance.db, bare, lookup, floor)


def report(comparisons: list[Comparison]) -> None:
    table = Table(*RESULT_COLUMNS, title="Throughput and latency (warm-up excluded)")
    for comparison in comparisons:
        table.add_row(*result_row(comparison.bare))
        table.add_row(*result_row(comparison.floor))
        table.add_row(*result_row(comparison.lookup), end_section=True)
    console.print(table)
    for comparison in comparisons:
        print_errors(comparison.bare)
        print_errors(comparison.floor)
        print_errors(comparison.lookup)
    for comparison in comparisons:
        verdict = "meets" if comparison.ratio >= TARGET else "BELOW TARGET: misses"
        console.print(
            f"{comparison.db}: lookup/bare = {comparison.lookup.rate:,.0f} / "
            f"{comparison.bare.rate:,.0f} req/s = {comparison.ratio:.1%} "
            f"({verdict} the {TARGET:.0%} target); floor/bare = {comparison.ceiling:.1%}, the "
            "most any implementation of this lookup could reach in this run"
        )


def run_benchmark(args: argparse.Namespace) -> int:
    settings = ServerSettings(
        workers=args.workers, worker_class=args.worker_class, threads=args.threads
    )
    console.print(f"machine: {machine_summary()}")
    console.print(f"server: {settings.describe()}, the same for the broker and the bare endpoint")
    console.print(
        f"load: {args.concurrency} keep-alive clients on 127.0.0.1 "
        f"({args.load_processes} processes of threads, raw sockets), {args.warmup:g} s warm-up "
        f"then {args.duration:g} s measured; lookup of {CATEGORY!r} for {PURPOSE!r} as "
        f"{REQUESTER}, persons round-robin"
    )
    comparisons = []
    failed = False
    for db in databases(args.db):
        with temporary_folder(f"casebroker-bench-{db}-", keep=args.keep) as folder:
            try:
                with prepared(db, folder, args) as instance:
                    console.print(
                        f"{db}: seeded {args.persons} persons, "
                        f"{len(instance.identifiers)} with income records to look up"
                        + (
                            f", and {args.national:,} others with a consent and a case"
                            if args.national
                            else ""
                        )
                    )
                    comparisons.append(measure(instance, settings, args))
            except Exception as exc:
                failed = True
                console.print(f"[bold red]{db}: not measured[/]: {type(exc).__name__}: {exc}")
                continue
    if comparisons:
        report(comparisons)
    return 1 if failed else 0


def databases(choice: str) -> list[str]:
    return ["sqlite", "postgresql"] if choice == "both" else [choice]


# --- profiling ---------------------------------------------------------------------------


class StageTimer:
    """Wall time spent in named functions, by wrapping them for the length of a block.

    Cheaper and less distorting than a profiler (one clock read per call), so the shares it
    gives are close to what a served lookup spends; the profiler then says why.
    """

    def __init__(self) -> None:
        self.totals: dict[str, float] = {}
        self.calls: dict[str, int] = {}
        self.missing: list[str] = []
        self._restore: list[tuple[Any, str, Any]] = []

    def wrap(self, label: str, owner: Any, name: str) -> None:
        original = owner.__dict__.get(name) if isinstance(owner, type) else None
        original = original or getattr(owner, name, None)
        if original is None or not callable(original):
            self.missing.append(label)
            return
        clock = time.perf_counter

        @functools.wraps(original)
        def timed(*args: Any, **kwargs: Any) -> Any:
            started = clock()
            try:
                return original(*args, **kwargs)
            finally:
                self.totals[label] = self.totals.get(label, 0.0) + clock() - started
                self.calls[label] = self.calls.get(label, 0) + 1

        self.totals.setdefault(label, 0.0)
        self._restore.append((owner, name, original))
        setattr(owner, name, timed)

    def restore(self) -> None:
        for owner, name, original in reversed(self._restore):
            setattr(owner, name, original)
        self._restore.clear()


def stage_wrappers(app: Any) -> list[tuple[str, Any, str]]:
    """The lookup's steps in order (``LookupService.run``), and what surrounds them."""
    from sqlalchemy.orm import Session

    from adapters.sql import SqlAdapter
    from broker.exchange import service, views
    from broker.exchange.service import LookupService
    from broker.exchange.sources import SourceCaller

    return [
        ("view function (all below)", app.view_functions, "exchange.create_lookup"),
        ("  token verification", views, "verify_access_token"),
        ("  JSON body + schema", views, "parse_json"),
        ("  LookupService.run", LookupService, "run"),
        ("    _check_purpose", LookupService, "_check_purpose"),
        ("    _check_categories", LookupService, "_check_categories"),
        ("    _resolve_person", LookupService, "_resolve_person"),
        ("    _find_targets", LookupService, "_find_targets"),
        ("    _consents", LookupService, "_consents"),
        ("    case_facts", service, "case_facts"),
        ("    _decide (Cedar)", LookupService, "_decide"),
        ("    _record (audit)", LookupService, "_record"),
        ("      audit.append", audit, "append"),
        ("      Session.commit", Session, "commit"),
        ("    _fetch_and_shape", LookupService, "_fetch_and_shape"),
        ("      SourceCaller.fetch_all", SourceCaller, "fetch_all"),
        ("        SqlAdapter._fetch", SqlAdapter, "_fetch"),
        ("  jsonify", views, "jsonify"),
    ]


class _Mapping:
    """Lets StageTimer wrap an entry of a dict (the app's view functions) like an attribute."""

    def __init__(self, mapping: dict[str, Any]) -> None:
        object.__setattr__(self, "_mapping", mapping)

    def __getattr__(self, name: str) -> Any:
        return self._mapping.get(name)

    def __setattr__(self, name: str, value: Any) -> None:
        self._mapping[name] = value


def in_process_client(instance: Instance) -> tuple[Any, Any, str]:
    """The broker app in this process, a test client and an access token from ``/token``."""
    from broker.agency_client import ClientKey, client_assertion
    from broker.app import create_app

    app = create_app(environ=instance.env)
    client = app.test_client()
    key = ClientKey.load(instance.key_file)
    response = client.post(
        "/token",
        data={
            "grant_type": "client_credentials",
            "scope": "lookup",
            "client_assertion_type": "urn:ietf:params:oauth:client-assertion-type:jwt-bearer",
            "client_assertion": client_assertion(key, key.issuer),
        },
    )
    if response.status_code != 200:
        raise RuntimeError(f"token endpoint answered {response.status_code}: {response.json}")
    return app, client, response.json["access_token"]


def timed_loop(post: Callable[[int], Any], count: int) -> float:
    """Seconds per call of ``post(i)`` for ``count`` calls, every answer checked."""
    started = time.perf_counter()
    for i in range(count):
        response = post(i)
        if response.status_code != 200 or b'"status":"ok"' not in response.data:
            raise RuntimeError(f"answer {i}: {response.status_code} {response.data[:200]!r}")
    return (time.perf_counter() - started) / count


@dataclass
class FloorParts:
    """What any lookup must do: take one Cedar decision, make its reads and commit one event.

    Not the access token's signature: a client sends the same token for its lifetime, so its
    signature need be checked once per token, not per lookup (the broker does just that)."""

    cedar: dict[str, Any]
    reads: Reads
    url: str

    def plan(self, path: Path) -> None:
        """The floor endpoint's plan for this lookup (``bench/_floor_app.py``)."""
        write_plan(path, [], self.reads, self.url, 1, cedar=self.cedar)


def floor_parts(app: Any, client: Any, token: str, identifier: str, url: str) -> FloorParts:
    """The parts of the floor, from the broker in this process: one lookup of ``identifier`` is
    made to capture its reads, and the Cedar request is the one its decision makes. Events are
    inserted into a scratch table of the database at ``url``."""
    from datetime import UTC, datetime

    from broker.demo_data import CATEGORIES
    from policies import DecisionRequest
    from policies.translate import cedar_request, entities_json, entity_facts

    engine = app.extensions["casebroker.policy"]
    decision = DecisionRequest(
        requester=REQUESTER,
        client_id=REQUESTER,
        officer_roles=(),
        provider="tax",
        category=CATEGORY,
        sensitivity=next(c.sensitivity for c in CATEGORIES if c.id == CATEGORY),
        purpose=PURPOSE,
        consent=False,
        justification=False,
        break_glass=False,
        now=datetime.now(UTC),
        open_case=True,
    )
    if not engine.decide(decision).permit:
        raise RuntimeError("the floor's Cedar request is not the permitted one the bench asks")
    headers = {"Authorization": f"Bearer {token}"}
    body = lookup_body(identifier)

    def lookup(_: int) -> None:
        client.post(LOOKUP_PATH, data=body, headers=headers, content_type="application/json")

    cedar = {
        "directory": str(engine.directory),
        "requests": [cedar_request(decision)],
        "entities": entities_json(entity_facts([decision])),
    }
    return FloorParts(cedar, captured_reads(lookup), url)


def floor_costs(parts: FloorParts, count: int) -> list[tuple[str, float]]:
    """Seconds per call of each part of the floor, through the bare libraries and drivers (no
    SQLAlchemy). With the bare request's own time, they bound from above the ratio any
    implementation of this lookup could reach here, in process."""
    import cedarpy

    from policies.loader import load_directory

    snapshot = load_directory(Path(parts.cedar["directory"]))
    entities = cedarpy.Entities.from_json_str(parts.cedar["entities"], snapshot.schema)
    requests = parts.cedar["requests"]
    return [
        (
            "one Cedar decision (cedarpy)",
            per_call(
                lambda i: cedarpy.is_authorized_batch(requests, snapshot.policy_set, entities),
                count,
            ),
        ),
        (
            f"its {len(parts.reads)} reads, the SQL it sent (bare drivers, autocommit)",
            replay_reads(parts.reads, count),
        ),
        ("one event inserted and committed (bare driver)", committed_inserts(parts.url, 1, count)),
    ]


def run_profile(args: argparse.Namespace) -> int:
    """Lookups in this process: plain timing, time per stage, then cProfile."""
    from _bare import app as bare_app

    console.print(f"machine: {machine_summary()}")
    for db in databases(args.db):
        with (
            temporary_folder(f"casebroker-profile-{db}-", keep=args.keep) as folder,
            prepared(db, folder, args) as instance,
        ):
            app, client, token = in_process_client(instance)
            headers = {"Authorization": f"Bearer {token}"}
            bodies = [lookup_body(i) for i in instance.identifiers]

            def lookup(
                i: int, client: Any = client, headers: Any = headers, bodies: Any = bodies
            ) -> Any:
                body = bodies[i % len(bodies)]
                return client.post(
                    LOOKUP_PATH, data=body, headers=headers, content_type="application/json"
                )

            bare_client = bare_app.test_client()

            def bare(
                i: int, bare_client: Any = bare_client, headers: Any = headers, bodies: Any = bodies
            ) -> Any:
                body = bodies[i % len(bodies)]
                return bare_client.post(
                    "/", data=body, headers=headers, content_type="application/json"
                )

            count = args.lookups
            timed_loop(lookup, min(200, count))
            timed_loop(bare, min(200, count))
            per_lookup = timed_loop(lookup, count)
            per_bare = timed_loop(bare, count)
            console.print(
                f"\n[bold]{db}[/]: in-process, one thread, Flask test client, {count} lookups: "
                f"{per_lookup * 1000:.2f} ms per lookup, {per_bare * 1000:.3f} ms per bare "
                f"request ({per_bare / per_lookup:.1%} of a lookup)"
            )

            timer = StageTimer()
            for label, owner, name in stage_wrappers(app):
                target = _Mapping(owner) if isinstance(owner, dict) else owner
                timer.wrap(label, target, name)
            try:
                whole = timed_loop(lookup, count)
            finally:
                timer.restore()
            table = Table(
                "stage", "ms/lookup", "% of request", "calls/lookup", title="Time per stage"
            )
            table.add_row("whole request (test client)", f"{whole * 1000:.3f}", "100%", "1")
            for label, total in timer.totals.items():
                table.add_row(
                    label,
                    f"{total / count * 1000:.3f}",
                    f"{total / count / whole:.0%}",
                    f"{timer.calls.get(label, 0) / count:.1f}",
                )
            console.print(table)
            if timer.missing:
                console.print(f"not found, not timed: {', '.join(timer.missing)}")

            profile_calls(console, lookup, count, args.top, "lookup")
            url = app.config["DATABASE_URL"]
            if url.startswith("sqlite"):
                url = f"sqlite:///{folder / 'floor.db'}"
            parts = floor_parts(app, client, token, instance.identifiers[0], url)
            print_floor(console, "lookup", floor_costs(parts, count), per_bare, per_lookup)
            app.extensions["casebroker.sources"].close()
            app.extensions["casebroker.db"].dispose()
    return 0


# --- command line ------------------------------------------------------------------------


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description="Lookups per second and latency under gunicorn, against a bare Flask "
        "JSON endpoint under the same settings; or, with --profile, where a lookup's time goes."
    )
    parser.add_argument("--db", choices=("sqlite", "postgresql", "both"), default="both")
    parser.add_argument("--duration", type=float, default=10.0, help="measured seconds per run")
    parser.add_argument("--warmup", type=float, default=2.0, help="uncounted seconds first")
    parser.add_argument("--concurrency", type=int, default=32, help="keep-alive clients")
    parser.add_argument("--workers", type=int, default=2, help="gunicorn workers")
    parser.add_argument(
        "--worker-class", default="gthread", help="gunicorn worker class (sync has no keep-alive)"
    )
    parser.add_argument("--threads", type=int, default=4, help="threads per gthread worker")
    parser.add_argument("--load-processes", type=int, default=2, help="load generator processes")
    parser.add_argument("--persons", type=int, default=1000, help="demo persons to seed")
    parser.add_argument(
        "--national",
        type=int,
        default=0,
        help="other persons to add, each with an active consent and an open case at the "
        "requester (a lookup must cost the same with 0 or 1,000,000 of them)",
    )
    parser.add_argument(
        "--pg-url",
        default=DEFAULT_PG_URL,
        help="PostgreSQL server to create the temporary database on",
    )
    parser.add_argument("--profile", action="store_true", help="profile in-process instead")
    parser.add_argument("--lookups", type=int, default=3000, help="lookups per profile pass")
    parser.add_argument("--top", type=int, default=25, help="functions listed by the profile")
    parser.add_argument("--keep", action="store_true", help="keep the temporary folder (logs)")
    args = parser.parse_args(argv)
    if not 0 < args.duration <= 600 or not 0 <= args.warmup <= 60:
        parser.error("--duration must be in (0, 600] and --warmup in [0, 60] seconds")
    if not 1 <= args.concurrency <= 1024 or not 1 <= args.lookups <= 1_000_000:
        parser.error("--concurrency must be in [1, 1024] and --lookups in [1, 1000000]")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    return run_profile(args) if args.profile else run_benchmark(args)


if __name__ == "__main__":
    sys.exit(main())
