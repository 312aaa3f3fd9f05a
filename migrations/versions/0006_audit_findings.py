"""Auditors' findings on reviewed accesses, and the outcomes of log verification runs

Revision ID: 0006
Revises: 0005
Create Date: 2026-11-23 12:45:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0006"
down_revision: str | None = "0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "audit_finding",
        sa.Column("event_seq", sa.BigInteger(), autoincrement=False, nullable=False),
        sa.Column("outcome", sa.String(length=16), nullable=False),
        sa.Column("note", sa.Text(), nullable=False),
        sa.Column("officer_id", sa.Uuid(), nullable=False),
        sa.Column("finding_seq", sa.BigInteger(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.CheckConstraint(
            "outcome IN ('justified', 'misuse', 'follow-up')",
            name=op.f("ck_audit_finding_outcome"),
        ),
        sa.CheckConstraint("event_seq >= 0", name=op.f("ck_audit_finding_event_seq")),
        sa.PrimaryKeyConstraint("event_seq", name=op.f("pk_audit_finding")),
        sa.UniqueConstraint("finding_seq", name=op.f("uq_audit_finding_finding_seq")),
    )
    op.create_index(
        op.f("ix_audit_finding_created_at"), "audit_finding", ["created_at"], unique=False
    )
    op.create_table(
        "audit_verification",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("started_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("finished_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("ok", sa.Boolean(), nullable=False),
        sa.Column("events", sa.BigInteger(), nullable=False),
        sa.Column("pruned", sa.BigInteger(), nullable=False),
        sa.Column("tree_size", sa.BigInteger(), nullable=False),
        sa.Column("checkpoints", sa.Integer(), nullable=False),
        sa.Column("first_failure", sa.Text(), nullable=True),
        sa.CheckConstraint(
            "events >= 0 AND tree_size >= 0", name=op.f("ck_audit_verification_counts")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_audit_verification")),
    )
    op.create_index(
        op.f("ix_audit_verification_finished_at"),
        "audit_verification",
        ["finished_at"],
        unique=False,
    )


def downgrade() -> None:
    op.drop_index(op.f("ix_audit_verification_finished_at"), table_name="audit_verification")
    op.drop_table("audit_verification")
    op.drop_index(op.f("ix_audit_finding_created_at"), table_name="audit_finding")
    op.drop_table("audit_finding")
