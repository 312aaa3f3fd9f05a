"""The append-only audit event table and its gap-free sequence.

Each event is a canonical JSON ``record`` and its RFC 9162 leaf hash
SHA-256(0x00 || record). The ``seq`` numbers are the leaves' indexes in the Merkle tree, so
they must have no gaps: they come from the single-row ``audit_sequence`` counter, bumped in
the same transaction as the insert, so a rolled-back append returns its number.
The indexed columns copy fields of the record for the auditor's searches.
"""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from sqlalchemy import (
    BigInteger,
    CheckConstraint,
    Index,
    LargeBinary,
    SmallInteger,
    String,
    Text,
    Uuid,
    text,
)
from sqlalchemy.orm import Mapped, mapped_column

from broker.db import Base, JSONType


class AuditEvent(Base):
    __tablename__ = "audit_event"
    __table_args__ = (
        CheckConstraint("seq >= 0", name="seq"),
        CheckConstraint("decision IS NULL OR decision IN ('permit', 'deny')", name="decision"),
        CheckConstraint("length(leaf_hash) = 32", name="leaf_hash"),
        Index("ix_audit_event_person_seq", "person_id", "seq"),
        Index("ix_audit_event_requester_seq", "requester_agency_id", "seq"),
    )

    seq: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=False)
    created_at: Mapped[datetime] = mapped_column(index=True)
    kind: Mapped[str] = mapped_column(String(64), index=True)
    correlation_id: Mapped[str | None] = mapped_column(String(64), index=True)
    record: Mapped[str | None] = mapped_column(Text)
    leaf_hash: Mapped[bytes] = mapped_column(LargeBinary(32))
    person_id: Mapped[uuid.UUID | None] = mapped_column(Uuid)
    requester_agency_id: Mapped[str | None] = mapped_column(String(64))
    provider_agency_id: Mapped[str | None] = mapped_column(String(64))
    client_id: Mapped[str | None] = mapped_column(String(128))
    officer_id: Mapped[uuid.UUID | None] = mapped_column(Uuid)
    purpose_id: Mapped[str | None] = mapped_column(String(64))
    category_id: Mapped[str | None] = mapped_column(String(64))
    decision: Mapped[str | None] = mapped_column(String(8))


class AuditSequence(Base):
    """The one-row counter of the next ``seq``; the migration inserts the row."""

    __tablename__ = "audit_sequence"
    __table_args__ = (CheckConstraint("id = 1", name="single_row"),)

    id: Mapped[int] = mapped_column(primary_key=True, autoincrement=False)
    next_seq: Mapped[int] = mapped_column(BigInteger)


class AuditTreeNode(Base):
    """A complete subtree of the Merkle tree: leaves [index * 2**level, (index + 1) * 2**level).

    Level 0 repeats the leaf hashes as integrated, so proofs read this table alone and verify
    can name the first event that no longer matches what was integrated.
    """

    __tablename__ = "audit_tree_node"
    __table_args__ = (
        CheckConstraint("level >= 0 AND level < 64", name="level"),
        CheckConstraint("idx >= 0", name="idx"),
        CheckConstraint("length(hash) = 32", name="hash"),
    )

    level: Mapped[int] = mapped_column(SmallInteger, primary_key=True, autoincrement=False)
    idx: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=False)
    hash: Mapped[bytes] = mapped_column(LargeBinary(32))


class AuditTreeState(Base):
    """The one-row head of the integrated tree, moved with the nodes in one transaction."""

    __tablename__ = "audit_tree_state"
    __table_args__ = (
        CheckConstraint("id = 1", name="single_row"),
        CheckConstraint("size >= 0", name="size"),
    )

    id: Mapped[int] = mapped_column(primary_key=True, autoincrement=False)
    size: Mapped[int] = mapped_column(BigInteger)
    root_hash: Mapped[bytes] = mapped_column(LargeBinary(32))
    updated_at: Mapped[datetime]


class AuditLogKey(Base):
    """The Ed25519 key that signs checkpoints; the private key sealed under the KEK."""

    __tablename__ = "audit_log_key"
    __table_args__ = (
        CheckConstraint("status IN ('active', 'retired')", name="status"),
        CheckConstraint("length(public_key) = 32", name="public_key"),
        Index(
            "uq_audit_log_key_active",
            "status",
            unique=True,
            sqlite_where=text("status = 'active'"),
            postgresql_where=text("status = 'active'"),
        ),
    )

    key_id: Mapped[str] = mapped_column(String(300), primary_key=True)
    name: Mapped[str] = mapped_column(String(255))
    public_key: Mapped[bytes] = mapped_column(LargeBinary(32))
    private_key_encrypted: Mapped[bytes] = mapped_column(LargeBinary)
    status: Mapped[str] = mapped_column(String(16))
    created_at: Mapped[datetime]


class AuditCheckpoint(Base):
    """A signed tree head in C2SP checkpoint form, one per integrated size."""

    __tablename__ = "audit_checkpoint"
    __table_args__ = (CheckConstraint("length(root_hash) = 32", name="root_hash"),)

    tree_size: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=False)
    root_hash: Mapped[bytes] = mapped_column(LargeBinary(32))
    note: Mapped[str] = mapped_column(Text)
    key_id: Mapped[str] = mapped_column(String(300))
    created_at: Mapped[datetime] = mapped_column(index=True)


class AuditVerification(Base):
    """The outcome of one full ``casebroker audit verify`` run.

    Verification is too slow for a page to run, so the command keeps what it found; the
    auditor's console shows the latest run beside the checkpoint it checked.
    """

    __tablename__ = "audit_verification"
    __table_args__ = (CheckConstraint("events >= 0 AND tree_size >= 0", name="counts"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    started_at: Mapped[datetime]
    finished_at: Mapped[datetime] = mapped_column(index=True)
    ok: Mapped[bool]
    events: Mapped[int] = mapped_column(BigInteger)
    pruned: Mapped[int] = mapped_column(BigInteger)
    tree_size: Mapped[int] = mapped_column(BigInteger)
    checkpoints: Mapped[int]
    #: The first problem found (``None`` when the run passed); never an event's body.
    first_failure: Mapped[str | None] = mapped_column(Text)


class AuditPolicyVersion(Base):
    """A policy set that decided at least one access: its files, kept for as long as the log.

    Decision events name the version (a SHA-256 over the files); the ``policy.loaded`` event
    of its first use carries each file's SHA-256, so the text here can be checked against the
    tamper-evident log long after the files on disk have changed.
    """

    __tablename__ = "audit_policy_version"

    version: Mapped[str] = mapped_column(String(64), primary_key=True)
    first_used_at: Mapped[datetime]
    #: File name (relative to the policy directory) to its text.
    files: Mapped[dict[str, Any]] = mapped_column(JSONType)
