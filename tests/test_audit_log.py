"""The audit log's append path: canonical records, leaf hashes, a gap-free sequence."""

from __future__ import annotations

import hashlib
import threading

import pytest
from sqlalchemy import func, select

import audit
from audit.models import AuditEvent


def test_canonical_json_sorts_keys_and_has_no_whitespace():
    assert (
        audit.canonical_json({"b": 1, "a": [True, None, "é"]})
        == '{"a":[true,null,"é"],"b":1}'.encode()
    )


@pytest.mark.parametrize("bad", [{"x": 1.5}, {"x": {1: "a"}}, {"x": object()}, {"é": 1}])
def test_records_without_one_canonical_form_are_refused(bad):
    with pytest.raises(audit.NonCanonicalRecord):
        audit.canonical_json(bad)


def test_parse_canonical_refuses_reordered_or_spaced_json():
    assert audit.parse_canonical(b'{"a":1,"b":2}') == {"a": 1, "b": 2}
    for raw in (b'{"b":2,"a":1}', b'{"a": 1}', b"[1]", b"not json"):
        with pytest.raises(audit.NonCanonicalRecord):
            audit.parse_canonical(raw)


def test_leaf_hash_is_rfc9162_leaf_hash():
    assert audit.leaf_hash(b"") == bytes.fromhex(
        "6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d"
    )
    assert audit.leaf_hash(b"x") == hashlib.sha256(b"\x00x").digest()


def record(n: int) -> dict:
    return audit.make_record("test.event", f"c{n}", audit.event_time(), n=n)


def test_append_assigns_consecutive_indexes_and_stores_the_leaf_hash(db_session):
    first = audit.append(db_session, [record(0), record(1)])
    second = audit.append(db_session, [record(2)])
    db_session.commit()
    assert [a.index for a in first + second] == [0, 1, 2]
    rows = db_session.scalars(select(AuditEvent).order_by(AuditEvent.seq)).all()
    for row, appended in zip(rows, first + second, strict=True):
        assert row.leaf_hash == appended.leaf_hash == audit.leaf_hash(row.record.encode())
        assert audit.parse_canonical(row.record)["kind"] == "test.event"


def test_a_rolled_back_append_leaves_no_gap(db_session):
    audit.append(db_session, [record(0)])
    db_session.commit()
    audit.append(db_session, [record(1), record(2)])
    db_session.rollback()
    again = audit.append(db_session, [record(3)])
    db_session.commit()
    assert again[0].index == 1


def test_indexed_columns_copy_the_record(db_session):
    rec = audit.make_record(
        "lookup.decision",
        "corr",
        audit.event_time(),
        requester="tax",
        provider="health",
        category="income",
        purpose="p",
        decision="deny",
        client="tax-cms",
        person="0b0b0b0b-0000-4000-8000-000000000001",
    )
    audit.append(db_session, [rec])
    db_session.commit()
    row = db_session.scalars(select(AuditEvent)).one()
    assert (row.requester_agency_id, row.provider_agency_id, row.decision) == (
        "tax",
        "health",
        "deny",
    )
    assert str(row.person_id) == rec["person"] and row.correlation_id == "corr"


def test_concurrent_appenders_get_a_gap_free_sequence(app):
    sessionmaker = app.extensions["casebroker.db"].sessionmaker
    errors: list[BaseException] = []

    def worker(n: int) -> None:
        try:
            for i in range(5):
                with sessionmaker() as session:
                    audit.append(session, [record(n * 100 + i), record(n * 100 + i + 50)])
                    session.commit()
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=worker, args=(n,)) for n in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    with sessionmaker() as session:
        seqs = session.scalars(select(AuditEvent.seq).order_by(AuditEvent.seq)).all()
        assert seqs == list(range(80))
        assert session.scalar(select(func.count()).select_from(AuditEvent)) == 80
