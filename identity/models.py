"""Persons and their identity links, officers and accounts, OAuth clients, signing keys."""

from __future__ import annotations

import uuid
from datetime import date, datetime
from typing import Any

from sqlalchemy import (
    BigInteger,
    Boolean,
    CheckConstraint,
    Date,
    ForeignKey,
    Index,
    LargeBinary,
    String,
    UniqueConstraint,
    Uuid,
    text,
)
from sqlalchemy.orm import Mapped, mapped_column, relationship

from broker.db import Base, JSONType, utcnow

SUPPORTED_SIGNING_ALGS = ("ES256", "PS256", "EdDSA")


class Person(Base):
    """A citizen. The random ``id`` is internal: it never appears in a response or token."""

    __tablename__ = "person"

    id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True, default=uuid.uuid4)
    given_name: Mapped[str] = mapped_column(String(100))
    family_name: Mapped[str] = mapped_column(String(100))
    birth_date: Mapped[date | None] = mapped_column(Date)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)

    links: Mapped[list[IdentityLink]] = relationship(back_populates="person")


class IdentityLink(Base):
    """The reference directory: agency ``agency_id`` knows this person as ``scheme:value``."""

    __tablename__ = "identity_link"
    __table_args__ = (
        UniqueConstraint("agency_id", "scheme", "value", name="agency_scheme_value"),
        UniqueConstraint("person_id", "agency_id", "scheme", name="person_agency_scheme"),
        CheckConstraint("length(value) > 0", name="value_not_empty"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    person_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("person.id", ondelete="CASCADE"), index=True
    )
    agency_id: Mapped[str] = mapped_column(ForeignKey("agency.id"))
    scheme: Mapped[str] = mapped_column(String(64))
    value: Mapped[str] = mapped_column(String(200))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)

    person: Mapped[Person] = relationship(back_populates="links")


class Officer(Base):
    """A person working at an agency; lookups carry the officer when there is one."""

    __tablename__ = "officer"
    __table_args__ = (CheckConstraint("status IN ('active', 'disabled')", name="status"),)

    id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True, default=uuid.uuid4)
    agency_id: Mapped[str] = mapped_column(ForeignKey("agency.id"), index=True)
    display_name: Mapped[str] = mapped_column(String(200))
    status: Mapped[str] = mapped_column(String(16), default="active")
    created_at: Mapped[datetime] = mapped_column(default=utcnow)

    roles: Mapped[list[OfficerRole]] = relationship(cascade="all, delete-orphan", lazy="selectin")

    @property
    def role_names(self) -> list[str]:
        return sorted(r.role for r in self.roles)


class OfficerRole(Base):
    __tablename__ = "officer_role"
    __table_args__ = (CheckConstraint("role IN ('caseworker', 'auditor', 'admin')", name="role"),)

    officer_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("officer.id", ondelete="CASCADE"), primary_key=True
    )
    role: Mapped[str] = mapped_column(String(32), primary_key=True)


class Account(Base):
    """Login credentials of a citizen or an officer (exactly one of the two)."""

    __tablename__ = "account"
    __table_args__ = (
        CheckConstraint("kind IN ('citizen', 'officer')", name="kind"),
        CheckConstraint("status IN ('active', 'disabled')", name="status"),
        CheckConstraint(
            "(kind = 'citizen' AND person_id IS NOT NULL AND officer_id IS NULL) OR "
            "(kind = 'officer' AND officer_id IS NOT NULL AND person_id IS NULL)",
            name="holder",
        ),
    )

    id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True, default=uuid.uuid4)
    username: Mapped[str] = mapped_column(String(200), unique=True)
    password_hash: Mapped[str] = mapped_column(String(255))
    kind: Mapped[str] = mapped_column(String(16))
    person_id: Mapped[uuid.UUID | None] = mapped_column(
        ForeignKey("person.id", ondelete="CASCADE"), unique=True
    )
    officer_id: Mapped[uuid.UUID | None] = mapped_column(
        ForeignKey("officer.id", ondelete="CASCADE"), unique=True
    )
    status: Mapped[str] = mapped_column(String(16), default="active")
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    #: TOTP shared secret (RFC 6238), sealed with the KEK like signing keys; set once enrolled.
    totp_secret_encrypted: Mapped[bytes | None] = mapped_column(LargeBinary)
    totp_enabled_at: Mapped[datetime | None] = mapped_column()
    #: Last accepted TOTP time step: a code is accepted once (RFC 6238 section 5.2).
    totp_last_step: Mapped[int | None] = mapped_column(BigInteger)


class Client(Base):
    """An agency's OAuth client (its case-management system)."""

    __tablename__ = "client"
    __table_args__ = (
        CheckConstraint("status IN ('active', 'disabled')", name="status"),
        CheckConstraint("token_endpoint_auth_method IN ('private_key_jwt')", name="auth_method"),
    )

    id: Mapped[str] = mapped_column(String(128), primary_key=True)
    agency_id: Mapped[str] = mapped_column(ForeignKey("agency.id"), index=True)
    name: Mapped[str] = mapped_column(String(200))
    scope: Mapped[str] = mapped_column(String(500), default="lookup")
    grant_types: Mapped[list[str]] = mapped_column(JSONType, default=lambda: ["client_credentials"])
    token_endpoint_auth_method: Mapped[str] = mapped_column(String(32), default="private_key_jwt")
    is_fapi: Mapped[bool] = mapped_column(Boolean, default=True)
    status: Mapped[str] = mapped_column(String(16), default="active")
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    #: Exact-match redirect URIs (OIDC Core 3.1.2.1); https, or http on loopback only.
    redirect_uris: Mapped[list[str]] = mapped_column(JSONType, default=list)
    post_logout_redirect_uris: Mapped[list[str]] = mapped_column(JSONType, default=list)
    id_token_signed_response_alg: Mapped[str] = mapped_column(String(16), default="ES256")
    subject_type: Mapped[str] = mapped_column(String(16), default="public")
    #: ``public`` or ``pairwise`` (checked by the registry: adding a CHECK here would make
    #: SQLite rebuild the table, and a rebuild cascades deletes to client keys).
    #: Pairwise subjects are computed per sector (OIDC Core 8.1); clients sharing it share subs.
    sector_identifier: Mapped[str | None] = mapped_column(String(255))

    keys: Mapped[list[ClientKey]] = relationship(
        back_populates="client", cascade="all, delete-orphan", lazy="selectin"
    )


class ClientKey(Base):
    """A public key a client signs its assertions with (a JWK, never a private part)."""

    __tablename__ = "client_key"
    __table_args__ = (
        UniqueConstraint("client_id", "kid", name="client_kid"),
        UniqueConstraint("thumbprint", name="thumbprint"),
        CheckConstraint("status IN ('active', 'disabled')", name="status"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    client_id: Mapped[str] = mapped_column(ForeignKey("client.id", ondelete="CASCADE"))
    kid: Mapped[str] = mapped_column(String(128))
    thumbprint: Mapped[str] = mapped_column(String(64))
    jwk: Mapped[dict[str, Any]] = mapped_column(JSONType)
    status: Mapped[str] = mapped_column(String(16), default="active")
    created_at: Mapped[datetime] = mapped_column(default=utcnow)

    client: Mapped[Client] = relationship(back_populates="keys")


class SigningKey(Base):
    """One of the broker's own signing keys; the private part is encrypted with the KEK."""

    __tablename__ = "signing_key"
    __table_args__ = (
        CheckConstraint("alg IN ('ES256', 'PS256', 'EdDSA')", name="alg"),
        CheckConstraint("status IN ('next', 'active', 'retiring', 'retired')", name="status"),
        Index(
            "uq_signing_key_one_active_per_alg",
            "alg",
            unique=True,
            sqlite_where=text("status = 'active'"),
            postgresql_where=text("status = 'active'"),
        ),
    )

    kid: Mapped[str] = mapped_column(String(64), primary_key=True)
    alg: Mapped[str] = mapped_column(String(16))
    public_jwk: Mapped[dict[str, Any]] = mapped_column(JSONType)
    private_key_encrypted: Mapped[bytes] = mapped_column(LargeBinary)
    status: Mapped[str] = mapped_column(String(16))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    activated_at: Mapped[datetime | None] = mapped_column()
    retire_after: Mapped[datetime | None] = mapped_column()


class ReplayGuard(Base):
    """Single-use values (client assertion ``jti``, later DPoP proof ``jti``) across processes:
    the primary key makes the second insert of the same value fail in every process."""

    __tablename__ = "replay_guard"

    namespace: Mapped[str] = mapped_column(String(64), primary_key=True)
    value: Mapped[str] = mapped_column(String(255), primary_key=True)
    expires_at: Mapped[datetime] = mapped_column(index=True)
