"""``casebroker audit verify``: a clean log passes; each kind of tampering is caught and named."""

from __future__ import annotations

import json

import pytest
from audit_helpers import append_events, execute, integrate, run_cli, sessions

import audit
from audit import verify
from audit.models import AuditEvent


@pytest.fixture
def logged(make_app):
    """A log of 40 events, integrated in batches of 8 (5 checkpoints)."""
    app = make_app(AUDIT_BATCH_SIZE=8)
    append_events(app, 40)
    assert integrate(app) == 40
    return app


def failures(app, *args: str) -> str:
    result = run_cli(app, "verify", *args)
    assert result.exit_code == 1, result.output
    return result.output


def first_failure(output: str) -> str:
    return next(line for line in output.splitlines() if line.startswith("  "))


def test_an_untouched_log_verifies(logged):
    result = run_cli(logged, "verify")
    assert result.exit_code == 0, result.output
    assert "ok: 40 events (0 pruned), tree size 40, 5 checkpoints checked" in result.output


def test_events_not_yet_integrated_are_checked_too(logged):
    append_events(logged, 3)
    result = run_cli(logged, "verify")
    assert result.exit_code == 0, result.output
    assert "43 events" in result.output


def test_an_edited_record_is_named(logged):
    with sessions(logged) as session:
        record = session.get(AuditEvent, 17).record
    execute(
        logged, "UPDATE audit_event SET record = :r WHERE seq = 17", r=record.replace("17", "71")
    )
    output = failures(logged)
    assert "event 17: altered: the record does not match its leaf hash" in output


def test_an_edited_record_with_a_recomputed_leaf_hash_is_named(logged):
    forged = audit.canonical_json(audit.make_record("test.event", "x", audit.event_time(), n=999))
    execute(
        logged,
        "UPDATE audit_event SET record = :r, leaf_hash = :h WHERE seq = 9",
        r=forged.decode(),
        h=audit.leaf_hash(forged),
    )
    output = failures(logged)
    assert "event 9: altered, replaced or moved" in first_failure(output)


def test_a_deleted_event_is_named(logged):
    execute(logged, "DELETE FROM audit_event WHERE seq = 22")
    output = failures(logged)
    assert "event 22: missing" in first_failure(output)


def test_deleted_last_events_are_named(logged):
    execute(logged, "DELETE FROM audit_event WHERE seq >= 38")
    output = failures(logged)
    assert "event 38: missing: the log ends here but the tree has 40" in first_failure(output)


def test_a_tampered_tree_head_is_caught(logged):
    execute(logged, "UPDATE audit_tree_state SET root_hash = :h", h=b"h" * 32)
    assert "the tree head's root differs" in failures(logged)


def test_reordered_events_are_named(logged):
    execute(logged, "UPDATE audit_event SET seq = 1000 WHERE seq = 5")
    execute(logged, "UPDATE audit_event SET seq = 5 WHERE seq = 30")
    execute(logged, "UPDATE audit_event SET seq = 30 WHERE seq = 1000")
    output = failures(logged)
    assert "event 5: altered, replaced or moved" in first_failure(output)


def test_a_non_canonical_record_is_named(logged):
    with sessions(logged) as session:
        record = json.loads(session.get(AuditEvent, 3).record)
    spaced = json.dumps(record, indent=1)
    execute(
        logged,
        "UPDATE audit_event SET record = :r, leaf_hash = :h WHERE seq = 3",
        r=spaced,
        h=audit.leaf_hash(spaced.encode()),
    )
    assert "event 3: altered: the record is not canonical JSON" in failures(logged)


def test_a_forged_checkpoint_is_caught(logged):
    with sessions(logged) as session:
        note = session.get(verify.AuditCheckpoint, 16).note
    execute(
        logged,
        "UPDATE audit_checkpoint SET note = :n WHERE tree_size = 16",
        n=note.replace("\n16\n", "\n15\n"),
    )
    assert "checkpoint 16 is forged or damaged" in failures(logged)


def test_a_checkpoint_whose_root_was_swapped_is_caught(logged):
    execute(
        logged,
        "UPDATE audit_checkpoint SET root_hash = (SELECT root_hash FROM audit_checkpoint "
        "WHERE tree_size = 8) WHERE tree_size = 16",
    )
    assert "checkpoint 16: its columns differ from its signed note" in failures(logged)


def test_an_altered_tree_node_is_caught(logged):
    execute(logged, "UPDATE audit_tree_node SET hash = :h WHERE level = 2 AND idx = 3", h=b"z" * 32)
    assert "tree node (2, 3) was altered" in failures(logged)


def test_a_checkpoint_kept_by_an_auditor_catches_a_rewritten_log(logged, tmp_path):
    held = tmp_path / "checkpoint.txt"
    held.write_text(run_cli(logged, "checkpoint").output)
    key = logged.test_client().get("/audit/v1/checkpoint-key").get_data(as_text=True).strip()
    assert run_cli(logged, "verify", "--from-checkpoint", str(held), "--key", key).exit_code == 0
    # Rewrite history wholesale: new events, a rebuilt tree and fresh checkpoints.
    for table in ("audit_checkpoint", "audit_tree_node", "audit_event"):
        execute(logged, f"DELETE FROM {table}")  # noqa: S608 - fixed table names
    execute(logged, "UPDATE audit_tree_state SET size = 0")
    execute(logged, "UPDATE audit_sequence SET next_seq = 0")
    append_events(logged, 40, extra="rewritten")
    integrate(logged)
    assert run_cli(logged, "verify").exit_code == 0
    output = failures(logged, "--from-checkpoint", str(held))
    assert "no longer matches the held checkpoint of size 40" in output


def test_a_held_checkpoint_beyond_the_log_means_truncation(logged, tmp_path):
    held = tmp_path / "checkpoint.txt"
    held.write_text(run_cli(logged, "checkpoint").output)
    execute(logged, "DELETE FROM audit_checkpoint WHERE tree_size > 16")
    execute(logged, "DELETE FROM audit_event WHERE seq >= 16")
    execute(logged, "UPDATE audit_tree_state SET size = 16")
    output = failures(logged, "--from-checkpoint", str(held))
    assert "event 16: missing: the held checkpoint of size 40 covers more events" in output


@pytest.mark.parametrize(
    "content",
    ["", "not a checkpoint\n", "log\n1\nAAAA\n\n\u2014 someone AAAAAAAA\n"],
    ids=["empty", "unsigned", "unknown-signer"],
)
def test_an_unverifiable_held_checkpoint_is_refused(logged, tmp_path, content):
    held = tmp_path / "checkpoint.txt"
    held.write_text(content)
    assert "does not verify" in failures(logged, "--from-checkpoint", str(held))


def test_a_held_checkpoint_with_a_forged_signature_is_refused(logged, tmp_path):
    text = run_cli(logged, "checkpoint").output
    held = tmp_path / "checkpoint.txt"
    held.write_text(text.replace("\n40\n", "\n41\n"))
    assert "does not verify" in failures(logged, "--from-checkpoint", str(held))


def test_a_body_removed_while_retention_keeps_it_is_caught(logged):
    execute(logged, "UPDATE audit_event SET record = NULL WHERE seq = 12")
    assert "event 12: its body was removed though retention still keeps it" in failures(logged)


def test_verify_streams_in_chunks(logged, monkeypatch):
    monkeypatch.setattr(verify, "CHUNK", 7)
    result = run_cli(logged, "verify")
    assert result.exit_code == 0, result.output
    execute(logged, "UPDATE audit_event SET record = 'x' WHERE seq = 29")
    assert "event 29" in failures(logged)


def test_each_run_is_recorded_for_the_console(logged):
    with sessions(logged) as session:
        assert verify.last_run(session) is None
    assert run_cli(logged, "verify").exit_code == 0
    with sessions(logged) as session:
        passed = verify.last_run(session)
        assert (passed.ok, passed.events, passed.tree_size, passed.checkpoints) == (True, 40, 40, 5)
        assert passed.first_failure is None and passed.finished_at >= passed.started_at
    execute(logged, "UPDATE audit_event SET record = 'x' WHERE seq = 12")
    failures(logged)
    with sessions(logged) as session:
        failed = verify.last_run(session)
        assert failed.id > passed.id and not failed.ok
        assert failed.first_failure.startswith("event 12:")
