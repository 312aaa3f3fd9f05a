"""Verifying the broker's own access tokens at the resource server (the exchange API).

RFC 9068 section 4: the header ``typ`` must be ``at+jwt``, the signature must verify with a
published key named by ``kid``, ``iss`` must be the issuer, ``aud`` the exchange, ``exp`` in the
future. RFC 6750 section 3.1 error codes.
"""

from __future__ import annotations

import json
import time
import uuid
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any

from joserfc import jws, jwt
from joserfc.errors import JoseError
from joserfc.jwk import ECKey, OKPKey, RSAKey, import_key
from sqlalchemy import select
from sqlalchemy.orm import Session

from identity.keys import PUBLISHED_STATES
from identity.models import ReplayGuard, SigningKey
from identity.oidc_models import TokenFamily

ACCESS_TOKEN_ALGS = ["ES256"]
MAX_TOKEN_LENGTH = 8192


class InvalidToken(Exception):
    """RFC 6750 ``invalid_token``: missing, malformed, expired, or not ours."""

    error = "invalid_token"
    status = 401


class InsufficientScope(InvalidToken):
    """RFC 6750 ``insufficient_scope``: a valid token without the scope the endpoint needs."""

    error = "insufficient_scope"
    status = 403


@dataclass(frozen=True)
class AccessToken:
    client_id: str
    agency: str
    scopes: frozenset[str]
    officer: str | None
    officer_roles: tuple[str, ...]
    jti: str
    expires_at: int
    #: RFC 9449 confirmation (``{"jkt": ...}``) when the token is DPoP-bound.
    cnf: dict[str, Any] | None = None
    #: The token family (authorization code lineage) of a user's token, for revocation.
    grant_id: str | None = None
    claims: dict[str, Any] = field(default_factory=dict)


@lru_cache(maxsize=64)
def _public_key(kid: str, jwk_json: str) -> ECKey | RSAKey | OKPKey:
    """Parsing a JWK costs more than verifying with it; a kid's key material never changes."""
    return import_key(json.loads(jwk_json))


def _published_key(session: Session, kid: str) -> ECKey | RSAKey | OKPKey:
    row = session.scalar(
        select(SigningKey).where(SigningKey.kid == kid, SigningKey.status.in_(PUBLISHED_STATES))
    )
    if row is None:
        raise InvalidToken("The token is signed with an unknown key.")
    return _public_key(kid, json.dumps(row.public_jwk, sort_keys=True))


def verify_access_token(
    session: Session,
    token: str,
    issuer: str,
    audience: str,
    required_scope: str | None,
    leeway: int = 30,
) -> AccessToken:
    """Check a bearer token and return what the exchange needs to know about the caller."""
    if not token or len(token) > MAX_TOKEN_LENGTH:
        raise InvalidToken("The access token is missing or too long.")
    try:
        header = jws.extract_compact(token.encode()).headers()
    except (JoseError, ValueError):
        raise InvalidToken("The access token is malformed.") from None
    if header.get("typ") != "at+jwt" or header.get("alg") not in ACCESS_TOKEN_ALGS:
        raise InvalidToken("The token is not an access token of this server.")
    kid = header.get("kid")
    if not isinstance(kid, str):
        raise InvalidToken("The access token names no key.")
    key = _published_key(session, kid)
    try:
        claims: dict[str, Any] = jwt.decode(token, key, algorithms=ACCESS_TOKEN_ALGS).claims
        jwt.JWTClaimsRegistry(
            leeway=leeway,
            iss={"essential": True, "value": issuer},
            aud={"essential": True, "value": audience},
            exp={"essential": True},
            client_id={"essential": True},
            agency={"essential": True},
        ).validate(claims)
    except (JoseError, ValueError) as exc:
        raise InvalidToken(f"The access token is not valid: {exc}.") from None
    if claims["exp"] < time.time() - leeway:
        raise InvalidToken("The access token has expired.")
    _check_not_revoked(session, claims)
    scopes = frozenset(str(claims.get("scope", "")).split())
    if required_scope is not None and required_scope not in scopes:
        raise InsufficientScope(f"The token lacks the {required_scope!r} scope.")
    cnf = claims.get("cnf")
    roles = claims.get("roles", ())
    return AccessToken(
        client_id=claims["client_id"],
        agency=claims["agency"],
        scopes=scopes,
        officer=claims.get("officer"),
        officer_roles=tuple(str(r) for r in roles) if isinstance(roles, list) else (),
        jti=str(claims.get("jti", "")),
        expires_at=int(claims["exp"]),
        cnf=cnf if isinstance(cnf, dict) else None,
        grant_id=claims.get("gid"),
        claims=claims,
    )


def _check_not_revoked(session: Session, claims: dict[str, Any]) -> None:
    """RFC 7009: a user's token dies with its family (code reuse, refresh reuse, revocation,
    withdrawn consent); a machine token is revoked by its ``jti``."""
    gid = claims.get("gid")
    if gid is not None:
        try:
            family = session.get(TokenFamily, uuid.UUID(str(gid)))
        except ValueError:
            raise InvalidToken("The access token is not valid.") from None
        if family is None or family.revoked_at is not None:
            raise InvalidToken("The access token has been revoked.")
        return
    jti = claims.get("jti")
    if isinstance(jti, str) and session.get(ReplayGuard, ("revoked_at", jti)) is not None:
        raise InvalidToken("The access token has been revoked.")
