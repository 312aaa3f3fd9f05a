"""The OAuth 2.0 authorization server on Authlib: client_credentials with private_key_jwt.

Authlib does the protocol; this module only supplies storage (``query_client``,
``save_token``) and the broker's rules for client assertions: FAPI 2.0 algorithms only,
``aud`` the issuer or token endpoint, a short ``exp``, and ``jti`` single use in every
process (RFC 7523 section 3).
"""

from __future__ import annotations

import hashlib
import time
from datetime import UTC, datetime, timedelta
from typing import Any

from authlib.integrations.flask_oauth2 import AuthorizationServer
from authlib.oauth2.rfc6749 import ClientMixin, InvalidClientError, InvalidScopeError, grants
from authlib.oauth2.rfc7523 import JWTBearerClientAssertion
from authlib.oauth2.rfc9068 import JWTBearerTokenGenerator
from flask import Flask, current_app, g
from joserfc import jwt
from joserfc.errors import JoseError
from joserfc.jwk import KeySet
from sqlalchemy import and_, bindparam, select

from broker.db import get_autocommit_connection, get_session
from broker.models import Agency
from broker.prepared import Fetched, Prepared
from identity import replay
from identity.grants import (
    AuthorizationCodeGrant,
    RefreshTokenGrant,
    check_dpop,
)
from identity.keys import active_key
from identity.models import SUPPORTED_SIGNING_ALGS, Client, ClientKey

TOKEN_PATH = "/token"  # noqa: S105 (a path, not a secret)
PAR_PATH = "/par"
#: The audience of access tokens: the exchange API is the one resource server.
RESOURCE_PATH = "/exchange/v1"


def issuer() -> str:
    return current_app.config["ISSUER"]


class OAuthClient(ClientMixin):
    """Authlib's view of a registered client; reads only what the protocol needs."""

    def __init__(self, row: Fetched, jwks: list[dict[str, Any]]) -> None:
        self.client_id = row.id
        self.agency_id = row.agency_id
        self.scope = row.scope
        self.grant_types = list(row.grant_types)
        self.auth_method = row.token_endpoint_auth_method
        self.is_fapi = bool(row.is_fapi)
        self.jwks = {"keys": jwks}

    def get_client_id(self) -> str:
        return self.client_id

    def get_default_redirect_uri(self) -> None:
        return None

    def get_allowed_scope(self, scope: str | None) -> str:
        allowed = set(self.scope.split())
        if not scope:
            return " ".join(sorted(allowed))
        return " ".join(s for s in scope.split() if s in allowed)

    def check_redirect_uri(self, redirect_uri: str) -> bool:
        return False

    def check_client_secret(self, client_secret: str) -> bool:
        return False

    def check_endpoint_auth_method(self, method: str, endpoint: str) -> bool:
        return method == self.auth_method

    def check_response_type(self, response_type: str) -> bool:
        return False

    def check_grant_type(self, grant_type: str) -> bool:
        return grant_type in self.grant_types


_client = Client.__table__.c
_client_key = ClientKey.__table__.c
_agency = Agency.__table__.c

#: An active client of an active agency, a row per active key (one with no key when it has
#: none): built once, as every token request runs it.
_ACTIVE_CLIENT = Prepared(
    select(
        _client.id,
        _client.agency_id,
        _client.scope,
        _client.grant_types,
        _client.token_endpoint_auth_method,
        _client.is_fapi,
        _client_key.jwk,
    )
    .join(Agency.__table__, _agency.id == _client.agency_id)
    .outerjoin(
        ClientKey.__table__,
        and_(_client_key.client_id == _client.id, _client_key.status == "active"),
    )
    .where(
        _client.id == bindparam("client_id"),
        _client.status == "active",
        _agency.status == "active",
    )
    .order_by(_client_key.id)
)


def query_client(client_id: str) -> OAuthClient | None:
    """Active clients of active agencies only; a disabled one is as good as unknown."""
    if not isinstance(client_id, str) or len(client_id) > 128 or not client_id.isprintable():
        return None
    rows = _ACTIVE_CLIENT.rows(get_session(), {"client_id": client_id})
    if not rows:
        return None
    return OAuthClient(rows[0], [row.jwk for row in rows if row.jwk is not None])


def save_token(token: dict[str, Any], request: Any) -> None:
    """Access tokens are self-contained signed JWTs verified against the JWKS; the
    client_credentials grant issues no refresh token, so there is nothing to store."""


class PrivateKeyJWT(JWTBearerClientAssertion):
    """private_key_jwt (OIDC Core 9, RFC 7523 section 2.2) with the broker's stricter rules."""

    CLIENT_AUTH_METHOD = "private_key_jwt"

    def __init__(self) -> None:
        super().__init__(validate_jti=True, leeway=0)

    def get_audiences(self) -> list[str]:
        """FAPI 2.0 5.3.2.1: the issuer; the endpoint URLs are accepted too (RFC 7523 3)."""
        return [issuer(), issuer() + TOKEN_PATH, issuer() + PAR_PATH]

    def extract_assertion(self, assertion: str) -> tuple[dict[str, Any], dict[str, Any]]:
        headers, claims = super().extract_assertion(assertion)
        if headers.get("alg") not in SUPPORTED_SIGNING_ALGS:
            raise InvalidClientError(
                description="Client assertions must be signed with ES256, PS256 or EdDSA."
            )
        return headers, claims

    def resolve_client_public_key(self, client: OAuthClient) -> KeySet:
        g.asserting_client = client  # for verify_claims, which Authlib calls without it
        return KeySet.import_key_set(client.jwks)

    def process_assertion_claims(self, assertion: str, resolve_key: Any) -> dict[str, Any]:
        try:
            token = jwt.decode(assertion, resolve_key, algorithms=list(SUPPORTED_SIGNING_ALGS))
        except (JoseError, ValueError) as exc:
            raise InvalidClientError(description="The client assertion is not valid.") from exc
        self.verify_claims(token.claims)
        return token.claims

    def verify_claims(self, claims: Any) -> None:
        config = current_app.config
        skew, max_age = config["CLOCK_SKEW"], config["CLIENT_ASSERTION_MAX_AGE"]
        now = time.time()
        for name in ("exp", "iat", "nbf"):
            if name in claims and not isinstance(claims[name], int | float):
                raise InvalidClientError(description=f"Invalid claim: {name!r}")
        exp = claims.get("exp")
        if exp is None:
            raise InvalidClientError(description="Missing claim: 'exp'")
        if exp + skew < now:
            raise InvalidClientError(description="The client assertion has expired.")
        if exp - now > max_age + skew:
            raise InvalidClientError(
                description=f"The client assertion lives too long (at most {max_age} s)."
            )
        if "iat" in claims and (claims["iat"] > now + skew or exp - claims["iat"] > max_age):
            raise InvalidClientError(description="Invalid claim: 'iat'")
        if "nbf" in claims and claims["nbf"] > now + skew:
            raise InvalidClientError(description="The client assertion is not yet valid.")
        self.leeway = skew
        super().verify_claims(claims)
        client = g.get("asserting_client")
        if (
            client is not None
            and client.is_fapi
            and claims.get("aud") not in (issuer(), [issuer()])
        ):
            # FAPI 2.0 Security Profile 5.3.2.1: the audience is the issuer, nothing else.
            raise InvalidClientError(description="The client assertion aud must be the issuer.")

    def validate_jti(self, claims: dict[str, Any], jti: Any) -> bool:
        """Burn the ``jti``, committed at once on the request's autocommitted connection, so a
        replay fails even when this request fails later, and in every process sharing the
        database."""
        if not isinstance(jti, str) or not 0 < len(jti) <= 255:
            return False
        digest = hashlib.sha256(f"{claims['sub']}\0{jti}".encode()).hexdigest()
        expires = datetime.fromtimestamp(claims["exp"], UTC) + timedelta(
            seconds=current_app.config["CLOCK_SKEW"]
        )
        return replay.burn(get_autocommit_connection(), "client_assertion", digest, expires)


class ClientCredentialsGrant(grants.ClientCredentialsGrant):
    TOKEN_ENDPOINT_AUTH_METHODS = ["private_key_jwt"]

    def validate_token_request(self) -> None:
        """RFC 9449: a DPoP proof binds the token; FAPI clients must send one."""
        super().validate_token_request()
        client = self.request.client
        check_dpop(client.client_id, client.is_fapi)

    def validate_requested_scope(self) -> None:
        """A scope the client was not registered for is an error, not silently dropped
        (RFC 6749 section 5.2, ``invalid_scope``)."""
        requested = set((self.request.payload.scope or "").split())
        if not requested <= set(self.request.client.scope.split()):
            raise InvalidScopeError()
        super().validate_requested_scope()


class AccessTokenGenerator(JWTBearerTokenGenerator):
    """RFC 9068 access tokens, ES256, with ``kid`` in the header and the agency as a claim."""

    def __init__(self) -> None:
        super().__init__(issuer=None, alg="ES256")

    def __call__(self, *args: Any, **kwargs: Any) -> dict[str, Any]:
        self.issuer = issuer()
        return super().__call__(*args, **kwargs)

    def _get_expires_in(self, client: Any, grant_type: str) -> int:
        return int(current_app.config["ACCESS_TOKEN_TTL"])

    def get_jwks(self) -> KeySet:
        loaded = active_key(get_session(), current_app.config["KEY_ENCRYPTION_KEY_BYTES"])
        return KeySet([loaded.key])

    def get_audiences(self, client: Any, user: Any, scope: str) -> str:
        return issuer() + RESOURCE_PATH

    def get_extra_claims(
        self, client: OAuthClient, grant_type: str, user: Any, scope: str
    ) -> dict[str, Any]:
        claims: dict[str, Any] = {"agency": client.agency_id}
        jkt = g.get("dpop_jkt")
        if jkt:
            claims["cnf"] = {"jkt": jkt}
        return claims

    def generate(self, *args: Any, **kwargs: Any) -> dict[str, Any]:
        token = super().generate(*args, **kwargs)
        if g.get("dpop_jkt"):
            token["token_type"] = "DPoP"  # noqa: S105 (RFC 9449 5: the token type)
        return token


def create_server(app: Flask) -> AuthorizationServer:
    server = AuthorizationServer(app, query_client=query_client, save_token=save_token)
    server.register_client_auth_method(PrivateKeyJWT.CLIENT_AUTH_METHOD, PrivateKeyJWT())
    server.register_grant(ClientCredentialsGrant)
    server.register_grant(AuthorizationCodeGrant)
    server.register_grant(RefreshTokenGrant)
    server.register_token_generator("default", AccessTokenGenerator())
    return server
