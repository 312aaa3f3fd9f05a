"""Hot-path statements run on the driver's cursor answer exactly as SQLAlchemy's execution would,
on either database: the same rows and types, the same bound values, the same exceptions."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime

import pytest
from sqlalchemy import bindparam, select
from sqlalchemy.exc import IntegrityError, SQLAlchemyError

import audit
from audit.models import AuditEvent
from broker.models import DataCategory
from broker.prepared import Prepared

_event = AuditEvent.__table__.c
_EVENTS = Prepared(
    select(_event.seq, _event.created_at, _event.leaf_hash, _event.person_id, _event.kind)
    .where(_event.seq.in_(bindparam("seqs", expanding=True)), _event.kind != "never")
    .order_by(_event.seq)
)
_CATEGORY = Prepared(
    select(DataCategory.id, DataCategory.fields, DataCategory.labels).where(
        DataCategory.id == bindparam("id")
    )
)


def _append(session, count: int) -> list[uuid.UUID]:
    persons = [uuid.uuid4() for _ in range(count)]
    time = audit.event_time(datetime(2026, 11, 23, 12, 30, 0, 123456, tzinfo=UTC))
    records = [audit.make_record("test.event", "c-1", time, person=str(p)) for p in persons]
    audit.append(session, records)
    session.commit()
    return persons


@pytest.mark.parametrize("wanted", [[0], [2, 0], [0, 1, 2], [1, 7]])
def test_rows_and_types_match_sqlalchemy(db_session, wanted: list[int]) -> None:
    persons = _append(db_session, 3)
    expected = db_session.execute(_EVENTS.statement, {"seqs": wanted}).all()
    got = _EVENTS.rows(db_session, {"seqs": wanted})
    assert [tuple(r) for r in got] == [tuple(r) for r in expected]
    assert [r.person_id for r in got] == [persons[i] for i in sorted(wanted) if i < 3]
    for row in got:
        assert isinstance(row.person_id, uuid.UUID)
        assert isinstance(row.created_at, datetime)
        assert isinstance(row.leaf_hash, bytes) and len(row.leaf_hash) == 32


def test_json_columns_come_back_decoded(db_session) -> None:
    labels = {"fr": {"name": "Revenu", "description": "é ü"}}
    db_session.add(DataCategory(id="income-x", name="Income", sensitivity="low", fields=["a", "b"]))
    db_session.get(DataCategory, "income-x").labels = labels
    db_session.commit()
    (row,) = _CATEGORY.rows(db_session, {"id": "income-x"})
    assert row.fields == ["a", "b"] and row.labels == labels


def test_values_are_bound_never_formatted(db_session) -> None:
    _append(db_session, 1)
    hostile = "x' OR '1'='1"
    assert _CATEGORY.rows(db_session, {"id": hostile}) == []
    assert _CATEGORY.rows(db_session, {"id": "x; DROP TABLE audit_event; --"}) == []
    assert db_session.execute(select(_event.seq)).all() == [(0,)]


def test_driver_errors_are_sqlalchemy_errors_and_roll_back(db_session) -> None:
    _append(db_session, 1)
    row = db_session.execute(select(AuditEvent.__table__)).mappings().one()
    with pytest.raises(IntegrityError):
        Prepared(AuditEvent.__table__.insert()).run_many(db_session, [dict(row)])
    db_session.rollback()
    assert db_session.execute(select(_event.seq)).all() == [(0,)]
    with pytest.raises(SQLAlchemyError):
        _EVENTS.rows(db_session, {"seqs": ["not a number", object()]})
    db_session.rollback()


def test_runs_inside_the_sessions_transaction(db_session) -> None:
    """Nothing written through a prepared statement outlives a rollback of its session."""
    _append(db_session, 1)
    audit.append(db_session, [audit.make_record("test.event", None, audit.event_time())])
    assert len(_EVENTS.rows(db_session, {"seqs": [0, 1]})) == 2
    db_session.rollback()
    assert [r.seq for r in _EVENTS.rows(db_session, {"seqs": [0, 1]})] == [0]


def test_a_session_flushes_pending_objects_first(db_session) -> None:
    """As ``Session.execute`` would: a read sees what the session added and did not flush."""
    db_session.add(DataCategory(id="pending-x", name="Pending", sensitivity="low", fields=["a"]))
    assert [row.id for row in _CATEGORY.rows(db_session, {"id": "pending-x"})] == ["pending-x"]
    db_session.rollback()
    assert _CATEGORY.rows(db_session, {"id": "pending-x"}) == []
