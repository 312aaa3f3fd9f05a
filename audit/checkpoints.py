"""Signed tree heads: the log's Ed25519 key (sealed at rest) and the checkpoints it signs.

The key is made on first use, like the token signing keys: its raw private bytes are sealed with
AES-256-GCM under the key-encryption key, the key id as associated data. Its name is the log's
origin (c2sp.org/tlog-checkpoint), so the published verifier key names the log it speaks for.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any
from urllib.parse import urlsplit

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import Encoding, NoEncryption, PrivateFormat
from sqlalchemy import select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from audit import note
from audit.models import AuditCheckpoint, AuditLogKey
from broker.db import utcnow
from identity.keys import seal, unseal


def log_origin(config: Mapping[str, Any]) -> str:
    """The configured origin, or the issuer's host and path followed by ``/audit``."""
    if config.get("AUDIT_ORIGIN"):
        return str(config["AUDIT_ORIGIN"])
    parts = urlsplit(str(config["ISSUER"]))
    return f"{parts.netloc}{parts.path.rstrip('/')}/audit"


def _create_key(session: Session, kek: bytes, name: str) -> AuditLogKey:
    private = Ed25519PrivateKey.generate()
    verifier = note.verifier_for(name, private)
    raw = private.private_bytes(Encoding.Raw, PrivateFormat.Raw, NoEncryption())
    row = AuditLogKey(
        key_id=verifier.key_id,
        name=name,
        public_key=verifier.public_key,
        private_key_encrypted=seal(kek, verifier.key_id, raw),
        status="active",
        created_at=utcnow(),
    )
    session.add(row)
    return row


def _active_row(session: Session) -> AuditLogKey | None:
    return session.scalar(select(AuditLogKey).where(AuditLogKey.status == "active"))


def ensure_key(session: Session, kek: bytes, name: str) -> AuditLogKey:
    """The active checkpoint key named ``name``; made (and committed) on first use.

    Two processes racing to make it are settled by the partial unique index on the active
    status: the loser reads the winner's key. A changed origin retires the old key.
    """
    row = _active_row(session)
    if row is not None and row.name == name:
        return row
    try:
        with session.begin_nested():
            if row is not None:
                session.execute(
                    update(AuditLogKey)
                    .where(AuditLogKey.key_id == row.key_id)
                    .values(status="retired")
                )
            row = _create_key(session, kek, name)
        session.commit()
    except IntegrityError:
        session.rollback()
        row = _active_row(session)
        if row is None:
            raise
    return row


def rotate_key(session: Session, kek: bytes, name: str) -> tuple[AuditLogKey | None, AuditLogKey]:
    """Retire the active checkpoint key and make a new one for the same origin; the caller
    commits. The old key stays in the table: the checkpoints it signed stay checkable.

    Two rotations at once are settled by the partial unique index on the active status: the
    loser's flush raises ``IntegrityError`` and it writes nothing.
    """
    old = _active_row(session)
    if old is not None:
        session.execute(
            update(AuditLogKey).where(AuditLogKey.key_id == old.key_id).values(status="retired")
        )
    new = _create_key(session, kek, name)
    session.flush()
    return old, new


def private_key(kek: bytes, row: AuditLogKey) -> Ed25519PrivateKey:
    return Ed25519PrivateKey.from_private_bytes(unseal(kek, row.key_id, row.private_key_encrypted))


def verifier(row: AuditLogKey) -> note.Verifier:
    return note.Verifier(row.name, note.key_hash(row.name, row.public_key), row.public_key)


def verifiers(session: Session) -> dict[str, note.Verifier]:
    """Every key that ever signed a checkpoint, by key id, retired ones included."""
    return {row.key_id: verifier(row) for row in session.scalars(select(AuditLogKey))}


def sign_checkpoint(
    session: Session, key_row: AuditLogKey, kek: bytes, size: int, root: bytes
) -> AuditCheckpoint:
    """Sign the tree head and add it; the caller commits it with the tree it describes."""
    body = note.Checkpoint(key_row.name, size, root).text()
    signed = note.sign(body, key_row.name, private_key(kek, key_row))
    row = AuditCheckpoint(
        tree_size=size, root_hash=root, note=signed, key_id=key_row.key_id, created_at=utcnow()
    )
    session.add(row)
    return row


def latest_checkpoint(session: Session) -> AuditCheckpoint | None:
    return session.scalar(
        select(AuditCheckpoint).order_by(AuditCheckpoint.tree_size.desc()).limit(1)
    )
