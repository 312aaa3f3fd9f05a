"""The broker's signing keys: generated here, encrypted at rest, published in the JWKS.

Private keys are stored as PKCS#8 DER sealed with AES-256-GCM under the key-encryption key
(KEK) from configuration; the ``kid`` is the associated data, so a ciphertext moved to
another row does not decrypt. Lifecycle (docs/architecture.md): ``next`` (published, not
yet signing) -> ``active`` (signing) -> ``retiring`` (published until its tokens expire) ->
``retired``.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from functools import lru_cache
from typing import Any

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from joserfc.jwk import ECKey, OKPKey, RSAKey
from sqlalchemy import bindparam, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from broker.db import utcnow
from broker.prepared import Fetched, Prepared
from identity.models import SigningKey

PUBLISHED_STATES = ("next", "active", "retiring")


class SigningKeyUnavailable(Exception):
    """A signing key cannot be used (missing, or undecryptable with this KEK)."""


def _generate_private_key(alg: str) -> Any:
    if alg == "ES256":
        return ec.generate_private_key(ec.SECP256R1())
    if alg == "PS256":
        return rsa.generate_private_key(public_exponent=65537, key_size=3072)
    if alg == "EdDSA":
        return ed25519.Ed25519PrivateKey.generate()
    raise ValueError(f"unsupported signing algorithm {alg!r}")


def _import_joserfc(alg: str, der: bytes) -> ECKey | RSAKey | OKPKey:
    key_cls = {"ES256": ECKey, "PS256": RSAKey, "EdDSA": OKPKey}[alg]
    return key_cls.import_key(serialization.load_der_private_key(der, password=None))


def seal(kek: bytes, kid: str, plaintext: bytes) -> bytes:
    nonce = os.urandom(12)
    return nonce + AESGCM(kek).encrypt(nonce, plaintext, kid.encode())


def unseal(kek: bytes, kid: str, sealed: bytes) -> bytes:
    try:
        return AESGCM(kek).decrypt(sealed[:12], sealed[12:], kid.encode())
    except InvalidTag:
        raise SigningKeyUnavailable(
            f"signing key {kid} does not decrypt with the configured KEK"
        ) from None


def create_signing_key(
    session: Session, kek: bytes, alg: str = "ES256", status: str = "active"
) -> SigningKey:
    """Generate a key pair and store it sealed; the caller commits."""
    private = _generate_private_key(alg)
    der = private.private_bytes(
        serialization.Encoding.DER,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    jwk = _import_joserfc(alg, der)
    kid = jwk.thumbprint()
    public = jwk.as_dict(private=False)
    public.update({"kid": kid, "alg": alg, "use": "sig"})
    row = SigningKey(
        kid=kid,
        alg=alg,
        public_jwk=public,
        private_key_encrypted=seal(kek, kid, der),
        status=status,
        activated_at=utcnow() if status == "active" else None,
    )
    session.add(row)
    return row


@dataclass(frozen=True)
class LoadedKey:
    kid: str
    alg: str
    key: ECKey | RSAKey | OKPKey


def load_private(kek: bytes, row: SigningKey | Fetched) -> LoadedKey:
    return _load_private(kek, row.kid, row.alg, bytes(row.private_key_encrypted))


@lru_cache(maxsize=16)
def _load_private(kek: bytes, kid: str, alg: str, sealed: bytes) -> LoadedKey:
    """Decrypting and parsing a key costs more than signing with it; a kid's key never changes,
    so each process does it once per key (the cache key includes the ciphertext and KEK)."""
    der = unseal(kek, kid, sealed)
    return LoadedKey(kid, alg, _import_joserfc(alg, der))


_signing_key = SigningKey.__table__.c
#: Built once: every token issued reads it.
_ACTIVE = Prepared(
    select(_signing_key.kid, _signing_key.alg, _signing_key.private_key_encrypted).where(
        _signing_key.alg == bindparam("alg"), _signing_key.status == "active"
    )
)


def active_key(session: Session, kek: bytes, alg: str = "ES256") -> LoadedKey:
    """The key that signs now for ``alg``, made on first use so a new install just works.

    Two processes racing to make the first key both try the insert; the partial unique index
    on (alg) where active lets exactly one win, and the loser reads the winner's key.
    """
    found = _ACTIVE.rows(session, {"alg": alg})
    row: Any = found[0] if found else None
    if row is None:
        try:
            with session.begin_nested():
                row = create_signing_key(session, kek, alg)
            session.commit()
        except IntegrityError:
            session.rollback()
            row = session.scalars(
                select(SigningKey).where(SigningKey.alg == alg, SigningKey.status == "active")
            ).one()
    return load_private(kek, row)


def published_jwks(session: Session) -> dict[str, list[dict[str, Any]]]:
    rows = session.scalars(
        select(SigningKey)
        .where(SigningKey.status.in_(PUBLISHED_STATES))
        .order_by(SigningKey.created_at)
    )
    return {"keys": [row.public_jwk for row in rows]}


#: How long a new key is published before it signs: longer than the JWKS Cache-Control.
PUBLISH_BEFORE_SIGN = timedelta(seconds=120)


@dataclass(frozen=True)
class RotationStep:
    """What one ``casebroker keys rotate`` did, for the operator and the audit log."""

    action: str
    kid: str
    previous_kid: str | None = None
    wait_seconds: int = 0
    retired: tuple[str, ...] = ()


def retire_expired(session: Session, now: datetime | None = None) -> list[str]:
    """Keys whose every token has expired leave the JWKS."""
    now = now or utcnow()
    retired = []
    for row in session.scalars(select(SigningKey).where(SigningKey.status == "retiring")):
        until = row.retire_after
        if until is not None and (until if until.tzinfo else until.replace(tzinfo=UTC)) <= now:
            row.status = "retired"
            retired.append(row.kid)
    return retired


def rotate(session: Session, kek: bytes, alg: str, token_lifetime: int) -> RotationStep:
    """Publish-before-sign rotation, run twice: the first run publishes a ``next`` key; a run
    after ``PUBLISH_BEFORE_SIGN`` makes it sign and keeps the old key published (``retiring``)
    until every token it signed has expired (``token_lifetime`` seconds). Caller commits."""
    now = utcnow()
    retired = tuple(retire_expired(session, now))
    nxt = session.scalar(
        select(SigningKey).where(SigningKey.alg == alg, SigningKey.status == "next")
    )
    if nxt is None:
        row = create_signing_key(session, kek, alg, status="next")
        return RotationStep(
            "published",
            row.kid,
            wait_seconds=int(PUBLISH_BEFORE_SIGN.total_seconds()),
            retired=retired,
        )
    created = nxt.created_at if nxt.created_at.tzinfo else nxt.created_at.replace(tzinfo=UTC)
    remaining = (created + PUBLISH_BEFORE_SIGN - now).total_seconds()
    if remaining > 0:
        return RotationStep("waiting", nxt.kid, wait_seconds=int(remaining) + 1, retired=retired)
    current = session.scalar(
        select(SigningKey).where(SigningKey.alg == alg, SigningKey.status == "active")
    )
    previous = None
    if current is not None:
        current.status = "retiring"
        current.retire_after = now + timedelta(seconds=token_lifetime)
        previous = current.kid
        session.flush()
    nxt.status = "active"
    nxt.activated_at = now
    return RotationStep("activated", nxt.kid, previous_kid=previous, retired=retired)
