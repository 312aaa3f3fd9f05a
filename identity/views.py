"""HTTP endpoints of the authorization server: token, JWKS and metadata (RFC 8414)."""

from __future__ import annotations

from typing import Any

from flask import Blueprint, current_app, jsonify
from flask.typing import ResponseReturnValue

from broker.db import get_session
from identity.keys import active_key, published_jwks
from identity.models import SUPPORTED_SIGNING_ALGS
from identity.server import TOKEN_PATH

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
    """Only what is implemented is advertised (RFC 8414 section 2)."""
    issuer = current_app.config["ISSUER"]
    algs = list(SUPPORTED_SIGNING_ALGS)
    return {
        "issuer": issuer,
        "token_endpoint": issuer + TOKEN_PATH,
        "jwks_uri": issuer + "/jwks.json",
        "grant_types_supported": ["client_credentials"],
        "token_endpoint_auth_methods_supported": ["private_key_jwt"],
        "token_endpoint_auth_signing_alg_values_supported": algs,
        "scopes_supported": ["lookup"],
        "response_types_supported": [],
    }


@bp.get("/.well-known/oauth-authorization-server")
def oauth_metadata() -> ResponseReturnValue:
    return jsonify(server_metadata())


@bp.get("/.well-known/openid-configuration")
def openid_configuration() -> ResponseReturnValue:
    return jsonify(server_metadata())
