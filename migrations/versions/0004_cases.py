"""Case registrations

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-23 11:40:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0004"
down_revision: str | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "case_capacity",
        sa.Column("id", sa.String(length=64), nullable=False),
        sa.Column("name", sa.String(length=200), nullable=False),
        sa.Column("description", sa.Text(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_case_capacity")),
    )
    op.create_table(
        "case_registration",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("agency_id", sa.String(length=64), nullable=False),
        sa.Column("reference", sa.String(length=128), nullable=False),
        sa.Column("person_id", sa.Uuid(), nullable=False),
        sa.Column("capacity_id", sa.String(length=64), nullable=False),
        sa.Column("starts_on", sa.Date(), nullable=False),
        sa.Column("ends_on", sa.Date(), nullable=True),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("closed_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("close_reason", sa.String(length=200), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.CheckConstraint(
            "(status = 'open' AND closed_at IS NULL) "
            "OR (status = 'closed' AND closed_at IS NOT NULL)",
            name=op.f("ck_case_registration_closed_at"),
        ),
        sa.CheckConstraint(
            "status IN ('open', 'closed')", name=op.f("ck_case_registration_status")
        ),
        sa.CheckConstraint(
            "ends_on IS NULL OR ends_on >= starts_on", name=op.f("ck_case_registration_period")
        ),
        sa.ForeignKeyConstraint(
            ["agency_id"], ["agency.id"], name=op.f("fk_case_registration_agency_id_agency")
        ),
        sa.ForeignKeyConstraint(
            ["capacity_id"],
            ["case_capacity.id"],
            name=op.f("fk_case_registration_capacity_id_case_capacity"),
        ),
        sa.ForeignKeyConstraint(
            ["person_id"],
            ["person.id"],
            name=op.f("fk_case_registration_person_id_person"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_case_registration")),
        sa.UniqueConstraint(
            "agency_id", "reference", name=op.f("uq_case_registration_agency_id_reference")
        ),
    )
    op.create_index(
        "ix_case_registration_person_agency",
        "case_registration",
        ["person_id", "agency_id", "status"],
        unique=False,
    )
    op.create_table(
        "case_assignee",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("case_id", sa.Uuid(), nullable=False),
        sa.Column("officer_id", sa.Uuid(), nullable=True),
        sa.Column("team", sa.String(length=200), nullable=True),
        sa.CheckConstraint(
            "(officer_id IS NULL) <> (team IS NULL)", name=op.f("ck_case_assignee_officer_or_team")
        ),
        sa.ForeignKeyConstraint(
            ["case_id"],
            ["case_registration.id"],
            name=op.f("fk_case_assignee_case_id_case_registration"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["officer_id"], ["officer.id"], name=op.f("fk_case_assignee_officer_id_officer")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_case_assignee")),
    )
    op.create_index("ix_case_assignee_case", "case_assignee", ["case_id"], unique=False)
    op.create_table(
        "case_purpose",
        sa.Column("case_id", sa.Uuid(), nullable=False),
        sa.Column("purpose_id", sa.String(length=64), nullable=False),
        sa.ForeignKeyConstraint(
            ["case_id"],
            ["case_registration.id"],
            name=op.f("fk_case_purpose_case_id_case_registration"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["purpose_id"], ["purpose.id"], name=op.f("fk_case_purpose_purpose_id_purpose")
        ),
        sa.PrimaryKeyConstraint("case_id", "purpose_id", name=op.f("pk_case_purpose")),
    )


def downgrade() -> None:
    op.drop_table("case_purpose")
    op.drop_index("ix_case_assignee_case", table_name="case_assignee")
    op.drop_table("case_assignee")
    op.drop_index("ix_case_registration_person_agency", table_name="case_registration")
    op.drop_table("case_registration")
    op.drop_table("case_capacity")
