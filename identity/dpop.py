"""DPoP proofs (RFC 9449), checked at the token endpoint and by the exchange API.

Written here because Authlib has no DPoP support: section 4.3 checks (``typ`` ``dpop+jwt``, an
asymmetric FAPI algorithm, a public ``jwk`` in the header that verifies the signature, ``htm``
and ``htu`` matching the request, a fresh ``iat``, ``ath`` for the access token at a resource
server), the JWK thumbprint (RFC 7638) that tokens are bound to, ``jti`` single use in every
process through the replay guard, and optional server nonces (section 8) that every process
can check without shared state: an HMAC of the current five-minute window.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from joserfc import jws
from joserfc.errors import JoseError
from joserfc.jwk import ECKey, OKPKey, RSAKey, import_key
from sqlalchemy.engine import Connection

from identity import replay
from identity.models import SUPPORTED_SIGNING_ALGS

MAX_PROOF_LENGTH = 4096
PROOF_MAX_AGE = 60
NONCE_WINDOW = 300
PRIVATE_MEMBERS = {"d", "p", "q", "dp", "dq", "qi", "k"}


class DPoPError(Exception):
    """``invalid_dpop_proof`` (RFC 9449 section 5.10 / 7.1), or ``use_dpop_nonce``."""

    def __init__(self, description: str, error: str = "invalid_dpop_proof") -> None:
        super().__init__(description)
        self.error = error
        self.description = description


@dataclass(frozen=True)
class Proof:
    jkt: str
    jti: str


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def access_token_hash(token: str) -> str:
    """``ath``: base64url of the SHA-256 of the ASCII access token (section 4.2)."""
    return b64url(hashlib.sha256(token.encode("ascii")).digest())


def normalize_htu(url: str) -> str:
    """Section 4.3 item 9: compare without query and fragment."""
    parts = urlsplit(url)
    return urlunsplit((parts.scheme.lower(), parts.netloc.lower(), parts.path, "", ""))


def current_nonce(secret: str, now: float | None = None, offset: int = 0) -> str:
    window = int((time.time() if now is None else now) // NONCE_WINDOW) + offset
    mac = hmac.new(secret.encode(), f"dpop-nonce:{window}".encode(), hashlib.sha256).digest()
    return b64url(mac[:18])


def nonce_is_valid(secret: str, nonce: Any) -> bool:
    if not isinstance(nonce, str):
        return False
    return any(hmac.compare_digest(nonce, current_nonce(secret, offset=o)) for o in (0, -1))


def thumbprint(jwk: dict[str, Any]) -> str:
    return import_key(jwk).thumbprint()


def verify_proof(
    proof: str | None,
    *,
    method: str,
    url: str,
    burns: Connection,
    access_token: str | None = None,
    nonce_secret: str | None = None,
    skew: int = 30,
) -> Proof:
    """Check one DPoP proof and burn its ``jti`` on ``burns`` (autocommitted); raises
    ``DPoPError``."""
    if not proof:
        raise DPoPError("A DPoP proof is required.")
    if len(proof) > MAX_PROOF_LENGTH or "," in proof:
        raise DPoPError("The DPoP header must hold exactly one proof.")
    try:
        compact = jws.extract_compact(proof.encode())
        header = compact.headers()
    except (JoseError, ValueError):
        raise DPoPError("The DPoP proof is not a JWS.") from None
    if header.get("typ") != "dpop+jwt":
        raise DPoPError("The DPoP proof must have typ dpop+jwt.")
    alg = header.get("alg")
    if alg not in SUPPORTED_SIGNING_ALGS:
        raise DPoPError("The DPoP proof must be signed with ES256, PS256 or EdDSA.")
    jwk = header.get("jwk")
    if not isinstance(jwk, dict) or PRIVATE_MEMBERS & set(jwk) or jwk.get("kty") == "oct":
        raise DPoPError("The DPoP proof must carry a public key in its jwk header.")
    try:
        key: ECKey | RSAKey | OKPKey = import_key(jwk)
        verified = jws.deserialize_compact(proof, key, algorithms=[alg])
    except (JoseError, ValueError, TypeError):
        raise DPoPError("The DPoP proof signature does not verify.") from None
    try:
        claims = json.loads(verified.payload)
    except ValueError:
        raise DPoPError("The DPoP proof payload is not JSON.") from None
    if not isinstance(claims, dict):
        raise DPoPError("The DPoP proof payload is not a JSON object.")
    jti, htm, htu, iat = (claims.get(k) for k in ("jti", "htm", "htu", "iat"))
    if not isinstance(jti, str) or not 8 <= len(jti) <= 255:
        raise DPoPError("The DPoP proof needs a jti.")
    if htm != method:
        raise DPoPError("The DPoP proof is for another HTTP method.")
    if not isinstance(htu, str) or normalize_htu(htu) != normalize_htu(url):
        raise DPoPError("The DPoP proof is for another URL.")
    now = time.time()
    if not isinstance(iat, int | float) or isinstance(iat, bool):
        raise DPoPError("The DPoP proof needs an iat.")
    if iat > now + skew or iat < now - PROOF_MAX_AGE - skew:
        raise DPoPError("The DPoP proof is too old or from the future.")
    if access_token is not None and claims.get("ath") != access_token_hash(access_token):
        raise DPoPError("The DPoP proof is not for this access token.")
    if nonce_secret is not None and not nonce_is_valid(nonce_secret, claims.get("nonce")):
        raise DPoPError("A fresh DPoP nonce is required.", error="use_dpop_nonce")
    jkt = key.thumbprint()
    _burn(burns, jkt, jti, now + PROOF_MAX_AGE + 2 * skew)
    return Proof(jkt, jti)


def _burn(burns: Connection, jkt: str, jti: str, until: float) -> None:
    """Section 11.1: a proof is single use, in every process sharing the database."""
    digest = hashlib.sha256(f"{jkt}\0{jti}".encode()).hexdigest()
    expires = datetime.fromtimestamp(until, UTC) + timedelta(seconds=1)
    if not replay.burn(burns, "dpop", digest, expires):
        raise DPoPError("The DPoP proof has been used before.")
