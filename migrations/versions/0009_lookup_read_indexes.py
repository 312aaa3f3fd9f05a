"""Indexes that serve a lookup's consent and case reads whatever the planner's statistics

Revision ID: 0009
Revises: 0008
Create Date: 2026-11-23 18:40:00

Without statistics SQLite chose, for the consent read, the (status, valid_until) index, which
holds every active consent, and for the case read the (agency_id, reference) constraint, which
holds every case of the agency: a lookup's cost grew with the size of the country. Each index
now covers its read's every equality and its range or order, so no planner has a better choice.
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0009"
down_revision: str | None = "0008"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

CONSENT = ["person_id", "grantee_agency_id", "purpose_id", "status"]
CASE = ["person_id", "agency_id", "status"]


def upgrade() -> None:
    op.drop_index("ix_consent_lookup", table_name="consent")
    op.create_index("ix_consent_lookup", "consent", [*CONSENT, "valid_until"])
    op.drop_index("ix_case_registration_person_agency", table_name="case_registration")
    op.create_index("ix_case_registration_person_agency", "case_registration", [*CASE, "reference"])


def downgrade() -> None:
    op.drop_index("ix_case_registration_person_agency", table_name="case_registration")
    op.create_index("ix_case_registration_person_agency", "case_registration", CASE)
    op.drop_index("ix_consent_lookup", table_name="consent")
    op.create_index("ix_consent_lookup", "consent", CONSENT)
