"""UserInfo (OIDC Core 5.3), revocation (RFC 7009), introspection (RFC 7662), RP-initiated
logout (OIDC RP-Initiated Logout 1.0)."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import urlencode, urlsplit

from authlib.oauth2.rfc6749 import OAuth2Error
from flask import Blueprint, Response, current_app, jsonify, redirect, render_template, request
from flask import session as web_session
from flask.typing import ResponseReturnValue
from joserfc import jws, jwt
from joserfc.errors import JoseError
from sqlalchemy.exc import IntegrityError

from broker.db import get_autocommit_connection, get_session
from identity import provider
from identity.accounts import holder_of
from identity.dpop import DPoPError, verify_proof
from identity.events import record_event
from identity.grants import settings
from identity.models import Account, Client, ReplayGuard
from identity.oidc_models import RefreshToken, TokenFamily
from identity.pages import allow_form_target, check_csrf, page_headers
from identity.tokens import InvalidToken, _published_key, verify_access_token

bp = Blueprint("identity_endpoints", __name__, template_folder="templates")
USERINFO_PATH = "/userinfo"
REVOCATION_PATH = "/revoke"
INTROSPECTION_PATH = "/introspect"
END_SESSION_PATH = "/logout"


def _bearer_error(error: str, description: str, status: int, scheme: str = "DPoP") -> Response:
    response = jsonify(error=error, error_description=description)
    response.status_code = status
    response.headers["WWW-Authenticate"] = (
        f'{scheme} error="{error}", algs="ES256 PS256 EdDSA"'
        if scheme == "DPoP"
        else f'Bearer error="{error}"'
    )
    response.headers["Cache-Control"] = "no-store"
    return response


def check_bound_token(
    token: str, scheme: str, cnf: dict[str, Any] | None, path: str
) -> tuple[str, str] | None:
    """RFC 9449 7.1: a DPoP-bound token needs a matching proof; returns an error or None."""
    if cnf and scheme.lower() != "dpop":
        return "invalid_token", "This token is bound to a key: use the DPoP scheme."
    if scheme.lower() == "dpop":
        if not cnf:
            return "invalid_token", "This token is not DPoP-bound."
        config = current_app.config
        try:
            proof = verify_proof(
                request.headers.get("DPoP"),
                method=request.method,
                url=config["ISSUER"] + path,
                burns=get_autocommit_connection(),
                access_token=token,
                skew=int(config["CLOCK_SKEW"]),
            )
        except DPoPError as exc:
            return "invalid_dpop_proof", exc.description
        if proof.jkt != cnf.get("jkt"):
            return "invalid_dpop_proof", "The DPoP key is not the one the token is bound to."
    return None


@bp.route(USERINFO_PATH, methods=["GET", "POST"])
def userinfo() -> ResponseReturnValue:
    scheme, _, token = request.headers.get("Authorization", "").partition(" ")
    token = token.strip()
    if scheme.lower() not in ("bearer", "dpop") or not token:
        response = _bearer_error("invalid_request", "Send an access token.", 401)
        response.headers["WWW-Authenticate"] = 'DPoP algs="ES256 PS256 EdDSA", Bearer'
        return response
    config = current_app.config
    db = get_session()
    try:
        info = verify_access_token(
            db, token, config["ISSUER"], settings().resource, "openid", config["CLOCK_SKEW"]
        )
    except InvalidToken as exc:
        return _bearer_error(exc.error, str(exc), exc.status)
    problem = check_bound_token(token, scheme, info.cnf, USERINFO_PATH)
    if problem:
        return _bearer_error(problem[0], problem[1], 401)
    client = db.get(Client, info.client_id)
    family = db.get(TokenFamily, uuid.UUID(info.grant_id)) if info.grant_id else None
    if client is None or family is None:
        return _bearer_error("invalid_token", "The token has no user.", 401)
    account = db.get(Account, family.account_id)
    if account is None or account.status != "active":
        return _bearer_error("invalid_token", "The account is not active.", 401)
    holder = holder_of(db, account)
    claims = provider.user_claims(
        holder, sorted(info.scopes), provider.subject_for(settings(), client, account), ""
    )
    response = jsonify(claims)
    response.headers["Cache-Control"] = "no-store"
    return response


def _authenticated_client() -> Any:
    server = current_app.extensions["casebroker.oauth"]
    oauth_request = server.create_oauth2_request(request)
    return (
        server,
        oauth_request,
        server.authenticate_client(oauth_request, ["private_key_jwt"], "revocation"),
    )


@bp.post(REVOCATION_PATH)
def revoke() -> ResponseReturnValue:
    """RFC 7009 2.2: 200 whether or not the token was known; only the owner's tokens count."""
    try:
        server, _request, client = _authenticated_client()
    except OAuth2Error as error:
        server = current_app.extensions["casebroker.oauth"]
        return server.handle_error_response(server.create_oauth2_request(request), error)
    token = request.form.get("token", "")
    hint = request.form.get("token_type_hint")
    if hint not in (None, "access_token", "refresh_token"):
        response = jsonify(error="unsupported_token_type")
        response.status_code = 400
        return response
    db = get_session()
    if 0 < len(token) <= 200:
        row = db.get(RefreshToken, provider.sha256_hex(token))
        if row is not None:
            family = db.get(TokenFamily, row.family_id)
            if family is not None and family.client_id == client.client_id:
                provider.revoke_family(db, family.id, "revoked-by-client")
                db.commit()
                record_event("token.revoked", client=client.client_id, token_type="refresh_token")  # noqa: S106 (a type name)
    if token.count(".") == 2 and len(token) < 8192:
        _revoke_access_token(db, token, client.client_id)
    response = Response(status=200)
    response.headers["Cache-Control"] = "no-store"
    return response


def _revoke_access_token(db: Any, token: str, client_id: str) -> None:
    config = current_app.config
    try:
        info = verify_access_token(
            db, token, config["ISSUER"], settings().resource, None, config["CLOCK_SKEW"]
        )
    except InvalidToken:
        return
    if info.client_id != client_id:
        return
    if info.grant_id:
        provider.revoke_family(db, uuid.UUID(info.grant_id), "revoked-by-client")
        db.commit()
    else:
        expires = datetime.fromtimestamp(info.expires_at, UTC) + timedelta(minutes=5)
        try:
            with db.begin_nested():
                db.add(ReplayGuard(namespace="revoked_at", value=info.jti, expires_at=expires))
            db.commit()
        except IntegrityError:
            db.rollback()
    record_event("token.revoked", client=client_id, token_type="access_token")  # noqa: S106 (a type name)


@bp.post(INTROSPECTION_PATH)
def introspect() -> ResponseReturnValue:
    """RFC 7662 2.2: ``active`` false for anything not valid or not the caller's."""
    try:
        server, _request, client = _authenticated_client()
    except OAuth2Error as error:
        server = current_app.extensions["casebroker.oauth"]
        return server.handle_error_response(server.create_oauth2_request(request), error)
    token = request.form.get("token", "")
    db = get_session()
    inactive = jsonify(active=False)
    inactive.headers["Cache-Control"] = "no-store"
    if not token or len(token) > 8192:
        return inactive
    config = current_app.config
    if token.count(".") == 2:
        try:
            info = verify_access_token(
                db, token, config["ISSUER"], settings().resource, None, config["CLOCK_SKEW"]
            )
        except InvalidToken:
            return inactive
        if info.client_id != client.client_id:
            return inactive
        claims = dict(info.claims)
        claims.update(active=True, token_type="DPoP" if info.cnf else "Bearer")
        claims.pop("gid", None)
        response = jsonify(claims)
    else:
        row = db.get(RefreshToken, provider.sha256_hex(token))
        family = db.get(TokenFamily, row.family_id) if row else None
        if (
            row is None
            or family is None
            or family.client_id != client.client_id
            or family.revoked_at is not None
            or row.used_at is not None
            or provider._aware(row.expires_at) <= datetime.now(UTC)
        ):
            return inactive
        response = jsonify(
            active=True,
            client_id=family.client_id,
            scope=row.scope,
            token_type="refresh_token",  # noqa: S106 (a type name)
            exp=int(provider._aware(row.expires_at).timestamp()),
        )
    response.headers["Cache-Control"] = "no-store"
    return response


@bp.route(END_SESSION_PATH, methods=["GET", "POST"])
def end_session() -> ResponseReturnValue:
    """RP-Initiated Logout 1.0: confirm, end the session, go back only to a registered URI."""
    values = request.values
    db = get_session()
    client = None
    hint = values.get("id_token_hint")
    if hint and len(hint) < 8192:
        client = _client_from_id_token_hint(db, hint)
        if client is None:
            return _page(
                "identity/error.html",
                400,
                error="invalid_request",
                description="id_token_hint is not valid.",
            )
    if client is None and values.get("client_id"):
        client = provider.client_row(db, values.get("client_id"))
    target = values.get("post_logout_redirect_uri")
    if target and (client is None or target not in (client.post_logout_redirect_uris or [])):
        return _page(
            "identity/error.html",
            400,
            error="invalid_request",
            description="post_logout_redirect_uri is not registered.",
        )
    if target:
        allow_form_target(_origin(target))
    if request.method == "GET":
        return _page(
            "identity/logout_confirm.html",
            200,
            client=client,
            target=target,
            state=values.get("state"),
            hint=hint,
        )
    check_csrf()
    account_id = web_session.get("account_id")
    if account_id:
        record_event("logout", account=account_id, client=client.id if client else None)
    web_session.end()  # type: ignore[attr-defined]
    if target:
        query = urlencode({"state": values["state"]}) if values.get("state") else ""
        sep = "&" if urlsplit(target).query else "?"
        return redirect(target + (sep + query if query else ""), 303)
    return _page("identity/logged_out.html", 200)


def _origin(uri: str) -> str:
    parts = urlsplit(uri)
    return f"{parts.scheme}://{parts.netloc}"


def _page(template: str, status: int, **context: Any) -> Response:
    response = Response(render_template(template, **context), status, mimetype="text/html")
    return page_headers(response)


def _client_from_id_token_hint(db: Any, hint: str) -> Client | None:
    """Our own ID token, possibly expired (the spec allows that); its ``aud`` names the client."""
    try:
        header = jws.extract_compact(hint.encode()).headers()
        key = _published_key(db, str(header.get("kid")))
        claims = jwt.decode(hint, key, algorithms=["ES256", "PS256", "EdDSA"]).claims
    except (JoseError, ValueError, InvalidToken):
        return None
    if claims.get("iss") != current_app.config["ISSUER"]:
        return None
    return provider.client_row(
        db, claims.get("aud") if isinstance(claims.get("aud"), str) else None
    )
