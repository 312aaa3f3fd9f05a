"""Consent records, receipts and the notification outbox

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-23 11:40:00

The ``consent`` table only gains columns and indexes: adding a CHECK would make SQLite rebuild
the table, and dropping the old copy would cascade deletes to ``consent_event``.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0005"
down_revision: str | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

JSON = sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql")


def upgrade() -> None:
    op.add_column("consent", sa.Column("justification", sa.Text(), nullable=True))
    op.add_column("consent", sa.Column("requested_by_client", sa.String(length=128), nullable=True))
    op.add_column(
        "consent", sa.Column("request_expires_at", sa.DateTime(timezone=True), nullable=True)
    )
    op.add_column("consent", sa.Column("granted_at", sa.DateTime(timezone=True), nullable=True))
    op.add_column("consent", sa.Column("terms_digest", sa.String(length=64), nullable=True))
    op.create_index(
        "ix_consent_status_valid_until", "consent", ["status", "valid_until"], unique=False
    )
    op.create_index(
        "ix_consent_grantee_created", "consent", ["grantee_agency_id", "created_at"], unique=False
    )
    op.create_index(
        "uq_consent_one_open_request",
        "consent",
        ["terms_digest"],
        unique=True,
        sqlite_where=sa.text("status = 'requested'"),
        postgresql_where=sa.text("status = 'requested'"),
    )

    op.create_table(
        "purpose_consent_category",
        sa.Column("purpose_id", sa.String(length=64), nullable=False),
        sa.Column("category_id", sa.String(length=64), nullable=False),
        sa.ForeignKeyConstraint(
            ["category_id"],
            ["data_category.id"],
            name=op.f("fk_purpose_consent_category_category_id_data_category"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["purpose_id"],
            ["purpose.id"],
            name=op.f("fk_purpose_consent_category_purpose_id_purpose"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint(
            "purpose_id", "category_id", name=op.f("pk_purpose_consent_category")
        ),
    )

    op.create_table(
        "citizen_contact",
        sa.Column("person_id", sa.Uuid(), nullable=False),
        sa.Column("email", sa.String(length=254), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["person_id"],
            ["person.id"],
            name=op.f("fk_citizen_contact_person_id_person"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("person_id", name=op.f("pk_citizen_contact")),
    )

    op.create_table(
        "notification",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("person_id", sa.Uuid(), nullable=False),
        sa.Column("kind", sa.String(length=32), nullable=False),
        sa.Column("dedupe_key", sa.String(length=200), nullable=False),
        sa.Column("payload", JSON, nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("delivery", sa.String(length=16), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("next_attempt_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("claimed_by", sa.String(length=64), nullable=True),
        sa.Column("claimed_until", sa.DateTime(timezone=True), nullable=True),
        sa.Column("delivered_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("last_error", sa.String(length=500), nullable=True),
        sa.Column("read_at", sa.DateTime(timezone=True), nullable=True),
        sa.CheckConstraint("attempts >= 0", name=op.f("ck_notification_attempts")),
        sa.CheckConstraint(
            "delivery IN ('pending', 'sent', 'portal', 'failed')",
            name=op.f("ck_notification_delivery"),
        ),
        sa.CheckConstraint(
            "kind IN ('consent.requested', 'consent.expiring', 'access.break_glass')",
            name=op.f("ck_notification_kind"),
        ),
        sa.ForeignKeyConstraint(
            ["person_id"],
            ["person.id"],
            name=op.f("fk_notification_person_id_person"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_notification")),
        sa.UniqueConstraint("dedupe_key", name=op.f("uq_notification_dedupe_key")),
    )
    op.create_index(
        "ix_notification_person_id_id", "notification", ["person_id", "id"], unique=False
    )
    op.create_index(
        "ix_notification_delivery_next",
        "notification",
        ["delivery", "next_attempt_at"],
        unique=False,
    )

    op.create_table(
        "outbox_cursor",
        sa.Column("name", sa.String(length=64), nullable=False),
        sa.Column("position", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("name", name=op.f("pk_outbox_cursor")),
    )


def downgrade() -> None:
    op.drop_table("outbox_cursor")
    op.drop_index("ix_notification_delivery_next", table_name="notification")
    op.drop_index("ix_notification_person_id_id", table_name="notification")
    op.drop_table("notification")
    op.drop_table("citizen_contact")
    op.drop_table("purpose_consent_category")
    op.drop_index("uq_consent_one_open_request", table_name="consent")
    op.drop_index("ix_consent_grantee_created", table_name="consent")
    op.drop_index("ix_consent_status_valid_until", table_name="consent")
    for column in (
        "terms_digest",
        "granted_at",
        "request_expires_at",
        "requested_by_client",
        "justification",
    ):
        op.drop_column("consent", column)
