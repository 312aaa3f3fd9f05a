"""The portal as a relying party of the broker's own OpenID provider.

The portal could read the provider's session directly, but it signs in like any other client:
authorization code with PKCE (S256), ``state`` and ``nonce``, private_key_jwt at the token
endpoint, and the ID token verified with python-jose against ``/jwks.json``, so the portal
holds only what the provider asserted, the same way an agency's portal would.

The portal runs inside the provider's app, so its back-channel calls (token, JWKS) go through
the app itself (httpx's WSGI transport): no network hop, no TLS set-up, same code path.

The client's private key is derived from the key-encryption key (HKDF), so every node signs
with the same key without storing it, and it changes when the key-encryption key is rotated
(run ``ensure_portal_client`` again to publish the new public half).
"""

from __future__ import annotations

import base64
import hashlib
import json
import secrets
import time
import uuid
from dataclasses import dataclass
from typing import Any

import httpx
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.hashes import SHA256
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from flask import Flask
from jose import JWTError
from jose import jwk as jose_jwk
from jose import jwt as jose_jwt
from sqlalchemy.orm import Session

from broker.models import Agency
from identity.clients import register_client
from identity.keys import seal, unseal
from identity.models import Client, ClientKey

CLIENT_ID = "casebroker-portal"
CLIENT_NAME = "casebroker citizen portal"
PORTAL_AGENCY = "casebroker"
SCOPE = "openid"
ALG = "ES256"
ASSERTION_TYPE = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"
COOKIE_PURPOSE = "portal-login"
#: How long a sign-in may take, from the portal's redirect to the provider's answer.
LOGIN_TTL = 900
_CURVE_ORDER = int("FFFFFFFF00000000FFFFFFFFFFFFFFFFBCE6FAADA7179E84F3B9CAC2FC632551", 16)


class LoginFailed(Exception):
    """The sign-in did not complete; ``reason`` is a short code for the log and the page."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def portal_key(kek: bytes) -> ec.EllipticCurvePrivateKey:
    """The portal's P-256 client key, the same on every node that has the key-encryption key."""
    material = HKDF(SHA256(), 48, salt=None, info=b"casebroker portal client key").derive(kek)
    scalar = int.from_bytes(material, "big") % (_CURVE_ORDER - 1) + 1
    return ec.derive_private_key(scalar, ec.SECP256R1())


def public_jwk(kek: bytes) -> dict[str, Any]:
    numbers = portal_key(kek).public_key().public_numbers()
    x, y = _b64(numbers.x.to_bytes(32, "big")), _b64(numbers.y.to_bytes(32, "big"))
    thumb = _b64(
        hashlib.sha256(f'{{"crv":"P-256","kty":"EC","x":"{x}","y":"{y}"}}'.encode()).digest()
    )
    return {"kty": "EC", "crv": "P-256", "x": x, "y": y, "kid": thumb, "alg": ALG, "use": "sig"}


def redirect_uri(issuer: str) -> str:
    return issuer.rstrip("/") + "/portal/callback"


def ensure_portal_client(session: Session, issuer: str, kek: bytes) -> Client:
    """Register (or bring up to date) the portal's client; the caller commits.

    Idempotent: the demo and deployments run it at start-up. A changed issuer or
    key-encryption key updates the redirect URI and the public key in place.
    """
    if session.get(Agency, PORTAL_AGENCY) is None:
        session.add(Agency(id=PORTAL_AGENCY, name="casebroker", sector="broker"))
        session.flush()
    jwk = public_jwk(kek)
    client = session.get(Client, CLIENT_ID)
    if client is None:
        return register_client(
            session,
            CLIENT_ID,
            PORTAL_AGENCY,
            CLIENT_NAME,
            [jwk],
            scope=SCOPE,
            is_fapi=False,
            redirect_uris=[redirect_uri(issuer)],
            grant_types=["authorization_code"],
        )
    client.redirect_uris = [redirect_uri(issuer)]
    if [k.kid for k in client.keys] != [jwk["kid"]]:
        client.keys.clear()
        session.flush()
        thumbprint = jwk["kid"]
        client.keys.append(ClientKey(kid=jwk["kid"], thumbprint=thumbprint, jwk=jwk))
    return client


@dataclass(frozen=True)
class PendingLogin:
    """What the browser keeps between the redirect and the callback.

    It cannot live in the session: logging in at the provider starts a new session (no
    fixation) and keeps nothing of the old one. It travels instead in a short-lived cookie
    sealed (AES-GCM) with a key derived from the key-encryption key, so every node can open
    it, nobody can read the PKCE verifier or nonce in it, and nobody can forge one.
    """

    state: str
    nonce: str
    verifier: str

    @classmethod
    def new(cls) -> PendingLogin:
        return cls(secrets.token_urlsafe(32), secrets.token_urlsafe(32), secrets.token_urlsafe(64))

    def seal(self, kek: bytes, next_url: str) -> str:
        body = json.dumps([self.state, self.nonce, self.verifier, next_url, int(time.time())])
        return _b64(seal(_cookie_key(kek), COOKIE_PURPOSE, body.encode()))

    @classmethod
    def open(cls, kek: bytes, cookie: str) -> tuple[PendingLogin, str]:
        """Raises ``LoginFailed`` for a missing, altered or stale cookie."""
        try:
            raw = base64.urlsafe_b64decode(cookie + "=" * (-len(cookie) % 4))
            state, nonce, verifier, next_url, issued = json.loads(
                unseal(_cookie_key(kek), COOKIE_PURPOSE, raw)
            )
        except Exception:
            raise LoginFailed("state") from None
        if not 0 <= time.time() - issued <= LOGIN_TTL:
            raise LoginFailed("expired")
        return cls(state, nonce, verifier), next_url

    @property
    def challenge(self) -> str:
        return _b64(hashlib.sha256(self.verifier.encode()).digest())

    def authorization_params(self, issuer: str, locale: str) -> dict[str, str]:
        return {
            "response_type": "code",
            "client_id": CLIENT_ID,
            "redirect_uri": redirect_uri(issuer),
            "scope": SCOPE,
            "state": self.state,
            "nonce": self.nonce,
            "code_challenge": self.challenge,
            "code_challenge_method": "S256",
            "ui_locales": locale,
        }


def _cookie_key(kek: bytes) -> bytes:
    return HKDF(SHA256(), 32, salt=None, info=b"casebroker portal login cookie").derive(kek)


def _assertion(kek: bytes, issuer: str) -> str:
    now = int(time.time())
    claims = {
        "iss": CLIENT_ID,
        "sub": CLIENT_ID,
        "aud": issuer,
        "jti": str(uuid.uuid4()),
        "iat": now,
        "exp": now + 60,
    }
    pem = portal_key(kek).private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    return jose_jwt.encode(
        claims, pem.decode(), algorithm=ALG, headers={"kid": public_jwk(kek)["kid"]}
    )


def redeem(app: Flask, pending: PendingLogin, code: str) -> dict[str, Any]:
    """Exchange the code and verify the ID token; returns its claims."""
    issuer = app.config["ISSUER"]
    kek = app.config["KEY_ENCRYPTION_KEY_BYTES"]
    transport = httpx.WSGITransport(app=app)
    with httpx.Client(transport=transport, base_url=issuer, timeout=10) as http:
        response = http.post(
            "/token",
            data={
                "grant_type": "authorization_code",
                "code": code,
                "redirect_uri": redirect_uri(issuer),
                "code_verifier": pending.verifier,
                "client_assertion_type": ASSERTION_TYPE,
                "client_assertion": _assertion(kek, issuer),
            },
        )
        if response.status_code != 200:
            raise LoginFailed("token")
        tokens = response.json()
        jwks = http.get("/jwks.json").json()
    return verify_id_token(tokens.get("id_token", ""), jwks, issuer, pending.nonce, tokens)


def verify_id_token(
    id_token: str, jwks: dict[str, Any], issuer: str, nonce: str, tokens: dict[str, Any]
) -> dict[str, Any]:
    """OIDC Core 3.1.3.7: signature by a published key, iss, aud, azp, exp, nonce, at_hash."""
    try:
        header = jose_jwt.get_unverified_header(id_token)
        key = next(k for k in jwks.get("keys", []) if k.get("kid") == header.get("kid"))
        alg = header.get("alg")
        if alg not in ("ES256", "PS256") or key.get("alg", alg) != alg:
            raise LoginFailed("id_token")
        claims = jose_jwt.decode(
            id_token,
            jose_jwk.construct(key, alg).to_dict(),
            algorithms=[alg],
            audience=CLIENT_ID,
            issuer=issuer,
            access_token=tokens.get("access_token"),
        )
    except (JWTError, StopIteration, KeyError, ValueError):
        raise LoginFailed("id_token") from None
    if not secrets.compare_digest(str(claims.get("nonce", "")), nonce):
        raise LoginFailed("nonce")
    if claims.get("azp", CLIENT_ID) != CLIENT_ID or not claims.get("sub"):
        raise LoginFailed("id_token")
    return claims
