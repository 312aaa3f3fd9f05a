"""State of the OpenID Connect provider that every process must agree on.

Browser sessions, login throttles, pushed requests, authorization codes, consents and refresh
token families live in the database, so any node can serve any request and a single-use value
is used once across all of them (a conditional UPDATE decides the race).
"""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from sqlalchemy import ForeignKey, Integer, String, UniqueConstraint, Uuid
from sqlalchemy.orm import Mapped, mapped_column

from broker.db import Base, JSONType, utcnow


class WebSession(Base):
    """A browser session; the cookie holds a random token, the row is keyed by its SHA-256."""

    __tablename__ = "web_session"

    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    account_id: Mapped[uuid.UUID | None] = mapped_column(
        ForeignKey("account.id", ondelete="CASCADE"), index=True
    )
    data: Mapped[dict[str, Any]] = mapped_column(JSONType, default=dict)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    last_seen_at: Mapped[datetime] = mapped_column(default=utcnow)
    expires_at: Mapped[datetime] = mapped_column(index=True)


class LoginThrottle(Base):
    """Failed-attempt counter for one key (an account or a source address)."""

    __tablename__ = "login_throttle"

    key: Mapped[str] = mapped_column(String(128), primary_key=True)
    failures: Mapped[int] = mapped_column(Integer, default=0)
    last_failure_at: Mapped[datetime] = mapped_column(default=utcnow)
    blocked_until: Mapped[datetime] = mapped_column(default=utcnow)


class RecoveryCode(Base):
    """A single-use MFA recovery code; only its SHA-256 is kept (the code has 60 random bits)."""

    __tablename__ = "recovery_code"

    code_hash: Mapped[str] = mapped_column(String(64), primary_key=True)
    account_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("account.id", ondelete="CASCADE"), index=True
    )
    used_at: Mapped[datetime | None] = mapped_column()
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class PushedRequest(Base):
    """A pushed authorization request (RFC 9126); usable once, until ``expires_at``."""

    __tablename__ = "pushed_request"

    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    client_id: Mapped[str] = mapped_column(ForeignKey("client.id", ondelete="CASCADE"))
    params: Mapped[dict[str, Any]] = mapped_column(JSONType)
    expires_at: Mapped[datetime] = mapped_column(index=True)
    used_at: Mapped[datetime | None] = mapped_column()


class AuthorizationCode(Base):
    """An issued code (RFC 6749 4.1.2), keyed by its SHA-256; redeemable once."""

    __tablename__ = "authorization_code"

    code_hash: Mapped[str] = mapped_column(String(64), primary_key=True)
    client_id: Mapped[str] = mapped_column(ForeignKey("client.id", ondelete="CASCADE"))
    account_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("account.id", ondelete="CASCADE"))
    family_id: Mapped[uuid.UUID] = mapped_column(Uuid, default=uuid.uuid4, unique=True)
    redirect_uri: Mapped[str] = mapped_column(String(2000))
    scope: Mapped[str] = mapped_column(String(500))
    nonce: Mapped[str | None] = mapped_column(String(255))
    code_challenge: Mapped[str] = mapped_column(String(128))
    dpop_jkt: Mapped[str | None] = mapped_column(String(64))
    auth_time: Mapped[int] = mapped_column(Integer)
    acr: Mapped[str] = mapped_column(String(64))
    amr: Mapped[list[str]] = mapped_column(JSONType)
    session_id: Mapped[str | None] = mapped_column(String(64))
    expires_at: Mapped[datetime] = mapped_column(index=True)
    used_at: Mapped[datetime | None] = mapped_column()


class ConsentGrant(Base):
    """What a user allowed a client to receive (scopes); remembered until withdrawn."""

    __tablename__ = "consent_grant"
    __table_args__ = (UniqueConstraint("account_id", "client_id", name="account_client"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    account_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("account.id", ondelete="CASCADE"))
    client_id: Mapped[str] = mapped_column(ForeignKey("client.id", ondelete="CASCADE"))
    scopes: Mapped[list[str]] = mapped_column(JSONType)
    granted_at: Mapped[datetime] = mapped_column(default=utcnow)


class TokenFamily(Base):
    """Every token that descends from one authorization code; revoked as a whole."""

    __tablename__ = "token_family"

    id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True)
    client_id: Mapped[str] = mapped_column(ForeignKey("client.id", ondelete="CASCADE"))
    account_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("account.id", ondelete="CASCADE"), index=True
    )
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    revoked_at: Mapped[datetime | None] = mapped_column()
    revoked_reason: Mapped[str | None] = mapped_column(String(64))


class RefreshToken(Base):
    """One refresh token, keyed by its SHA-256; rotated on use (a second use revokes all)."""

    __tablename__ = "refresh_token"

    token_hash: Mapped[str] = mapped_column(String(64), primary_key=True)
    family_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("token_family.id", ondelete="CASCADE"), index=True
    )
    scope: Mapped[str] = mapped_column(String(500))
    dpop_jkt: Mapped[str | None] = mapped_column(String(64))
    auth_time: Mapped[int] = mapped_column(Integer)
    acr: Mapped[str] = mapped_column(String(64))
    amr: Mapped[list[str]] = mapped_column(JSONType)
    expires_at: Mapped[datetime] = mapped_column()
    used_at: Mapped[datetime | None] = mapped_column()
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class UpstreamLink(Base):
    """Identity brokering: the subject ``subject`` at upstream provider ``provider`` is this
    account here. Links are made by operators; an unlinked upstream login is refused."""

    __tablename__ = "upstream_link"

    provider: Mapped[str] = mapped_column(String(64), primary_key=True)
    subject: Mapped[str] = mapped_column(String(255), primary_key=True)
    account_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("account.id", ondelete="CASCADE"), index=True
    )
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
