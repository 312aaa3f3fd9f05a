"""Merkle tree, checkpoints and audit retention

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-23 11:40:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "audit_tree_node",
        sa.Column("level", sa.SmallInteger(), autoincrement=False, nullable=False),
        sa.Column("idx", sa.BigInteger(), autoincrement=False, nullable=False),
        sa.Column("hash", sa.LargeBinary(length=32), nullable=False),
        sa.CheckConstraint("length(hash) = 32", name=op.f("ck_audit_tree_node_hash")),
        sa.CheckConstraint("idx >= 0", name=op.f("ck_audit_tree_node_idx")),
        sa.CheckConstraint("level >= 0 AND level < 64", name=op.f("ck_audit_tree_node_level")),
        sa.PrimaryKeyConstraint("level", "idx", name=op.f("pk_audit_tree_node")),
    )
    op.create_table(
        "audit_tree_state",
        sa.Column("id", sa.Integer(), autoincrement=False, nullable=False),
        sa.Column("size", sa.BigInteger(), nullable=False),
        sa.Column("root_hash", sa.LargeBinary(length=32), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.CheckConstraint("id = 1", name=op.f("ck_audit_tree_state_single_row")),
        sa.CheckConstraint("size >= 0", name=op.f("ck_audit_tree_state_size")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_audit_tree_state")),
    )
    op.create_table(
        "audit_log_key",
        sa.Column("key_id", sa.String(length=300), nullable=False),
        sa.Column("name", sa.String(length=255), nullable=False),
        sa.Column("public_key", sa.LargeBinary(length=32), nullable=False),
        sa.Column("private_key_encrypted", sa.LargeBinary(), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.CheckConstraint("length(public_key) = 32", name=op.f("ck_audit_log_key_public_key")),
        sa.CheckConstraint("status IN ('active', 'retired')", name=op.f("ck_audit_log_key_status")),
        sa.PrimaryKeyConstraint("key_id", name=op.f("pk_audit_log_key")),
    )
    with op.batch_alter_table("audit_log_key", schema=None) as batch_op:
        batch_op.create_index(
            "uq_audit_log_key_active",
            ["status"],
            unique=True,
            sqlite_where=sa.text("status = 'active'"),
            postgresql_where=sa.text("status = 'active'"),
        )
    op.create_table(
        "audit_checkpoint",
        sa.Column("tree_size", sa.BigInteger(), autoincrement=False, nullable=False),
        sa.Column("root_hash", sa.LargeBinary(length=32), nullable=False),
        sa.Column("note", sa.Text(), nullable=False),
        sa.Column("key_id", sa.String(length=300), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.CheckConstraint("length(root_hash) = 32", name=op.f("ck_audit_checkpoint_root_hash")),
        sa.PrimaryKeyConstraint("tree_size", name=op.f("pk_audit_checkpoint")),
    )
    with op.batch_alter_table("audit_checkpoint", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_audit_checkpoint_created_at"), ["created_at"], unique=False
        )


def downgrade() -> None:
    with op.batch_alter_table("audit_checkpoint", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_audit_checkpoint_created_at"))
    op.drop_table("audit_checkpoint")
    with op.batch_alter_table("audit_log_key", schema=None) as batch_op:
        batch_op.drop_index(
            "uq_audit_log_key_active",
            sqlite_where=sa.text("status = 'active'"),
            postgresql_where=sa.text("status = 'active'"),
        )
    op.drop_table("audit_log_key")
    op.drop_table("audit_tree_state")
    op.drop_table("audit_tree_node")
