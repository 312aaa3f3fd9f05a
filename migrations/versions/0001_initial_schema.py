"""initial schema

Revision ID: 0001
Revises:
Create Date: 2026-11-23 09:19:23.561317
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0001"
down_revision: str | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:

    op.create_table(
        "agency",
        sa.Column("id", sa.String(length=64), nullable=False),
        sa.Column("name", sa.String(length=200), nullable=False),
        sa.Column("sector", sa.String(length=64), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.CheckConstraint("status IN ('active', 'suspended')", name=op.f("ck_agency_status")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_agency")),
    )
    op.create_table(
        "audit_event",
        sa.Column("seq", sa.BigInteger(), autoincrement=False, nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("kind", sa.String(length=64), nullable=False),
        sa.Column("correlation_id", sa.String(length=64), nullable=True),
        sa.Column("record", sa.Text(), nullable=True),
        sa.Column("leaf_hash", sa.LargeBinary(length=32), nullable=False),
        sa.Column("person_id", sa.Uuid(), nullable=True),
        sa.Column("requester_agency_id", sa.String(length=64), nullable=True),
        sa.Column("provider_agency_id", sa.String(length=64), nullable=True),
        sa.Column("client_id", sa.String(length=128), nullable=True),
        sa.Column("officer_id", sa.Uuid(), nullable=True),
        sa.Column("purpose_id", sa.String(length=64), nullable=True),
        sa.Column("category_id", sa.String(length=64), nullable=True),
        sa.Column("decision", sa.String(length=8), nullable=True),
        sa.CheckConstraint(
            "decision IS NULL OR decision IN ('permit', 'deny')",
            name=op.f("ck_audit_event_decision"),
        ),
        sa.CheckConstraint("length(leaf_hash) = 32", name=op.f("ck_audit_event_leaf_hash")),
        sa.CheckConstraint("seq >= 0", name=op.f("ck_audit_event_seq")),
        sa.PrimaryKeyConstraint("seq", name=op.f("pk_audit_event")),
    )
    with op.batch_alter_table("audit_event", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_audit_event_correlation_id"), ["correlation_id"], unique=False
        )
        batch_op.create_index(batch_op.f("ix_audit_event_created_at"), ["created_at"], unique=False)
        batch_op.create_index(batch_op.f("ix_audit_event_kind"), ["kind"], unique=False)
        batch_op.create_index("ix_audit_event_person_seq", ["person_id", "seq"], unique=False)
        batch_op.create_index(
            "ix_audit_event_requester_seq", ["requester_agency_id", "seq"], unique=False
        )

    op.create_table(
        "audit_sequence",
        sa.Column("id", sa.Integer(), autoincrement=False, nullable=False),
        sa.Column("next_seq", sa.BigInteger(), nullable=False),
        sa.CheckConstraint("id = 1", name=op.f("ck_audit_sequence_single_row")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_audit_sequence")),
    )
    op.bulk_insert(
        sa.table(
            "audit_sequence", sa.column("id", sa.Integer), sa.column("next_seq", sa.BigInteger)
        ),
        [{"id": 1, "next_seq": 0}],
    )
    op.create_table(
        "data_category",
        sa.Column("id", sa.String(length=64), nullable=False),
        sa.Column("name", sa.String(length=200), nullable=False),
        sa.Column("description", sa.Text(), nullable=False),
        sa.Column("sensitivity", sa.String(length=16), nullable=False),
        sa.Column(
            "fields",
            sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql"),
            nullable=False,
        ),
        sa.CheckConstraint(
            "sensitivity IN ('low', 'medium', 'high', 'special')",
            name=op.f("ck_data_category_sensitivity"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_data_category")),
    )
    op.create_table(
        "person",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("given_name", sa.String(length=100), nullable=False),
        sa.Column("family_name", sa.String(length=100), nullable=False),
        sa.Column("birth_date", sa.Date(), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_person")),
    )
    op.create_table(
        "purpose",
        sa.Column("id", sa.String(length=64), nullable=False),
        sa.Column("name", sa.String(length=200), nullable=False),
        sa.Column("description", sa.Text(), nullable=False),
        sa.Column("max_consent_days", sa.Integer(), nullable=True),
        sa.Column("break_glass_allowed", sa.Boolean(), nullable=False),
        sa.Column("justification_required", sa.Boolean(), nullable=False),
        sa.CheckConstraint(
            "NOT break_glass_allowed OR justification_required",
            name=op.f("ck_purpose_break_glass_justified"),
        ),
        sa.CheckConstraint(
            "max_consent_days IS NULL OR max_consent_days > 0",
            name=op.f("ck_purpose_max_consent_days"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_purpose")),
        sa.UniqueConstraint("name", name=op.f("uq_purpose_name")),
    )
    op.create_table(
        "replay_guard",
        sa.Column("namespace", sa.String(length=64), nullable=False),
        sa.Column("value", sa.String(length=255), nullable=False),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("namespace", "value", name=op.f("pk_replay_guard")),
    )
    with op.batch_alter_table("replay_guard", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_replay_guard_expires_at"), ["expires_at"], unique=False
        )

    op.create_table(
        "signing_key",
        sa.Column("kid", sa.String(length=64), nullable=False),
        sa.Column("alg", sa.String(length=16), nullable=False),
        sa.Column(
            "public_jwk",
            sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql"),
            nullable=False,
        ),
        sa.Column("private_key_encrypted", sa.LargeBinary(), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("activated_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("retire_after", sa.DateTime(timezone=True), nullable=True),
        sa.CheckConstraint("alg IN ('ES256', 'PS256', 'EdDSA')", name=op.f("ck_signing_key_alg")),
        sa.CheckConstraint(
            "status IN ('next', 'active', 'retiring', 'retired')",
            name=op.f("ck_signing_key_status"),
        ),
        sa.PrimaryKeyConstraint("kid", name=op.f("pk_signing_key")),
    )
    with op.batch_alter_table("signing_key", schema=None) as batch_op:
        batch_op.create_index(
            "uq_signing_key_one_active_per_alg",
            ["alg"],
            unique=True,
            sqlite_where=sa.text("status = 'active'"),
            postgresql_where=sa.text("status = 'active'"),
        )

    op.create_table(
        "client",
        sa.Column("id", sa.String(length=128), nullable=False),
        sa.Column("agency_id", sa.String(length=64), nullable=False),
        sa.Column("name", sa.String(length=200), nullable=False),
        sa.Column("scope", sa.String(length=500), nullable=False),
        sa.Column(
            "grant_types",
            sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql"),
            nullable=False,
        ),
        sa.Column("token_endpoint_auth_method", sa.String(length=32), nullable=False),
        sa.Column("is_fapi", sa.Boolean(), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.CheckConstraint("status IN ('active', 'disabled')", name=op.f("ck_client_status")),
        sa.CheckConstraint(
            "token_endpoint_auth_method IN ('private_key_jwt')", name=op.f("ck_client_auth_method")
        ),
        sa.ForeignKeyConstraint(
            ["agency_id"], ["agency.id"], name=op.f("fk_client_agency_id_agency")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_client")),
    )
    with op.batch_alter_table("client", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_client_agency_id"), ["agency_id"], unique=False)

    op.create_table(
        "consent",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("person_id", sa.Uuid(), nullable=False),
        sa.Column("grantee_agency_id", sa.String(length=64), nullable=False),
        sa.Column("provider_agency_id", sa.String(length=64), nullable=True),
        sa.Column("purpose_id", sa.String(length=64), nullable=False),
        sa.Column(
            "categories",
            sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql"),
            nullable=False,
        ),
        sa.Column(
            "fields",
            sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql"),
            nullable=True,
        ),
        sa.Column("valid_from", sa.DateTime(timezone=True), nullable=False),
        sa.Column("valid_until", sa.DateTime(timezone=True), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("receipt_jws", sa.Text(), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.CheckConstraint(
            "status IN ('requested', 'active', 'declined', 'revoked', 'expired')",
            name=op.f("ck_consent_status"),
        ),
        sa.CheckConstraint("valid_until > valid_from", name=op.f("ck_consent_window")),
        sa.ForeignKeyConstraint(
            ["grantee_agency_id"], ["agency.id"], name=op.f("fk_consent_grantee_agency_id_agency")
        ),
        sa.ForeignKeyConstraint(
            ["person_id"],
            ["person.id"],
            name=op.f("fk_consent_person_id_person"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["provider_agency_id"], ["agency.id"], name=op.f("fk_consent_provider_agency_id_agency")
        ),
        sa.ForeignKeyConstraint(
            ["purpose_id"], ["purpose.id"], name=op.f("fk_consent_purpose_id_purpose")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_consent")),
    )
    with op.batch_alter_table("consent", schema=None) as batch_op:
        batch_op.create_index(
            "ix_consent_lookup",
            ["person_id", "grantee_agency_id", "purpose_id", "status"],
            unique=False,
        )

    op.create_table(
        "identity_link",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("person_id", sa.Uuid(), nullable=False),
        sa.Column("agency_id", sa.String(length=64), nullable=False),
        sa.Column("scheme", sa.String(length=64), nullable=False),
        sa.Column("value", sa.String(length=200), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.CheckConstraint("length(value) > 0", name=op.f("ck_identity_link_value_not_empty")),
        sa.ForeignKeyConstraint(
            ["agency_id"], ["agency.id"], name=op.f("fk_identity_link_agency_id_agency")
        ),
        sa.ForeignKeyConstraint(
            ["person_id"],
            ["person.id"],
            name=op.f("fk_identity_link_person_id_person"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_identity_link")),
        sa.UniqueConstraint("agency_id", "scheme", "value", name="agency_scheme_value"),
        sa.UniqueConstraint("person_id", "agency_id", "scheme", name="person_agency_scheme"),
    )
    with op.batch_alter_table("identity_link", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_identity_link_person_id"), ["person_id"], unique=False)

    op.create_table(
        "officer",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("agency_id", sa.String(length=64), nullable=False),
        sa.Column("display_name", sa.String(length=200), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.CheckConstraint("status IN ('active', 'disabled')", name=op.f("ck_officer_status")),
        sa.ForeignKeyConstraint(
            ["agency_id"], ["agency.id"], name=op.f("fk_officer_agency_id_agency")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_officer")),
    )
    with op.batch_alter_table("officer", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_officer_agency_id"), ["agency_id"], unique=False)

    op.create_table(
        "source",
        sa.Column("id", sa.String(length=64), nullable=False),
        sa.Column("agency_id", sa.String(length=64), nullable=False),
        sa.Column("adapter", sa.String(length=64), nullable=False),
        sa.Column(
            "config",
            sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql"),
            nullable=False,
        ),
        sa.Column("timeout_ms", sa.Integer(), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.CheckConstraint("status IN ('active', 'disabled')", name=op.f("ck_source_status")),
        sa.CheckConstraint(
            "timeout_ms > 0 AND timeout_ms <= 60000", name=op.f("ck_source_timeout_ms")
        ),
        sa.ForeignKeyConstraint(
            ["agency_id"], ["agency.id"], name=op.f("fk_source_agency_id_agency")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_source")),
    )
    with op.batch_alter_table("source", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_source_agency_id"), ["agency_id"], unique=False)

    op.create_table(
        "account",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("username", sa.String(length=200), nullable=False),
        sa.Column("password_hash", sa.String(length=255), nullable=False),
        sa.Column("kind", sa.String(length=16), nullable=False),
        sa.Column("person_id", sa.Uuid(), nullable=True),
        sa.Column("officer_id", sa.Uuid(), nullable=True),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.CheckConstraint(
            "(kind = 'citizen' AND person_id IS NOT NULL AND officer_id IS NULL) OR (kind = 'officer' AND officer_id IS NOT NULL AND person_id IS NULL)",
            name=op.f("ck_account_holder"),
        ),
        sa.CheckConstraint("kind IN ('citizen', 'officer')", name=op.f("ck_account_kind")),
        sa.CheckConstraint("status IN ('active', 'disabled')", name=op.f("ck_account_status")),
        sa.ForeignKeyConstraint(
            ["officer_id"],
            ["officer.id"],
            name=op.f("fk_account_officer_id_officer"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["person_id"],
            ["person.id"],
            name=op.f("fk_account_person_id_person"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_account")),
        sa.UniqueConstraint("officer_id", name=op.f("uq_account_officer_id")),
        sa.UniqueConstraint("person_id", name=op.f("uq_account_person_id")),
        sa.UniqueConstraint("username", name=op.f("uq_account_username")),
    )
    op.create_table(
        "client_key",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("client_id", sa.String(length=128), nullable=False),
        sa.Column("kid", sa.String(length=128), nullable=False),
        sa.Column("thumbprint", sa.String(length=64), nullable=False),
        sa.Column(
            "jwk",
            sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql"),
            nullable=False,
        ),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.CheckConstraint("status IN ('active', 'disabled')", name=op.f("ck_client_key_status")),
        sa.ForeignKeyConstraint(
            ["client_id"],
            ["client.id"],
            name=op.f("fk_client_key_client_id_client"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_client_key")),
        sa.UniqueConstraint("client_id", "kid", name="client_kid"),
        sa.UniqueConstraint("thumbprint", name="thumbprint"),
    )
    op.create_table(
        "consent_event",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("consent_id", sa.Uuid(), nullable=False),
        sa.Column("from_status", sa.String(length=16), nullable=True),
        sa.Column("to_status", sa.String(length=16), nullable=False),
        sa.Column("actor", sa.String(length=200), nullable=False),
        sa.Column("channel", sa.String(length=16), nullable=False),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
        sa.CheckConstraint(
            "channel IN ('portal', 'api', 'system', 'cli')", name=op.f("ck_consent_event_channel")
        ),
        sa.CheckConstraint(
            "to_status IN ('requested', 'active', 'declined', 'revoked', 'expired')",
            name=op.f("ck_consent_event_to_status"),
        ),
        sa.ForeignKeyConstraint(
            ["consent_id"],
            ["consent.id"],
            name=op.f("fk_consent_event_consent_id_consent"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_consent_event")),
    )
    with op.batch_alter_table("consent_event", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_consent_event_consent_id"), ["consent_id"], unique=False
        )

    op.create_table(
        "officer_role",
        sa.Column("officer_id", sa.Uuid(), nullable=False),
        sa.Column("role", sa.String(length=32), nullable=False),
        sa.CheckConstraint(
            "role IN ('caseworker', 'auditor', 'admin')", name=op.f("ck_officer_role_role")
        ),
        sa.ForeignKeyConstraint(
            ["officer_id"],
            ["officer.id"],
            name=op.f("fk_officer_role_officer_id_officer"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("officer_id", "role", name=op.f("pk_officer_role")),
    )
    op.create_table(
        "source_category",
        sa.Column("source_id", sa.String(length=64), nullable=False),
        sa.Column("category_id", sa.String(length=64), nullable=False),
        sa.ForeignKeyConstraint(
            ["category_id"],
            ["data_category.id"],
            name=op.f("fk_source_category_category_id_data_category"),
        ),
        sa.ForeignKeyConstraint(
            ["source_id"],
            ["source.id"],
            name=op.f("fk_source_category_source_id_source"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("source_id", "category_id", name=op.f("pk_source_category")),
    )


def downgrade() -> None:

    op.drop_table("source_category")
    op.drop_table("officer_role")
    with op.batch_alter_table("consent_event", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_consent_event_consent_id"))

    op.drop_table("consent_event")
    op.drop_table("client_key")
    op.drop_table("account")
    with op.batch_alter_table("source", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_source_agency_id"))

    op.drop_table("source")
    with op.batch_alter_table("officer", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_officer_agency_id"))

    op.drop_table("officer")
    with op.batch_alter_table("identity_link", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_identity_link_person_id"))

    op.drop_table("identity_link")
    with op.batch_alter_table("consent", schema=None) as batch_op:
        batch_op.drop_index("ix_consent_lookup")

    op.drop_table("consent")
    with op.batch_alter_table("client", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_client_agency_id"))

    op.drop_table("client")
    with op.batch_alter_table("signing_key", schema=None) as batch_op:
        batch_op.drop_index(
            "uq_signing_key_one_active_per_alg",
            sqlite_where=sa.text("status = 'active'"),
            postgresql_where=sa.text("status = 'active'"),
        )

    op.drop_table("signing_key")
    with op.batch_alter_table("replay_guard", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_replay_guard_expires_at"))

    op.drop_table("replay_guard")
    op.drop_table("purpose")
    op.drop_table("person")
    op.drop_table("data_category")
    op.drop_table("audit_sequence")
    with op.batch_alter_table("audit_event", schema=None) as batch_op:
        batch_op.drop_index("ix_audit_event_requester_seq")
        batch_op.drop_index("ix_audit_event_person_seq")
        batch_op.drop_index(batch_op.f("ix_audit_event_kind"))
        batch_op.drop_index(batch_op.f("ix_audit_event_created_at"))
        batch_op.drop_index(batch_op.f("ix_audit_event_correlation_id"))

    op.drop_table("audit_event")
    op.drop_table("agency")
