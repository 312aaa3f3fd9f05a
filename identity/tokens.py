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
from sqlalchemy import Uuid, bindparam, exists, select
from sqlalchemy.orm import Session

from broker.prepared import Fetched, Prepared
from identity.keys import PUBLISHED_STATES
from identity.models import Client, ReplayGuard, SigningKey
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
    #: Whether the client is registered as FAPI (None: no longer registered at all).
    client_fapi: bool | None = None
    claims: dict[str, Any] = field(default_factory=dict)


@lru_cache(maxsize=64)
def _public_key(kid: str, jwk_json: str) -> ECKey | RSAKey | OKPKey:
    """Parsing a JWK costs more than verifying with it; a kid's key material never changes."""
    return import_key(json.loads(jwk_json))


def _import(kid: str, jwk: dict[str, Any] | None) -> ECKey | RSAKey | OKPKey:
    if jwk is None:
        raise InvalidToken("The token is signed with an unknown key.")
    return _public_key(kid, json.dumps(jwk, sort_keys=True))


_keys = SigningKey.__table__.c
_families = TokenFamily.__table__.c
_guards = ReplayGuard.__table__.c
_clients = Client.__table__.c

_KEY_JWK = (
    select(_keys.public_jwk)
    .where(_keys.kid == bindparam("kid"), _keys.status.in_(PUBLISHED_STATES))
    .scalar_subquery()
)
_PUBLISHED_KEY = select(_KEY_JWK.label("jwk"))
#: Everything a token's validity depends on besides its own bytes, in one round trip: the
#: published key its ``kid`` names, whether its family or its ``jti`` is revoked, and whether
#: its client is registered for FAPI. Read fresh on every request (a revocation or a key
#: withdrawal committed by any process counts at once); built once, so only its execution
#: costs per request.
_TOKEN_STATE = Prepared(
    select(
        _KEY_JWK.label("jwk"),
        select(_families.revoked_at.is_(None))
        .where(_families.id == bindparam("gid", type_=Uuid))
        .scalar_subquery()
        .label("family_live"),
        exists()
        .where(_guards.namespace == "revoked_at", _guards.value == bindparam("jti"))
        .label("jti_revoked"),
        select(_clients.is_fapi)
        .where(_clients.id == bindparam("client_id"))
        .scalar_subquery()
        .label("client_fapi"),
    )
)


@lru_cache(maxsize=1024)
def _parse(token: str) -> tuple[dict[str, Any], dict[str, Any]]:
    """The header and the unverified claims. Memoised, as is :func:`_signed_claims`: a client
    presents the same token on every request for its lifetime, and both are pure functions of
    its bytes (and the key's), so a repeat costs a dictionary look-up instead of a parse and a
    signature check. Nothing that can change (expiry, revocation, the key's publication) is
    memoised: the caller checks those on every request."""
    try:
        compact = jws.extract_compact(token.encode())
        header = compact.headers()
        unverified = json.loads(compact.payload)
    except (JoseError, ValueError):
        raise InvalidToken("The access token is malformed.") from None
    if not isinstance(unverified, dict):
        raise InvalidToken("The access token is malformed.")
    return header, unverified


@lru_cache(maxsize=1024)
def _signed_claims(token: str, kid: str, jwk_json: str) -> dict[str, Any]:
    """The claims, once the signature checks out with this exact published key."""
    try:
        return jwt.decode(token, _public_key(kid, jwk_json), algorithms=ACCESS_TOKEN_ALGS).claims
    except (JoseError, ValueError) as exc:
        raise InvalidToken(f"The access token is not valid: {exc}.") from None


def _published_key(session: Session, kid: str) -> ECKey | RSAKey | OKPKey:
    return _import(kid, session.execute(_PUBLISHED_KEY, {"kid": kid}).scalar())


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
    header, unverified = _parse(token)
    if header.get("typ") != "at+jwt" or header.get("alg") not in ACCESS_TOKEN_ALGS:
        raise InvalidToken("The token is not an access token of this server.")
    kid = header.get("kid")
    if not isinstance(kid, str):
        raise InvalidToken("The access token names no key.")
    state = _token_state(session, kid, unverified)
    if state.jwk is None:
        raise InvalidToken("The token is signed with an unknown key.")
    claims = dict(_signed_claims(token, kid, json.dumps(state.jwk, sort_keys=True)))
    try:
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
    revoked = not state.family_live if claims.get("gid") is not None else state.jti_revoked
    if revoked:
        raise InvalidToken("The access token has been revoked.")
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
        client_fapi=state.client_fapi,
        claims=claims,
    )


def _token_state(session: Session, kid: str, unverified: dict[str, Any]) -> Fetched:
    """The rows the token's validity depends on, named by its claims before the signature is
    checked (only to know what to read: what decides is read from the verified claims).

    RFC 7009: a user's token dies with its family (code reuse, refresh reuse, revocation,
    withdrawn consent); a machine token is revoked by its ``jti``."""
    claims = unverified
    gid = None
    if claims.get("gid") is not None:
        try:
            gid = uuid.UUID(str(claims["gid"]))
        except ValueError:
            raise InvalidToken("The access token is not valid.") from None
    jti = claims.get("jti")
    client_id = claims.get("client_id")
    params = {
        "kid": kid,
        "gid": gid,
        "jti": jti if isinstance(jti, str) else "",
        "client_id": client_id if isinstance(client_id, str) else None,
    }
    return _TOKEN_STATE.rows(session, params)[0]
