"""Helpers for tests that act as an agency's client: keys, assertions, token requests."""

from __future__ import annotations

import secrets
import time
from typing import Any

from joserfc import jwt
from joserfc.jwk import ECKey, OKPKey, RSAKey

from broker.models import Agency
from identity.clients import register_client

ASSERTION_TYPE = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"


def new_key(alg: str = "ES256") -> ECKey | RSAKey | OKPKey:
    if alg == "ES256":
        key = ECKey.generate_key("P-256", {"alg": alg, "use": "sig"})
    elif alg in ("PS256", "RS256"):
        key = RSAKey.generate_key(2048, {"alg": alg, "use": "sig"})
    else:
        key = OKPKey.generate_key("Ed25519", {"alg": alg, "use": "sig"})
    key.ensure_kid()
    return key


def add_client(
    app,
    client_id: str = "tax-cms",
    agency_id: str = "tax",
    alg: str = "ES256",
    status: str = "active",
    key=None,
):
    """Register an agency (if new) and a client; return the client's private key."""
    key = key or new_key(alg)
    with app.extensions["casebroker.db"].session() as session:
        if session.get(Agency, agency_id) is None:
            session.add(Agency(id=agency_id, name=agency_id.title(), sector="test"))
        client = register_client(
            session, client_id, agency_id, client_id, [key.as_dict(private=False)]
        )
        client.status = status
    return key


def assertion(
    key,
    client_id: str = "tax-cms",
    aud: str = "https://broker.test",
    alg: str | None = None,
    **overrides: Any,
) -> str:
    now = int(time.time())
    claims = {
        "iss": client_id,
        "sub": client_id,
        "aud": aud,
        "iat": now,
        "exp": now + 60,
        "jti": secrets.token_urlsafe(16),
    }
    claims.update(overrides)
    claims = {k: v for k, v in claims.items() if v is not None}
    header = {"alg": alg or key.alg, "kid": key.kid}
    return jwt.encode(header, claims, key, algorithms=[header["alg"]])


def token_form(signed: str, **extra: str) -> dict[str, str]:
    form = {
        "grant_type": "client_credentials",
        "scope": "lookup",
        "client_assertion_type": ASSERTION_TYPE,
        "client_assertion": signed,
    }
    form.update(extra)
    return {k: v for k, v in form.items() if v is not None}
