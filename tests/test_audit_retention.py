"""Retention: old event bodies go, leaf hashes stay, proofs and verification still hold."""

from __future__ import annotations

import base64
import json
from datetime import UTC, datetime, timedelta

import pytest
from audit_helpers import (
    append_events,
    bearer,
    integrate,
    log_verifier,
    make_officer,
    officer_token,
    origin,
    run_cli,
    sessions,
)
from sqlalchemy import select

import audit
from audit import merkle, note, retention
from audit.models import AuditEvent
from broker.config import ConfigError

OLD = datetime.now(UTC) - timedelta(days=400)


def test_prune_refuses_without_a_retention_period(app):
    result = run_cli(app, "prune")
    assert result.exit_code == 1
    assert "kept" in result.output


def test_prune_removes_old_integrated_bodies_and_keeps_the_log_verifiable(make_app):
    app = make_app(AUDIT_RETENTION_DAYS=365)
    append_events(app, 6, when=OLD)
    append_events(app, 4)
    integrate(app)
    append_events(app, 2, when=OLD)  # old but not integrated yet: kept until it is
    dry = run_cli(app, "prune", "--dry-run")
    assert dry.exit_code == 0 and "would prune 6 event bodies" in dry.output
    result = run_cli(app, "prune")
    assert result.exit_code == 0, result.output
    assert "pruned 6 event bodies" in result.output
    with sessions(app) as session:
        rows = session.scalars(select(AuditEvent).order_by(AuditEvent.seq)).all()
    assert [r.record is None for r in rows[:12]] == [True] * 6 + [False] * 6
    assert len(rows[0].leaf_hash) == 32
    assert json.loads(rows[-1].record)["kind"] == "audit.prune"
    integrate(app)
    verified = run_cli(app, "verify")
    assert verified.exit_code == 0, verified.output
    assert "(6 pruned)" in verified.output
    assert "pruned 2 event bodies" in run_cli(app, "prune").output  # integrated by now
    assert "pruned 0 event bodies" in run_cli(app, "prune").output


def test_proofs_of_pruned_events_still_verify(make_app):
    app = make_app(AUDIT_RETENTION_DAYS=30)
    appended = append_events(app, 5, when=OLD)
    integrate(app)
    with sessions(app) as session:
        retention.prune(session, 30)
    integrate(app)
    text = app.test_client().get("/audit/v1/checkpoint").get_data(as_text=True)
    head = note.open_checkpoint(text, [log_verifier(app)], origin(app))
    for event in appended:
        answer = app.test_client().get(f"/audit/v1/proofs/inclusion?index={event.index}").json
        proof = [base64.b64decode(h) for h in answer["proof"]]
        merkle.verify_inclusion(event.index, head.size, event.leaf_hash, proof, head.root_hash)


def test_the_auditor_sees_pruned_events_without_their_bodies(make_app):
    app = make_app(AUDIT_RETENTION_DAYS=30)
    append_events(app, 2, when=OLD)
    integrate(app)
    with sessions(app) as session:
        retention.prune(session, 30)
    token = officer_token(app, make_officer(app))
    body = app.test_client().get("/audit/v1/events?kind=test.event", headers=bearer(token)).json
    assert [e["pruned"] for e in body["events"]] == [True, True]
    assert all(e["record"] is None and e["leaf_hash"] for e in body["events"])


def test_a_body_missing_inside_the_retention_period_still_fails_verify(make_app):
    app = make_app(AUDIT_RETENTION_DAYS=30)
    append_events(app, 3)
    integrate(app)
    with sessions(app) as session:
        session.get(AuditEvent, 1).record = None
        session.commit()
    result = run_cli(app, "verify")
    assert result.exit_code == 1
    assert "event 1: its body was removed" in result.output


def test_cutoff_follows_the_setting():
    now = datetime(2026, 6, 1, tzinfo=UTC)
    assert retention.cutoff(0, now) is None
    assert retention.cutoff(10, now) == datetime(2026, 5, 22, tzinfo=UTC)


def test_audit_settings_are_checked_at_start_up(make_app):
    for bad in ({"AUDIT_BATCH_SIZE": 0}, {"AUDIT_RETENTION_DAYS": -1}):
        with pytest.raises(ConfigError):
            make_app(**bad)
    assert audit.event_time(OLD).endswith("+00:00")
