"""HTTP endpoints of the authorization server: token, JWKS and metadata (RFC 8414)."""

from __future__ import annotations

from typing import Any

from flask import Blueprint, current_app, jsonify
from flask.typing import ResponseReturnValue

from broker.db import get_session
from identity.accounts import ACR_VALUES
from identity.endpoints import (
    END_SESSION_PATH,
    INTROSPECTION_PATH,
    REVOCATION_PATH,
    USERINFO_PATH,
)
from identity.keys import active_key, published_jwks
from identity.models import SUPPORTED_SIGNING_ALGS
from identity.server import PAR_PATH, TOKEN_PATH

bp = Blueprint("identity", __name__)


@bp.post(TOKEN_PATH)
def token() -> ResponseReturnValue:
    """RFC 6749 section 3.2; errors are section 5.2 JSON, rendered by Authlib."""
    return current_app.extensions["casebroker.oauth"].create_token_response()


@bp.get("/jwks.json")
def jwks() -> ResponseReturnValue:
    session = get_session()
    document = published_jwks(session)
    if not document["keys"]:
        active_key(session, current_app.config["KEY_ENCRYPTION_KEY_BYTES"])
        document = published_jwks(session)
    response = jsonify(document)
    response.headers["Cache-Control"] = "public, max-age=60"
    return response


def server_metadata() -> dict[str, Any]:
    """Only what is implemented is advertised (RFC 8414 section 2, OIDC Discovery 3)."""
    issuer = current_app.config["ISSUER"]
    algs = list(SUPPORTED_SIGNING_ALGS)
    return {
        "issuer": issuer,
        "authorization_endpoint": issuer + "/authorize",
        "pushed_authorization_request_endpoint": issuer + PAR_PATH,
        "require_pushed_authorization_requests": False,
        "token_endpoint": issuer + TOKEN_PATH,
        "userinfo_endpoint": issuer + USERINFO_PATH,
        "revocation_endpoint": issuer + REVOCATION_PATH,
        "introspection_endpoint": issuer + INTROSPECTION_PATH,
        "end_session_endpoint": issuer + END_SESSION_PATH,
        "jwks_uri": issuer + "/jwks.json",
        "grant_types_supported": ["authorization_code", "refresh_token", "client_credentials"],
        "response_types_supported": ["code"],
        "response_modes_supported": ["query"],
        "subject_types_supported": ["public", "pairwise"],
        "id_token_signing_alg_values_supported": algs,
        "token_endpoint_auth_methods_supported": ["private_key_jwt"],
        "token_endpoint_auth_signing_alg_values_supported": algs,
        "revocation_endpoint_auth_methods_supported": ["private_key_jwt"],
        "revocation_endpoint_auth_signing_alg_values_supported": algs,
        "introspection_endpoint_auth_methods_supported": ["private_key_jwt"],
        "introspection_endpoint_auth_signing_alg_values_supported": algs,
        "code_challenge_methods_supported": ["S256"],
        "dpop_signing_alg_values_supported": algs,
        "authorization_response_iss_parameter_supported": True,
        "scopes_supported": ["openid", "profile", "lookup", "audit"],
        "claims_supported": [
            "sub",
            "iss",
            "aud",
            "exp",
            "iat",
            "auth_time",
            "nonce",
            "acr",
            "amr",
            "azp",
            "sid",
            "name",
            "given_name",
            "family_name",
            "officer",
            "agency",
            "roles",
        ],
        "acr_values_supported": list(ACR_VALUES),
        "prompt_values_supported": ["none", "login", "consent"],
        "claims_parameter_supported": False,
        "request_parameter_supported": False,
        "request_uri_parameter_supported": False,
        "ui_locales_supported": ["en", "fr"],
    }


@bp.get("/.well-known/oauth-authorization-server")
def oauth_metadata() -> ResponseReturnValue:
    return jsonify(server_metadata())


@bp.get("/.well-known/openid-configuration")
def openid_configuration() -> ResponseReturnValue:
    return jsonify(server_metadata())
