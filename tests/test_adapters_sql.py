"""The ``sql`` adapter: the contract kit on SQLite (and on PostgreSQL when the run has one),
read-only connections, bound identifiers, refused statements and bounded queries."""

from __future__ import annotations

import os
import secrets
import sqlite3
import time
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass
from datetime import UTC, date, datetime
from datetime import time as clock_time
from decimal import Decimal
from pathlib import Path
from typing import Any
from uuid import UUID

import pytest
from sqlalchemy import create_engine, text
from sqlalchemy.exc import DBAPIError

from adapters import AdapterConfigError, Health, SourceUnavailable
from adapters.sql import SqlAdapter, _json_value, check_query
from adapters.testing import (
    AdapterContract,
    HangingSourceContract,
    UnavailableSourceContract,
    check_records,
)

PG_URL = os.environ.get("CASEBROKER_TEST_DATABASE_URL")
BACKENDS = ["sqlite", *(["postgresql"] if PG_URL else [])]

CATEGORIES = {
    "income": ("year", "gross_income", "employer", "assessed_on"),
    "address": ("street", "city", "postcode"),
}
INJECTION = "x' OR '1'='1"
RUNAWAY = (
    "WITH RECURSIVE forever(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM forever) "
    "SELECT street FROM residence WHERE tin = :identifier AND (SELECT max(n) FROM forever) > 0"
)

SCHEMA = [
    "CREATE TABLE taxpayer_income (tin VARCHAR(64), tax_year INTEGER, gross NUMERIC(12, 2), "
    "assessed_on DATE, employer VARCHAR(200))",
    "CREATE TABLE residence (tin VARCHAR(64), street VARCHAR(200), city VARCHAR(100), "
    "postcode VARCHAR(16))",
    "CREATE TABLE note (tin VARCHAR(64), street VARCHAR(200))",
    "INSERT INTO taxpayer_income VALUES "
    "('123456789', 2023, 52000.50, '2024-05-01', 'Acme Ltd'), "
    "('123456789', 2022, 48000.00, '2023-04-28', 'Acme Ltd'), "
    "('987654321', 2023, 61000.00, '2024-05-03', 'Globex')",
    "INSERT INTO residence VALUES ('123456789', '1 Main Street', 'Springfield', 'A1B 2C3'), "
    "('555000111', '9 Side Road', 'Shelbyville', NULL)",
    "INSERT INTO note VALUES ('x'' OR ''1''=''1', 'bound'), ('someone-else', 'not to be seen')",
]


@dataclass
class SourceDb:
    """A source database the adapter reads, and a way to make its reads hang."""

    backend: str
    url: str
    lock: Callable[[], AbstractContextManager[None]]
    missing_url: str

    def queries(self, **overrides: str) -> dict[str, str]:
        queries = {
            "income": "SELECT tax_year AS year, gross AS gross_income, employer, assessed_on "
            "FROM taxpayer_income WHERE tin = :identifier ORDER BY tax_year DESC",
            "address": "SELECT street, city, postcode FROM residence WHERE tin = :identifier",
        }
        return {**queries, **overrides}

    def config(self, **extra: Any) -> dict[str, Any]:
        return {"url": self.url, "identifier_scheme": "tin", "queries": self.queries(), **extra}


def _sqlite_source(path: Path) -> SourceDb:
    with sqlite3.connect(path) as conn:
        for statement in SCHEMA:
            conn.execute(statement)
    conn.close()

    @contextmanager
    def lock() -> Iterator[None]:
        holder = sqlite3.connect(path, isolation_level=None)
        holder.execute("BEGIN EXCLUSIVE")
        try:
            yield
        finally:
            holder.execute("ROLLBACK")
            holder.close()

    return SourceDb("sqlite", f"sqlite:///{path}", lock, f"sqlite:///{path}.missing")


@contextmanager
def _postgresql_source(worker_id: str) -> Iterator[SourceDb]:
    assert PG_URL
    schema = f"adapter_src_{worker_id}_{secrets.token_hex(4)}"
    admin = create_engine(PG_URL)
    with admin.begin() as conn:
        conn.execute(text(f'CREATE SCHEMA "{schema}"'))
        conn.execute(text(f'SET LOCAL search_path TO "{schema}"'))
        for statement in SCHEMA:
            conn.execute(text(statement))

    @contextmanager
    def lock() -> Iterator[None]:
        with admin.connect() as holder, holder.begin():
            holder.execute(text(f'SET LOCAL search_path TO "{schema}"'))
            holder.execute(text("LOCK TABLE taxpayer_income, residence IN ACCESS EXCLUSIVE MODE"))
            yield

    url = admin.url.update_query_dict({"options": f"-csearch_path={schema}"})
    missing = url.set(database="casebroker_no_such_database")
    try:
        yield SourceDb(
            "postgresql",
            url.render_as_string(hide_password=False),
            lock,
            missing.render_as_string(hide_password=False),
        )
    finally:
        with admin.begin() as conn:
            conn.execute(text(f'DROP SCHEMA "{schema}" CASCADE'))
        admin.dispose()


@pytest.fixture(scope="module", params=BACKENDS)
def source(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory, worker_id: str
) -> Iterator[SourceDb]:
    if request.param == "sqlite":
        yield _sqlite_source(tmp_path_factory.mktemp("sql-source") / "agency.db")
    else:
        with _postgresql_source(worker_id) as db:
            yield db


@pytest.fixture
def make_adapter(source: SourceDb) -> Iterator[Callable[..., SqlAdapter]]:
    made: list[SqlAdapter] = []

    def make(config: dict[str, Any] | None = None, categories: Any = CATEGORIES) -> SqlAdapter:
        adapter = SqlAdapter("tax-records", config or source.config(), categories)
        made.append(adapter)
        return adapter

    yield make
    for adapter in made:
        adapter.close()


@pytest.fixture
def categories() -> dict[str, tuple[str, ...]]:
    return CATEGORIES


@pytest.fixture
def known_identifiers() -> dict[str, str]:
    return {"income": "123456789", "address": "555000111"}


@pytest.fixture
def unknown_identifier() -> str:
    return "000000000"


@pytest.fixture
def adapter(make_adapter: Callable[..., SqlAdapter]) -> SqlAdapter:
    return make_adapter()


@pytest.fixture
def hanging_adapter(source: SourceDb, adapter: SqlAdapter) -> Iterator[SqlAdapter]:
    with source.lock():
        yield adapter


@pytest.fixture
def unavailable_adapter(source: SourceDb, make_adapter: Callable[..., SqlAdapter]) -> SqlAdapter:
    return make_adapter({**source.config(), "url": source.missing_url})


class TestSqlAdapterContract(AdapterContract, HangingSourceContract, UnavailableSourceContract):
    """The kit, on every database backend of this run."""


def test_rows_become_neutral_records(adapter):
    records = adapter.fetch("income", "123456789", 5.0)
    check_records(records, CATEGORIES["income"])
    assert [r["year"] for r in records] == [2023, 2022]
    assert records[0]["gross_income"] == pytest.approx(52000.5)
    assert records[0]["employer"] == "Acme Ltd"
    assert records[0]["assessed_on"] == "2024-05-01"
    assert adapter.fetch("address", "555000111", 5.0) == [
        {"street": "9 Side Road", "city": "Shelbyville", "postcode": None}
    ]


def test_the_identifier_is_bound_never_spliced(source, make_adapter):
    query = "SELECT street FROM note WHERE tin = :identifier"
    adapter = make_adapter(
        {**source.config(), "queries": {"address": query}},
        {"address": CATEGORIES["address"]},
    )
    assert adapter.fetch("address", INJECTION, 5.0) == [{"street": "bound"}]
    assert adapter.fetch("address", "x", 5.0) == []


def test_the_connection_itself_refuses_writes(source, adapter):
    with adapter._engine.connect() as conn, pytest.raises(DBAPIError, match=r"read.?only"):
        conn.execute(text("DELETE FROM residence"))
    assert adapter.fetch("address", "555000111", 5.0) != []


def test_a_uri_asking_for_write_mode_is_still_read_only(tmp_path, make_adapter):
    db = _sqlite_source(tmp_path / "rw.db")
    adapter = make_adapter(
        {**db.config(), "url": f"sqlite:///file:{tmp_path / 'rw.db'}?mode=rw&uri=true"}
    )
    assert adapter.fetch("address", "555000111", 5.0) != []
    with adapter._engine.connect() as conn, pytest.raises(DBAPIError, match="readonly"):
        conn.execute(text("INSERT INTO note VALUES ('a', 'b')"))


@pytest.mark.parametrize(
    ("query", "reason"),
    [
        ("DELETE FROM residence WHERE tin = :identifier", "not a SELECT"),
        ("UPDATE residence SET city = 'x' WHERE tin = :identifier", "not a SELECT"),
        ("PRAGMA writable_schema = 1", "not a SELECT"),
        ("DROP TABLE residence", "not a SELECT"),
        (
            "SELECT street FROM residence WHERE tin = :identifier; DROP TABLE residence",
            "more than one statement",
        ),
        (
            "WITH gone AS (DELETE FROM residence RETURNING street) "
            "SELECT street FROM gone WHERE :identifier IS NOT NULL",
            "DELETE",
        ),
        ("SELECT street INTO copy FROM residence WHERE tin = :identifier", "INTO"),
        ("SELECT street FROM residence", ":identifier"),
        ("SELECT street FROM residence WHERE tin = :identifier AND city = :city", ":city"),
    ],
)
def test_anything_but_one_select_on_identifier_is_refused(source, query, reason):
    config = source.config()
    config["queries"]["address"] = query
    with pytest.raises(AdapterConfigError, match="address") as refused:
        SqlAdapter("tax-records", config, CATEGORIES)
    assert reason in str(refused.value)


def test_a_trailing_semicolon_and_comments_are_fine():
    query = "SELECT street -- the street\nFROM residence WHERE tin = :identifier /* x */;"
    assert check_query(query) is None
    assert check_query("WITH r AS (SELECT 1 AS n) SELECT n FROM r WHERE :identifier <> ''") is None


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"url": "mysql+pymysql://u@db/agency"}, "mysql backend is not supported"),
        ({"url": "sqlite://"}, "must name a database file"),
        ({"url": "not a url"}, "url is not a SQLAlchemy database URL"),
        ({"url": "postgresql+nodriver://u@db/x"}, "cannot load the database driver"),
        ({"queries": {"income": "SELECT 1 AS year WHERE :identifier = ''"}}, "address"),
        ({"pool_size": 0}, "pool_size must be an integer from 1 to 32"),
        ({"identifier_scheme": ""}, "identifier_scheme"),
        ({"urll": "sqlite:///x.db"}, "unknown config key(s) urll"),
    ],
)
def test_config_mistakes_are_named_at_construction(change, message):
    config = {
        "url": "sqlite:///agency.db",
        "queries": {
            "income": "SELECT tax_year AS year FROM t WHERE tin = :identifier",
            "address": "SELECT street FROM t WHERE tin = :identifier",
        },
        **change,
    }
    with pytest.raises(AdapterConfigError) as raised:
        SqlAdapter("tax-records", config, CATEGORIES)
    assert message in str(raised.value)
    assert "'tax-records' (sql adapter)" in str(raised.value)


def test_columns_that_are_not_fields_make_the_source_unavailable(source, make_adapter):
    query = "SELECT street, tin FROM residence WHERE tin = :identifier"
    adapter = make_adapter({**source.config(), "queries": source.queries(address=query)})
    with pytest.raises(SourceUnavailable, match="not fields of the category: tin"):
        adapter.fetch("address", "555000111", 5.0)
    health = adapter.health(5.0)
    assert not health.ok and "tin" in health.detail


def test_health_prepares_every_query(adapter):
    assert adapter.health(5.0) == Health(True, "2 queries answer with known fields")


def test_a_runaway_query_costs_at_most_its_timeout(source, make_adapter):
    query = RUNAWAY
    if source.backend == "postgresql":
        query = "SELECT street FROM residence WHERE tin = :identifier AND pg_sleep(30) IS NULL"
    adapter = make_adapter({**source.config(), "queries": source.queries(address=query)})
    started = time.monotonic()
    with pytest.raises(SourceUnavailable, match=r"timed out after 0\.3 s"):
        adapter.fetch("address", "555000111", 0.3)
    assert time.monotonic() - started < 1.3
    assert adapter.fetch("income", "123456789", 5.0) != []


def test_the_runaway_query_is_stopped_not_just_abandoned(source, make_adapter):
    """With one connection, the next fetch only succeeds if the runaway query was stopped."""
    adapter = make_adapter(
        {**source.config(), "pool_size": 1, "queries": source.queries(address=RUNAWAY)}
    )
    with pytest.raises(SourceUnavailable):
        adapter.fetch("address", "555000111", 0.2)
    assert adapter.fetch("income", "123456789", 2.0) != []


def test_more_records_than_allowed_is_unavailable(source, make_adapter):
    adapter = make_adapter(source.config(max_records=1))
    with pytest.raises(SourceUnavailable, match="more than 1 records"):
        adapter.fetch("income", "123456789", 5.0)


def test_errors_never_carry_the_identifier(source, make_adapter):
    query = "SELECT street FROM nowhere WHERE tin = :identifier"
    adapter = make_adapter({**source.config(), "queries": source.queries(address=query)})
    with pytest.raises(SourceUnavailable, match="database error") as raised:
        adapter.fetch("address", "123456789", 5.0)
    assert "123456789" not in str(raised.value)


def test_database_values_get_their_json_form():
    when = datetime(2024, 5, 1, 12, 30, tzinfo=UTC)
    assert _json_value("c", when) == "2024-05-01T12:30:00+00:00"
    assert _json_value("c", date(2024, 5, 1)) == "2024-05-01"
    assert _json_value("c", clock_time(8, 15)) == "08:15:00"
    assert _json_value("c", Decimal("52000.50")) == 52000.5
    assert _json_value("c", Decimal("48000.00")) == 48000
    assert _json_value("c", Decimal("NaN")) == "NaN"
    assert _json_value("c", float("inf")) == "inf"
    assert _json_value("c", UUID(int=1)) == "00000000-0000-0000-0000-000000000001"
    assert _json_value("c", {"a": [Decimal(1), None]}) == {"a": [1, None]}
    with pytest.raises(SourceUnavailable, match="column 'c' holds a bytes value"):
        _json_value("c", b"\x00")


def test_sqlite_source_in_wal_mode_is_readable(tmp_path, make_adapter):
    db = _sqlite_source(tmp_path / "wal.db")
    with sqlite3.connect(tmp_path / "wal.db") as conn:
        assert conn.execute("PRAGMA journal_mode=WAL").fetchone() == ("wal",)
    conn.close()
    adapter = make_adapter(db.config())
    assert adapter.fetch("income", "987654321", 5.0)[0]["employer"] == "Globex"
