"""The ``sql`` adapter: an agency's own database, read through fixed, parameterised queries.

Read-only twice over: each query must be a single SELECT (checked at start-up), and the
connection itself refuses writes (SQLite opened ``mode=ro`` with ``query_only``; PostgreSQL
sessions and transactions set read-only). The person's identifier is only ever a bound parameter.
"""

from __future__ import annotations

import math
import re
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from datetime import date
from datetime import time as clock_time
from decimal import Decimal
from typing import Any, TypeVar
from urllib.parse import quote
from uuid import UUID

from sqlalchemy import (
    Connection,
    Engine,
    Select,
    TextClause,
    create_engine,
    event,
    literal_column,
    select,
    text,
)
from sqlalchemy.engine import URL, make_url
from sqlalchemy.exc import ArgumentError, DBAPIError, NoSuchModuleError, SQLAlchemyError
from sqlalchemy.pool import QueuePool

from adapters.config import ConfigReader, check_identifier, field_sets, fields_of
from adapters.contract import Health, JSONValue, Record, SourceUnavailable
from adapters.deadline import Deadline, Runner

_KEYS = {"url", "queries", "pool_size", "max_records", "connect_timeout"}
#: SQLAlchemy's own pattern for the ``:name`` bind parameters of a ``text()`` clause.
_BIND = re.compile(r"(?<![:\w\\]):(\w+)(?!:)")
_LITERALS = re.compile(r"'(?:[^']|'')*'|\"(?:[^\"]|\"\")*\"|--[^\n]*|/\*.*?\*/", re.DOTALL)
_FIRST_WORD = re.compile(r"\s*([A-Za-z]+)")
_WRITES = re.compile(
    r"\b(insert|update|delete|merge|into|create|alter|drop|truncate|attach|detach|pragma"
    r"|vacuum|reindex|grant|revoke|copy|call|lock)\b",
    re.IGNORECASE,
)
T = TypeVar("T")
_TIMEOUT_STATES = {"57014"}  # PostgreSQL query_canceled: statement_timeout fired


def check_query(query: str) -> str | None:
    """Why a configured query is refused, or None: only one read-only SELECT on ``:identifier``.

    Deliberately conservative (no ``;`` even inside literals); the read-only connection is
    what makes writes impossible, this check makes mistakes visible at start-up.
    """
    body = query.strip()
    body = body.removesuffix(";").rstrip()
    bare = _LITERALS.sub(" ", body)
    if ";" in body:
        return "it holds more than one statement (a ';' before the end)"
    first = _FIRST_WORD.match(bare)
    if not first or first.group(1).lower() not in ("select", "with"):
        return "it is not a SELECT (nor WITH ... SELECT)"
    writes = sorted({word.upper() for word in _WRITES.findall(bare)})
    if writes:
        return f"it uses {', '.join(writes)}, which may write"
    binds = set(_BIND.findall(body))
    if "identifier" not in binds:
        return "it does not use the bind parameter :identifier"
    others = sorted(binds - {"identifier"})
    if others:
        named = ", ".join(f":{name}" for name in others)
        return f"it uses bind parameter(s) {named}; only :identifier is given"
    return None


class SqlAdapter:
    """A source read through one SQLAlchemy engine; safe to share between threads."""

    #: ``fetch`` returns or raises by its timeout on its own: on SQLite the statement and the
    #: lock wait stop at the deadline, elsewhere its ``Runner`` stops waiting.
    keeps_deadline = True

    def __init__(
        self, source_id: str, config: Mapping[str, Any], categories: Mapping[str, Sequence[str]]
    ) -> None:
        reader = ConfigReader("sql", source_id, config, _KEYS)
        self.source_id = source_id
        self._fields = field_sets(categories, reader)
        self._queries: dict[str, TextClause] = {}
        self._probes: dict[str, Select[Any]] = {}
        for category, query in reader.per_category("queries", categories).items():
            refused = check_query(query)
            if refused:
                raise reader.error(
                    f"queries[{category!r}] is refused: {refused}; only a single read-only "
                    "SELECT on :identifier is allowed"
                )
            body = query.strip().removesuffix(";").rstrip()
            self._queries[category] = text(body)
            probe = text(body + "\n").columns().subquery("casebroker_probe")
            self._probes[category] = select(literal_column("*")).select_from(probe).limit(0)
        self._max_records = reader.integer("max_records", 1000, 1, 100_000)
        pool_size = reader.integer("pool_size", 4, 1, 32)
        connect_timeout = reader.integer("connect_timeout", 5, 2, 60)
        self._engine, self._begin = _make_engine(
            reader, reader.string("url"), pool_size, connect_timeout
        )
        # A SQLite file is read in the caller's thread: nothing there can block past the
        # deadline (``_sqlite_begin`` bounds the statement and the lock wait, and its pool never
        # makes a caller wait), so a worker thread would only add a hand-off. A server may stop
        # answering mid-call, so its reads run on worker threads the caller stops waiting for.
        inline = self._engine.dialect.name == "sqlite"
        self._runner = None if inline else Runner(f"casebroker-sql-{source_id}", pool_size)
        self._closed = False

    def fetch(self, category: str, identifier: str, timeout: float) -> list[Record]:
        """The rows the category's query returns for ``identifier``, as records."""
        fields = fields_of(self._fields, category)
        check_identifier(identifier)
        deadline = Deadline(timeout)
        return self._run(lambda d: self._fetch(category, fields, identifier, d), deadline)

    def _run(self, call: Callable[[Deadline], T], deadline: Deadline) -> T:
        if self._runner is None:
            if self._closed:
                raise SourceUnavailable("adapter is closed")
            deadline.check()
            return call(deadline)
        return self._runner.run(call, deadline)

    def _fetch(
        self, category: str, fields: frozenset[str], identifier: str, deadline: Deadline
    ) -> list[Record]:
        with self._connection(deadline, identifier) as conn:
            result = conn.execute(self._queries[category], {"identifier": identifier})
            columns = _checked_columns(category, list(result.keys()), fields)
            rows = result.fetchmany(self._max_records + 1)
        if len(rows) > self._max_records:
            raise SourceUnavailable(f"more than {self._max_records} records for one person")
        return [
            {column: _json_value(column, value) for column, value in zip(columns, row, strict=True)}
            for row in rows
        ]

    def health(self, timeout: float) -> Health:
        """Connects and prepares every query, so a wrong column shows before a lookup needs it."""
        deadline = Deadline(timeout)
        try:
            checked = self._run(self._probe, deadline)
        except SourceUnavailable as exc:
            return Health(False, str(exc))
        return Health(True, f"{checked} queries answer with known fields")

    def _probe(self, deadline: Deadline) -> int:
        with self._connection(deadline, None) as conn:
            for category, probe in self._probes.items():
                keys = list(conn.execute(probe, {"identifier": ""}).keys())
                _checked_columns(category, keys, self._fields[category])
        return len(self._probes)

    @contextmanager
    def _connection(self, deadline: Deadline, identifier: str | None) -> Iterator[Connection]:
        """A pooled connection in a read-only transaction bounded by the deadline."""
        try:
            with self._engine.connect() as conn:
                end = self._begin(conn, deadline)
                try:
                    yield conn
                finally:
                    end(conn)
        except SQLAlchemyError as exc:
            raise _unavailable(exc, deadline, identifier) from None

    def close(self) -> None:
        """Stops the worker threads and closes the pooled connections; idempotent."""
        if self._closed:
            return
        self._closed = True
        if self._runner is not None:
            self._runner.close()
        self._engine.dispose()


def _checked_columns(category: str, columns: list[str], fields: frozenset[str]) -> list[str]:
    unknown = [column for column in columns if column not in fields]
    if unknown:
        raise SourceUnavailable(
            f"the query for {category!r} returns column(s) that are not fields of the "
            f"category: {', '.join(unknown)}"
        )
    if len(set(columns)) != len(columns):
        raise SourceUnavailable(f"the query for {category!r} returns a column twice")
    return columns


def _json_value(column: str, value: Any) -> JSONValue:
    """The neutral form of a database value: dates as ISO 8601, decimals as numbers."""
    if value is None or isinstance(value, str | bool | int):
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else str(value)
    if isinstance(value, Decimal):
        if not value.is_finite():
            return str(value)
        return int(value) if value == value.to_integral_value() else float(value)
    if isinstance(value, date | clock_time):
        return value.isoformat()
    if isinstance(value, UUID):
        return str(value)
    if isinstance(value, list | tuple):
        return [_json_value(column, item) for item in value]
    if isinstance(value, dict):
        return {str(key): _json_value(column, item) for key, item in value.items()}
    raise SourceUnavailable(
        f"column {column!r} holds a {type(value).__name__} value, which has no JSON form; "
        "convert it in the query"
    )


def _unavailable(
    exc: SQLAlchemyError, deadline: Deadline, identifier: str | None
) -> SourceUnavailable:
    """A short reason without the statement, its parameters or the person's identifier."""
    orig = getattr(exc, "orig", None)
    state = getattr(orig, "sqlstate", None) or getattr(orig, "pgcode", None)
    if deadline.remaining() <= 0 or state in _TIMEOUT_STATES:
        return deadline.error()
    if isinstance(exc, DBAPIError) and exc.orig is not None:
        lines = str(exc.orig).strip().splitlines()
        detail = lines[0] if lines else type(exc.orig).__name__
    else:
        detail = type(exc).__name__
    if identifier:
        detail = detail.replace(identifier, "<identifier>")
    return SourceUnavailable(f"database error: {detail[:200]}")


Begin = Callable[[Connection, Deadline], Callable[[Connection], None]]


def _make_engine(
    reader: ConfigReader, url_text: str, pool_size: int, connect_timeout: int
) -> tuple[Engine, Begin]:
    """An engine whose every connection is read-only, and how to bound one transaction."""
    try:
        url = make_url(url_text)
    except ArgumentError:
        raise reader.error("url is not a SQLAlchemy database URL") from None
    backend = url.get_backend_name()
    try:
        if backend == "sqlite":
            return _sqlite_engine(reader, url, pool_size), _sqlite_begin
        if backend == "postgresql":
            return _postgresql_engine(url, pool_size, connect_timeout), _postgresql_begin
    except (NoSuchModuleError, ImportError) as exc:
        raise reader.error(f"url: cannot load the database driver: {exc}") from None
    raise reader.error(
        f"url: the {backend} backend is not supported; read-only access is enforced "
        "for sqlite and postgresql"
    )


def _sqlite_engine(reader: ConfigReader, url: URL, pool_size: int) -> Engine:
    database = url.database
    if not database or database == ":memory:" or database.startswith("file::memory:"):
        raise reader.error("url must name a database file; an in-memory database holds nothing")
    query = dict(url.query)
    if query.get("uri") != "true":
        database = "file:" + quote(database, safe="/:")
    query.update(mode="ro", uri="true")
    engine = create_engine(
        url.set(database=database, query=query),
        poolclass=QueuePool,
        pool_size=pool_size,
        max_overflow=-1,
        connect_args={"check_same_thread": False},
    )
    event.listen(engine, "connect", _sqlite_query_only)
    return engine


def _sqlite_query_only(dbapi_connection: Any, _record: Any) -> None:
    """A second lock on the read-only door, should the file ever be opened for writing."""
    dbapi_connection.execute("PRAGMA query_only = ON")


def _sqlite_begin(conn: Connection, deadline: Deadline) -> Callable[[Connection], None]:
    """Abort the statement at the deadline, and wait for locks no longer than that."""
    raw = conn.connection.dbapi_connection
    at = deadline.at
    raw.set_progress_handler(lambda: time.monotonic() > at, 1000)
    raw.execute(f"PRAGMA busy_timeout = {max(1, int(deadline.remaining() * 1000)):d}")
    return lambda c: raw.set_progress_handler(None, 0)


def _postgresql_engine(url: URL, pool_size: int, connect_timeout: int) -> Engine:
    connect_args: dict[str, Any] = {}
    if url.get_driver_name() in ("psycopg", "psycopg2"):
        connect_args = {
            "connect_timeout": connect_timeout,
            "keepalives": 1,
            "keepalives_idle": 30,
            "keepalives_interval": 10,
            "keepalives_count": 3,
        }
    engine = create_engine(
        url,
        pool_size=pool_size,
        max_overflow=0,
        pool_pre_ping=True,
        connect_args=connect_args,
    )
    event.listen(engine, "connect", _postgresql_read_only)
    return engine


def _postgresql_read_only(dbapi_connection: Any, _record: Any) -> None:
    """Every transaction of the session is read-only unless something undoes it."""
    autocommit = dbapi_connection.autocommit
    dbapi_connection.autocommit = True
    cursor = dbapi_connection.cursor()
    cursor.execute("SET SESSION CHARACTERISTICS AS TRANSACTION READ ONLY")
    cursor.close()
    dbapi_connection.autocommit = autocommit


def _postgresql_begin(conn: Connection, deadline: Deadline) -> Callable[[Connection], None]:
    """This transaction read-only again, and its statements cancelled by the server in time."""
    conn.execute(
        text(
            "SELECT set_config('transaction_read_only', 'on', true), "
            "set_config('statement_timeout', :ms, true)"
        ),
        {"ms": str(max(1, int(deadline.remaining() * 1000)))},
    )
    return lambda c: None
