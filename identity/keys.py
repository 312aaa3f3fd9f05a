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
from typing import Any

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from joserfc.jwk import ECKey, OKPKey, RSAKey
from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from broker.db import utcnow
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


def load_private(kek: bytes, row: SigningKey) -> LoadedKey:
    der = unseal(kek, row.kid, row.private_key_encrypted)
    key = _import_joserfc(row.alg, der)
    return LoadedKey(row.kid, row.alg, key)


def active_key(session: Session, kek: bytes, alg: str = "ES256") -> LoadedKey:
    """The key that signs now for ``alg``, made on first use so a new install just works.

    Two processes racing to make the first key both try the insert; the partial unique index
    on (alg) where active lets exactly one win, and the loser reads the winner's key.
    """
    row = session.scalar(
        select(SigningKey).where(SigningKey.alg == alg, SigningKey.status == "active")
    )
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
