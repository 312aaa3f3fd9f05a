"""Engine, sessions and the declarative base shared by every package's models.

The app never creates tables itself: the schema comes from the Alembic migrations only.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import Any

from flask import Flask, current_app, g
from sqlalchemy import JSON, DateTime, MetaData, create_engine, event
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.engine import Connection, Engine, make_url
from sqlalchemy.orm import DeclarativeBase, Session, sessionmaker
from sqlalchemy.pool import NullPool

NAMING_CONVENTION = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}

#: JSON on SQLite, JSONB on PostgreSQL.
JSONType = JSON().with_variant(JSONB(), "postgresql")


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING_CONVENTION)
    type_annotation_map = {datetime: DateTime(timezone=True), dict[str, Any]: JSONType}


def utcnow() -> datetime:
    return datetime.now(UTC)


def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    """WAL lets readers run beside the single writer; foreign keys are off by default."""
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute("PRAGMA busy_timeout=10000")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.close()


def make_engine(url: str, pool_size: int = 5, autocommit: bool = False) -> Engine:
    """Create an engine with the per-backend settings the broker relies on; with
    ``autocommit``, every statement on its connections commits by itself."""
    parsed = make_url(url)
    options: dict[str, Any] = {"isolation_level": "AUTOCOMMIT"} if autocommit else {}
    if parsed.get_backend_name() == "sqlite":
        engine = create_engine(
            url,
            poolclass=NullPool if parsed.database in (None, "", ":memory:") else None,
            **options,
        )
        event.listen(engine, "connect", _sqlite_pragmas)
        return engine
    return create_engine(
        url, pool_size=pool_size, max_overflow=pool_size, pool_pre_ping=True, **options
    )


class Database:
    """The engines and session factory of one app instance."""

    def __init__(self, url: str, pool_size: int = 5) -> None:
        self.engine = make_engine(url, pool_size)
        self.sessionmaker = sessionmaker(self.engine, expire_on_commit=False)
        # Writes that must stand whatever becomes of the request get a pool of their own: a
        # request holding its session's connection must never wait for a second connection
        # from the same pool, which under load is how a pool deadlocks.
        self.autocommit_engine = make_engine(url, pool_size, autocommit=True)

    def dispose(self) -> None:
        """Close every pooled connection of both engines."""
        self.engine.dispose()
        self.autocommit_engine.dispose()

    @contextmanager
    def session(self) -> Iterator[Session]:
        """A session for work outside a request (CLI, background jobs); commits on success."""
        with self.sessionmaker() as session, session.begin():
            yield session


def init_app(app: Flask) -> None:
    app.extensions["casebroker.db"] = Database(
        app.config["DATABASE_URL"], int(app.config["DB_POOL_SIZE"])
    )
    app.teardown_appcontext(_close_session)


def get_db(app: Flask | None = None) -> Database:
    return (app or current_app).extensions["casebroker.db"]


def get_session() -> Session:
    """The request's session, opened on first use and closed at teardown."""
    if "db_session" not in g:
        g.db_session = get_db().sessionmaker()
    return g.db_session


def get_autocommit_connection() -> Connection:
    """The request's autocommitted connection, for writes that must stand whatever becomes of
    the request (burning single-use values): one pool checkout however many it makes, opened on
    first use and returned at teardown.

    The session's connection is checked out first, so every request takes its two connections
    in the same order and no two requests can each hold the one the other waits for."""
    if "db_autocommit" not in g:
        get_session().connection()
        g.db_autocommit = get_db().autocommit_engine.connect()
    return g.db_autocommit


def _close_session(_exc: BaseException | None) -> None:
    session = g.pop("db_session", None)
    if session is not None:
        session.close()
    connection = g.pop("db_autocommit", None)
    if connection is not None:
        connection.close()
