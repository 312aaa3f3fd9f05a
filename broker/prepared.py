"""Statements of the request hot paths, compiled by SQLAlchemy once and run on the driver's cursor.

Written by hand because no library does it: SQLAlchemy's execution path (cache key, execution
context, result metadata, events) costs 0.1-0.2 ms of Python per statement, and a lookup runs
nine of them: more than the databases spend answering them (``bench/lookup.py --profile``).
Everything that knows a dialect stays SQLAlchemy's: the SQL text, the expansion of ``IN`` lists
and each type's bind and result conversions (UUIDs, JSON and datetimes on SQLite), so nothing
here differs per database. Statements run on the connection of the caller's session, inside its
transaction, and driver errors come out as SQLAlchemy's ``DBAPIError``, as they would from
``Session.execute``. Connection events (``before_cursor_execute``) do not fire for them.
"""

from __future__ import annotations

from collections import namedtuple
from collections.abc import Callable, Mapping, Sequence
from typing import Any
from weakref import WeakKeyDictionary

from sqlalchemy.engine import Connection, Dialect
from sqlalchemy.exc import DBAPIError
from sqlalchemy.orm import Session
from sqlalchemy.sql.expression import Executable

Processor = Callable[[Any], Any]
#: A row of a prepared statement's result: a named tuple of its columns, by their keys.
Fetched = Any


class _Shape:
    """The statement for one dialect and one length of each expanding parameter."""

    __slots__ = (
        "_columns",
        "binds",
        "defaults",
        "expansion",
        "names",
        "positional",
        "results",
        "row",
        "sql",
    )

    def __init__(self, statement: Any, dialect: Dialect, lengths: Mapping[str, int]) -> None:
        compiled = statement.compile(dialect=dialect)
        if compiled.escaped_bind_names:
            raise ValueError("parameter names must need no escaping")
        placeholders: dict[str, Any] = {
            name: [None] * lengths[name] if name in lengths else None
            for name, bind in compiled.binds.items()
            if bind.required
        }
        state = compiled.construct_expanded_state(placeholders)
        self.sql: str = state.statement
        self.positional = state.positiontup is not None
        self.names: list[str] = list(state.positiontup or state.parameters)
        self.expansion: dict[str, list[str]] = {
            name: list(state.parameter_expansion.get(name, ())) for name in lengths
        }
        self.defaults: dict[str, Any] = {
            k: v for k, v in state.parameters.items() if k not in placeholders
        }
        self.binds: list[tuple[str, Processor]] = []
        for name, bind in compiled.binds.items():
            proc = bind.type.dialect_impl(dialect).bind_processor(dialect)
            if proc is not None:
                targets = state.parameter_expansion.get(name, [name])
                self.binds.extend((target, proc) for target in targets)
        columns = list(getattr(statement, "exported_columns", ()))
        self.row = namedtuple("Row", [c.key for c in columns], rename=True) if columns else None
        self.results: list[Processor | None] | None = None
        self._columns = columns

    def arguments(self, params: Mapping[str, Any]) -> Sequence[Any] | dict[str, Any]:
        values = dict(self.defaults)
        for name, value in params.items():
            expanded = self.expansion.get(name)
            if expanded is None:
                values[name] = value
            else:
                values.update(zip(expanded, value, strict=True))
        for name, proc in self.binds:
            values[name] = proc(values[name])
        return [values[n] for n in self.names] if self.positional else values

    def result_processors(self, dialect: Dialect, description: Sequence[Any]) -> list[Any]:
        return [
            column.type.dialect_impl(dialect).result_processor(dialect, described[1])
            for column, described in zip(self._columns, description, strict=True)
        ]


class Prepared:
    """A Core statement to run many times: ``rows`` for a query, ``run_many`` for a batch write."""

    def __init__(self, statement: Executable) -> None:
        self.statement = statement
        # Per dialect instance (an engine's), not per name: the SQL depends on the driver's
        # paramstyle and the server's version. Threads racing to fill these build equal values.
        self._by_dialect: WeakKeyDictionary[Dialect, _Shapes] = WeakKeyDictionary()

    def _shape(self, dialect: Dialect, params: Mapping[str, Any]) -> _Shape:
        shapes = self._by_dialect.get(dialect)
        if shapes is None:
            shapes = self._by_dialect.setdefault(dialect, _Shapes(self.statement, dialect))
        lengths = tuple(len(params[name]) for name in shapes.expanding)
        shape = shapes.by_lengths.get(lengths)
        if shape is None:
            named = dict(zip(shapes.expanding, lengths, strict=True))
            shape = shapes.by_lengths.setdefault(lengths, _Shape(self.statement, dialect, named))
        return shape

    def rows(self, session: Session | Connection, params: Mapping[str, Any]) -> list[Fetched]:
        """The result rows, as named tuples of the statement's columns (none for a write).

        Like ``Session.execute``, a session with autoflush on flushes pending objects first."""
        connection = _connection(session)
        dialect = connection.dialect
        shape = self._shape(dialect, params)
        arguments = shape.arguments(params)
        cursor = _cursor(connection)
        try:
            cursor.execute(shape.sql, arguments)
            fetched = cursor.fetchall() if cursor.description and shape.row else []
            if fetched and shape.results is None:
                shape.results = shape.result_processors(dialect, cursor.description)
        except dialect.loaded_dbapi.Error as exc:
            raise _wrapped(connection, shape.sql, arguments, exc) from exc
        finally:
            cursor.close()
        if not fetched:
            return []
        make, processors = shape.row, shape.results
        assert make is not None and processors is not None
        if not any(processors):
            return [make._make(row) for row in fetched]
        return [
            make._make(
                value if proc is None else proc(value)
                for proc, value in zip(processors, row, strict=True)
            )
            for row in fetched
        ]

    def run_many(self, session: Session | Connection, batch: Sequence[Mapping[str, Any]]) -> None:
        """Runs the statement once per parameter set: an insert of several rows."""
        connection = _connection(session)
        dialect = connection.dialect
        shape = self._shape(dialect, batch[0])
        arguments = [shape.arguments(params) for params in batch]
        cursor = _cursor(connection)
        try:
            cursor.executemany(shape.sql, arguments)
        except dialect.loaded_dbapi.Error as exc:
            raise _wrapped(connection, shape.sql, arguments, exc) from exc
        finally:
            cursor.close()


class _Shapes:
    """A statement's shapes for one dialect, by the lengths of its expanding parameters."""

    __slots__ = ("by_lengths", "expanding")

    def __init__(self, statement: Any, dialect: Dialect) -> None:
        compiled = statement.compile(dialect=dialect)
        self.expanding = tuple(
            name for name, bind in compiled.binds.items() if bind.expanding and bind.required
        )
        self.by_lengths: dict[tuple[int, ...], _Shape] = {}


def _connection(session: Session | Connection) -> Connection:
    if isinstance(session, Connection):
        return session
    if session.autoflush:
        session.flush()
    return session.connection()


def _cursor(connection: Connection) -> Any:
    return connection.connection.dbapi_connection.cursor()  # type: ignore[union-attr]


def _wrapped(connection: Connection, sql: str, arguments: Any, exc: Exception) -> DBAPIError:
    """The driver's error as SQLAlchemy raises it; a lost connection leaves the pool."""
    dialect = connection.dialect
    dbapi_connection = connection.connection.dbapi_connection
    lost = dialect.is_disconnect(exc, dbapi_connection, None)
    if lost:
        connection.invalidate(exc)
    return DBAPIError.instance(
        sql, arguments, exc, dialect.loaded_dbapi.Error, connection_invalidated=lost
    )


__all__ = ["Fetched", "Prepared"]
