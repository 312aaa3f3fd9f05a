"""The floor of a request: what any implementation must spend on it, timed without a framework.

Both ``--profile`` runs print one: the cryptography and the policy decision a request cannot
skip, the reads it made (the very SQL and parameters, captured from a real request and replayed
through the bare drivers) and its commits. With the bare endpoint's own time, the sum bounds from
above the ratio any implementation of the request could reach on this machine, in process. Both
throughput runs serve the same work as an endpoint (``_floor_app.py``, from a plan written here)
under the benchmark's server and load, which bounds the ratio under load.
"""

from __future__ import annotations

import itertools
import json
import pickle
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from _common import per_call
from rich.console import Console
from rich.table import Table

Reads = list[tuple[str, str, Any]]


def captured_reads(request: Callable[[int], Any]) -> Reads:
    """The reads one request sends to its databases (the broker's and the source's), as the
    driver received them: (database URL, SQL, parameters). Statements run through SQLAlchemy
    are seen by its event; the prepared ones go straight to the cursor, so it is watched too."""
    from sqlalchemy import event
    from sqlalchemy.engine import Engine

    import broker.prepared

    seen = []

    def record(conn: Any, _cursor: Any, statement: str, parameters: Any, *_: Any) -> None:
        if statement.lstrip().upper().startswith(("SELECT", "WITH")):
            url = conn.engine.url.render_as_string(hide_password=False)
            seen.append((url, statement, parameters))

    class Watched:
        def __init__(self, connection: Any) -> None:
            self._connection = connection
            self._cursor = cursor_of(connection)

        def execute(self, statement: str, parameters: Any) -> Any:
            record(self._connection, None, statement, parameters)
            return self._cursor.execute(statement, parameters)

        def __getattr__(self, name: str) -> Any:
            return getattr(self._cursor, name)

    cursor_of = broker.prepared._cursor
    event.listen(Engine, "before_cursor_execute", record)
    broker.prepared._cursor = Watched
    try:
        request(0)
    finally:
        broker.prepared._cursor = cursor_of
        event.remove(Engine, "before_cursor_execute", record)
    return seen


def replay_reads(reads: Reads, count: int) -> float:
    """Seconds per replay of ``reads`` through the bare drivers, autocommitted (no BEGIN)."""
    from sqlalchemy import create_engine

    engines, raws, cursors = [], {}, {}
    try:
        for url in dict.fromkeys(url for url, _, _ in reads):
            engine = create_engine(url)  # only to open the driver's connection as the URL says
            engines.append(engine)
            raw = engine.raw_connection()
            raws[url] = raw
            if url.startswith("sqlite"):
                raw.dbapi_connection.isolation_level = None
            else:
                raw.dbapi_connection.autocommit = True
            cursors[url] = raw.cursor()

        def replay(_: int) -> None:
            for url, statement, parameters in reads:
                cursor = cursors[url]
                cursor.execute(statement, parameters)
                cursor.fetchall()

        return per_call(replay, count)
    finally:
        for raw in raws.values():
            raw.close()
        for engine in engines:
            engine.dispose()


def write_plan(
    path: Path,
    verify: list[tuple[str, dict[str, Any]]],
    reads: Reads,
    url: str,
    inserts: int,
    cedar: dict[str, Any] | None = None,
    sign: dict[str, Any] | None = None,
) -> None:
    """The floor endpoint's plan (``_floor_app.py``): the (token, public JWK) signatures to
    check, the reads to replay, ``inserts`` committed inserts into ``url``'s scratch table,
    the Cedar requests (with the policy directory and entities) and a private JWK to sign with.
    A pickle, because the captured parameters are the drivers' own objects (UUIDs, datetimes)."""
    plan = {
        "verify": verify,
        "reads": reads,
        "inserts": {"url": url, "count": inserts},
        "cedar": cedar,
        "sign": sign,
    }
    path.write_bytes(pickle.dumps(plan))


@contextmanager
def scratch_table(url: str) -> Iterator[None]:
    """The floor endpoint's ``bench_floor`` table in ``url``'s database, dropped at the end."""
    from broker.db import make_engine

    database = make_engine(url)
    try:
        with database.begin() as connection:
            connection.exec_driver_sql(
                "CREATE TABLE bench_floor (id VARCHAR(32) PRIMARY KEY, record TEXT)"
            )
        yield
    finally:
        with database.begin() as connection:
            connection.exec_driver_sql("DROP TABLE IF EXISTS bench_floor")
        database.dispose()


def measure_floor(
    label: str,
    plan: Path,
    url: str,
    serve: Callable[..., Any],
    load: Callable[..., Any],
    requests: list[bytes],
    expect: Any,
) -> Any:
    """The floor endpoint under the benchmark's server settings (``serve``: a ``Gunicorn``
    with all but the app and its environment given) and load, taking ``requests``."""
    with (
        scratch_table(url),
        serve("_floor_app:app", {"FLOOR_PLAN": str(plan)}, "floor.log") as server,
    ):
        return load(label, server.port, requests, expect, server_pids=server.worker_pids())


def committed_inserts(url: str, rows: int, count: int) -> float:
    """Seconds per ``rows`` single-row inserts, each committed, through the bare driver on the
    app's own connection settings (WAL, ...), into a scratch table dropped at the end."""
    from broker.db import make_engine

    database = make_engine(url)
    raw = database.raw_connection()
    seqs = itertools.count()
    statement = (
        "INSERT INTO bench_floor VALUES (?, ?)"
        if url.startswith("sqlite")
        else "INSERT INTO bench_floor VALUES (%s, %s)"
    )
    record = json.dumps({"kind": "lookup.decision", "padding": "x" * 400})
    try:
        cursor = raw.cursor()
        cursor.execute("CREATE TABLE bench_floor (seq INTEGER PRIMARY KEY, record TEXT)")
        raw.commit()

        def insert(_: int) -> None:
            for _row in range(rows):
                cursor.execute(statement, (next(seqs), record))
                raw.commit()

        seconds = per_call(insert, count)
        cursor.execute("DROP TABLE bench_floor")
        raw.commit()
    finally:
        raw.close()
        database.dispose()
    return seconds


def print_floor(
    console: Console, what: str, costs: list[tuple[str, float]], per_bare: float, per_request: float
) -> None:
    table = Table(f"what every {what} must do", "ms", title="The floor: no framework, no ORM")
    for label, seconds in costs:
        table.add_row(label, f"{seconds * 1000:.3f}")
    floor = sum(seconds for _, seconds in costs)
    table.add_row("sum", f"{floor * 1000:.3f}", end_section=True)
    console.print(table)
    console.print(
        f"A {what} costing the bare request plus only this would run at "
        f"{per_bare / (per_bare + floor):.0%} of the bare rate in-process; this one runs at "
        f"{per_bare / per_request:.1%}."
    )
