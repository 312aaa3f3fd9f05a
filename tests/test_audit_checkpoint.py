"""Signed notes and checkpoints: the reference example, forgeries, and the published endpoints."""

from __future__ import annotations

import base64
import json

import pytest
from audit_helpers import append_events, integrate, log_verifier, origin, run_cli, sessions
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from sqlalchemy import select

from audit import note
from audit.models import AuditEvent, AuditLogKey
from identity.keys import SigningKeyUnavailable, unseal

# The example of the signed-note reference implementation (golang.org/x/mod/sumdb/note).
SKEY = "PRIVATE+KEY+PeterNeumann+c74f20a3+AYEKFALVFGyNhPJEMzD1QIDr+Y7hfZx09iUvxdXHKDFz"
VKEY = "PeterNeumann+c74f20a3+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW"
TEXT = (
    "If you think cryptography is the answer to your problem,\n"
    "then you don't know what your problem is.\n"
)
SIGNED = (
    TEXT + "\n\u2014 PeterNeumann x08go/ZJkuBS9UG/SffcvIAQxVBtiFupLLr8pAcElZInNIuGUgYN1FFYC2"
    "pZSNXgKvqfqdngotpRZb6KE6RyyBwJnAM=\n"
)


def reference_key() -> Ed25519PrivateKey:
    raw = base64.b64decode(SKEY.split("+", 4)[-1])
    assert raw[0] == note.ED25519
    return Ed25519PrivateKey.from_private_bytes(raw[1:])


def test_signing_reproduces_the_reference_example():
    key = reference_key()
    assert note.verifier_for("PeterNeumann", key).vkey() == VKEY
    assert note.sign(TEXT, "PeterNeumann", key) == SIGNED


def test_opening_the_reference_example_with_its_verifier_key():
    opened = note.open_note(SIGNED, [note.parse_verifier_key(VKEY)])
    assert opened.text == TEXT and opened.verifier.name == "PeterNeumann"


OTHER = note.verifier_for("PeterNeumann", Ed25519PrivateKey.generate())


@pytest.mark.parametrize(
    "forged",
    [
        SIGNED.replace("cryptography", "cryptographY"),
        SIGNED.replace("x08go", "x08gp"),
        SIGNED.replace("\u2014", "-"),
        SIGNED.replace("\n\n", "\n"),
        SIGNED[:-1],
        SIGNED.replace("JnAM=", "JnAM"),
        SIGNED.replace("PeterNeumann x08go", "PeterNeumann x08g"),
        TEXT + "\n",
        "\x01" + SIGNED,
        SIGNED.encode("utf-16"),
        b"\xff" + SIGNED.encode(),
        "x" * (note.MAX_NOTE_SIZE + 1),
    ],
    ids=[
        "text-altered",
        "signature-altered",
        "no-em-dash",
        "no-blank-line",
        "no-final-newline",
        "bad-base64",
        "short-signature",
        "no-signatures",
        "control-character",
        "utf16",
        "not-utf8",
        "too-large",
    ],
)
def test_forged_or_malformed_notes_are_refused(forged):
    with pytest.raises(note.NoteError):
        note.open_note(forged, [note.parse_verifier_key(VKEY)])


def test_a_note_signed_only_by_an_unknown_key_is_refused():
    with pytest.raises(note.NoteError, match="not signed by a known key"):
        note.open_note(SIGNED, [OTHER])


@pytest.mark.parametrize(
    "vkey",
    [
        "PeterNeumann+c74f20a4+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW",
        "PeterNeumann+c74f20a3+AhpcwQcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW",
        "Peter Neumann+c74f20a3+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW",
        "PeterNeumann+c74f20a3",
        "PeterNeumann+zz+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW",
    ],
    ids=["wrong-hash", "wrong-type", "space-in-name", "no-key", "bad-hex"],
)
def test_malformed_verifier_keys_are_refused(vkey):
    with pytest.raises(note.NoteError):
        note.parse_verifier_key(vkey)


ROOT = base64.b64encode(b"r" * 32).decode()


@pytest.mark.parametrize(
    "body",
    [
        f"log\n012\n{ROOT}\n",
        f"log\n-1\n{ROOT}\n",
        f"log\n1e3\n{ROOT}\n",
        f"log\n{1 << 63}\n{ROOT}\n",
        "log\n1\nnot base64!\n",
        f"log\n1\n{base64.b64encode(b'short').decode()}\n",
        f"\n1\n{ROOT}\n",
        f" log\n1\n{ROOT}\n",
        "log\n1\n",
        f"log\n1\n{ROOT}\n\nextension\n",
    ],
    ids=[
        "leading-zero",
        "negative",
        "exponent",
        "too-big",
        "bad-root",
        "short-root",
        "no-origin",
        "padded-origin",
        "no-root",
        "empty-extension",
    ],
)
def test_malformed_checkpoint_bodies_are_refused(body):
    with pytest.raises(note.NoteError):
        note.parse_checkpoint(body)


def test_checkpoint_body_round_trips_with_extensions():
    body = note.Checkpoint("example.org/log", 42, b"r" * 32, ("ext one",))
    assert note.parse_checkpoint(body.text()) == body
    assert body.text() == f"example.org/log\n42\n{ROOT}\next one\n"


def test_checkpoint_endpoint_serves_a_signed_checkpoint_of_the_integrated_tree(app, client):
    append_events(app, 5)
    assert integrate(app) == 5
    response = client.get("/audit/v1/checkpoint")
    assert response.status_code == 200
    assert response.mimetype == "text/plain"
    key = log_verifier(app)
    assert key.name == origin(app) == "broker.test/audit"
    checkpoint = note.open_checkpoint(response.get_data(as_text=True), [key], origin(app))
    assert checkpoint.size == 5


def test_a_new_log_signs_its_empty_tree_on_first_request(client, app):
    response = client.get("/audit/v1/checkpoint")
    assert response.status_code == 200
    checkpoint = note.open_checkpoint(
        response.get_data(as_text=True), [log_verifier(app)], origin(app)
    )
    assert checkpoint.size == 0
    assert checkpoint.root_hash.hex().startswith("e3b0c442")


def test_every_node_publishes_the_same_key_and_its_private_half_is_sealed(make_app):
    first, second = make_app(), make_app()
    assert log_verifier(first) == log_verifier(second)
    with sessions(first) as session:
        rows = session.scalars(select(AuditLogKey)).all()
    assert len(rows) == 1
    row = rows[0]
    seed = unseal(first.config["KEY_ENCRYPTION_KEY_BYTES"], row.key_id, row.private_key_encrypted)
    assert seed not in row.private_key_encrypted
    with pytest.raises(SigningKeyUnavailable):
        unseal(b"x" * 32, row.key_id, row.private_key_encrypted)


def test_a_changed_origin_gets_a_new_key_and_old_checkpoints_stay_checkable(make_app):
    first = make_app()
    append_events(first, 2)
    integrate(first)
    second = make_app(AUDIT_ORIGIN="audit.example.gov/log")
    append_events(second, 1)
    integrate(second)
    assert log_verifier(second).name == "audit.example.gov/log"
    with sessions(second) as session:
        statuses = sorted(r.status for r in session.scalars(select(AuditLogKey)))
    assert statuses == ["active", "retired"]
    result = run_cli(second, "verify")
    assert result.exit_code == 0, result.output


def test_rotating_the_key_signs_on_with_the_new_one_and_the_log_still_verifies(app, client):
    append_events(app, 2)
    integrate(app)
    before = log_verifier(app)
    result = run_cli(app, "rotate-key")
    assert result.exit_code == 0, result.output
    after = log_verifier(app)
    assert after.key_id != before.key_id and after.name == before.name == origin(app)
    assert f"retired:  {before.vkey()}" in result.output
    assert f"active:   {after.vkey()}" in result.output

    append_events(app, 1)
    assert integrate(app) == 4  # 2 events, the rotation's own event, 1 more
    latest = client.get("/audit/v1/checkpoint").get_data(as_text=True)
    assert note.open_checkpoint(latest, [after], origin(app)).size == 4
    with pytest.raises(note.NoteError):
        note.open_checkpoint(latest, [before], origin(app))
    with sessions(app) as session:
        statuses = sorted(r.status for r in session.scalars(select(AuditLogKey)))
        rotated = session.scalars(
            select(AuditEvent.record).where(AuditEvent.kind == "audit.key_rotated")
        ).all()
    assert statuses == ["active", "retired"]
    record = json.loads(rotated[0])
    assert (record["retired"], record["active"], len(rotated)) == (before.key_id, after.key_id, 1)
    verified = run_cli(app, "verify")
    assert verified.exit_code == 0, verified.output
