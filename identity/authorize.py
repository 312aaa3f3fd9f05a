"""Authorization endpoint, pushed authorization requests and the consent page.

PAR (RFC 9126) is required for FAPI clients; a ``request_uri`` is redeemed once on the first
visit and the validated request then lives in the browser session (``flows``) while the
user logs in and consents. Responses carry ``iss`` (RFC 9207). Errors go back to the client
only once its redirect URI has been checked; before that they are shown to the user.
"""

from __future__ import annotations

import secrets
import time
import uuid
from typing import Any
from urllib.parse import urlencode, urlsplit

from authlib.oauth2.rfc6749 import OAuth2Error
from flask import (
    Blueprint,
    Response,
    current_app,
    jsonify,
    redirect,
    render_template,
    request,
    session,
    url_for,
)
from flask.typing import ResponseReturnValue
from flask_babel import gettext as _

from broker.db import get_session
from broker.models import Agency
from identity import provider
from identity.accounts import holder_of
from identity.events import record_event
from identity.grants import InvalidDPoPProof, check_dpop
from identity.models import Account, Client
from identity.pages import allow_form_target, check_csrf, page_headers
from identity.server import PAR_PATH
from identity.sessions import session_id_of

bp = Blueprint("identity_authorize", __name__, template_folder="templates")
MAX_FLOWS = 5

SCOPE_DESCRIPTIONS = {
    "openid": lambda: _("Confirm who you are (an identifier for you, only for this service)"),
    "profile": lambda: _("Your name"),
    "lookup": lambda: _("Look up records from other agencies for your work, under policy"),
    "consent": lambda: _("See and manage your consents"),
    "audit": lambda: _("Search and verify the access log"),
}


@bp.after_request
def _headers(response: Response) -> Response:
    if response.mimetype == "text/html":
        page_headers(response)
    return response


def _oauth_json_error(error: str, description: str, status: int = 400) -> Response:
    response = jsonify(error=error, error_description=description)
    response.status_code = status
    response.headers["Cache-Control"] = "no-store"
    return response


@bp.post(PAR_PATH)
def pushed_authorization_request() -> ResponseReturnValue:
    """RFC 9126 section 2: authenticate the client, validate, store, answer request_uri."""
    server = current_app.extensions["casebroker.oauth"]
    oauth_request = server.create_oauth2_request(request)
    try:
        client = server.authenticate_client(oauth_request, ["private_key_jwt"], "pushed")
    except OAuth2Error as error:
        return server.handle_error_response(oauth_request, error)
    db = get_session()
    row = provider.client_row(db, client.client_id)
    if row is None or "authorization_code" not in row.grant_types:
        return _oauth_json_error("unauthorized_client", "This client may not use the code flow.")
    params = {
        k: v
        for k, v in request.form.items()
        if k in provider.AUTHORIZATION_PARAMS or k in ("request_uri", "request")
    }
    if "request_uri" in params:
        return _oauth_json_error("invalid_request", "request_uri is not allowed in a PAR.")
    try:
        if request.headers.get("DPoP"):
            jkt = check_dpop(row.id, False, PAR_PATH)
            if params.get("dpop_jkt") not in (None, jkt):
                return _oauth_json_error(
                    "invalid_dpop_proof", "dpop_jkt does not match the DPoP proof (RFC 9449 10)."
                )
            params["dpop_jkt"] = jkt or ""
        validated = provider.validate_authorization_params(row, params, pushed=True)
    except InvalidDPoPProof as error:
        return server.handle_error_response(oauth_request, error)
    except provider.AuthorizationError as error:
        return _oauth_json_error(error.error, error.description)
    request_uri = provider.push_request(db, row, validated)
    db.commit()
    response = jsonify(request_uri=request_uri, expires_in=provider.PAR_TTL)
    response.status_code = 201
    response.headers["Cache-Control"] = "no-store"
    return response


def _error_page(error: str, description: str, status: int = 400) -> Response:
    body = render_template("identity/error.html", error=error, description=description)
    return Response(body, status=status, mimetype="text/html")


def _redirect_to_client(redirect_uri: str, params: dict[str, Any]) -> Response:
    """RFC 9207: ``iss`` on every authorization response, success or error."""
    params = {k: v for k, v in params.items() if v is not None}
    params["iss"] = current_app.config["ISSUER"]
    separator = "&" if urlsplit(redirect_uri).query else "?"
    response = redirect(redirect_uri + separator + urlencode(params), 303)
    response.headers["Cache-Control"] = "no-store"
    return response


def _error_to_client(authz: provider.AuthorizationRequest, error: str, description: str):
    return _redirect_to_client(
        authz.redirect_uri,
        {"error": error, "error_description": description, "state": authz.state},
    )


@bp.route("/authorize", methods=["GET", "POST"])
def authorize() -> ResponseReturnValue:
    """OIDC Core 3.1.2: validate (GET or form POST, 3.1.2.1), then send the user through
    login and consent."""
    values = request.args if request.method == "GET" else request.form
    db = get_session()
    client = provider.client_row(db, values.get("client_id"))
    if client is None:
        return _error_page("invalid_client", _("This service is not known to us."))
    params = values.to_dict(flat=True)
    params.pop("lang", None)
    if len(values.getlist("client_id")) > 1:
        return _error_page("invalid_request", _("The request repeats a parameter."))
    par_key = None
    try:
        if "request_uri" in params:
            par_key, authz = provider.load_request_uri(db, client, params["request_uri"])
        elif client.is_fapi:
            raise provider.AuthorizationError(
                "invalid_request", "This client must use pushed authorization requests.", False
            )
        else:
            authz = provider.validate_authorization_params(client, params, pushed=False)
    except provider.RedirectableError as error:
        db.commit()
        return _error_to_client(error.request, error.error, error.description)
    except provider.AuthorizationError as error:
        db.rollback()
        if error.redirect and "redirect_uri" in params:
            checked = params["redirect_uri"] in (client.redirect_uris or [])
            if checked:
                return _redirect_to_client(
                    params["redirect_uri"],
                    {
                        "error": error.error,
                        "error_description": error.description,
                        "state": params.get("state"),
                    },
                )
        return _error_page(error.error, error.description)
    flow_id = secrets.token_urlsafe(16)
    flows = dict(session.get("flows") or {})
    while len(flows) >= MAX_FLOWS:
        flows.pop(next(iter(flows)))
    flows[flow_id] = {
        "request": authz.to_dict(),
        "started": int(time.time()),
        "login_seq": None,
        "par": par_key,
    }
    session["flows"] = flows
    if "login" in authz.prompt:
        flows[flow_id]["login_seq"] = session.get("login_seq")
    return _continue(flow_id)


def _flow(flow_id: str) -> dict[str, Any] | None:
    flows = session.get("flows") or {}
    return flows.get(flow_id)


def _end_flow(flow_id: str) -> None:
    """The client is being answered (with an error): the pushed request is spent too."""
    par_key = (_flow(flow_id) or {}).get("par")
    if par_key:
        db = get_session()
        provider.consume_request(db, par_key)
        db.commit()
    _drop_flow(flow_id)


def _drop_flow(flow_id: str) -> None:
    flows = dict(session.get("flows") or {})
    flows.pop(flow_id, None)
    session["flows"] = flows


def _current_login() -> provider.Login | None:
    if not session.get("account_id"):
        return None
    return provider.Login(
        account_id=uuid.UUID(session["account_id"]),
        auth_time=int(session["auth_time"]),
        acr=session["acr"],
        amr=list(session["amr"]),
        session_id=session_id_of(session),
    )


@bp.get("/authorize/continue/<flow_id>")
def resume(flow_id: str) -> ResponseReturnValue:
    return _continue(flow_id)


def _continue(flow_id: str) -> Response:
    flow = _flow(flow_id)
    if flow is None:
        return _error_page("invalid_request", _("This sign-in has expired. Start again."))
    authz = provider.AuthorizationRequest.from_dict(flow["request"])
    db = get_session()
    client = provider.client_row(db, authz.client_id)
    if client is None:
        _drop_flow(flow_id)
        return _error_page("invalid_client", _("This service is not known to us."))
    login = _current_login()
    # A new login (login_seq changed) since the flow began satisfies prompt=login.
    fresh = login is not None and session.get("login_seq") != flow.get("login_seq")
    fresh = fresh and "login" in authz.prompt
    if provider.needs_login(authz, login, fresh):
        if "none" in authz.prompt:
            _end_flow(flow_id)
            return _error_to_client(authz, "login_required", "The user must log in.")
        if login is not None and "login" not in authz.prompt:
            # max_age or acr: ask again, and treat the next login as fresh.
            flow["login_seq"] = session.get("login_seq")
            authz.prompt = [*authz.prompt, "login"]
            flow["request"] = authz.to_dict()
            flows = dict(session.get("flows") or {})
            flows[flow_id] = flow
            session["flows"] = flows
        next_url = url_for("identity_authorize.resume", flow_id=flow_id)
        target = url_for(
            "identity_web.login",
            next=next_url,
            login_hint=authz.login_hint or None,
            lang=(authz.ui_locales or "").split("-")[0][:2] or None,
        )
        return redirect(target, 303)
    assert login is not None
    account = db.get(Account, login.account_id)
    if account is None or not provider.account_may_use(db, client, account):
        _end_flow(flow_id)
        return _error_to_client(authz, "access_denied", "This account may not use this client.")
    scopes = provider.effective_scopes(authz, account)
    needs_consent = "consent" in authz.prompt or not provider.consent_covers(
        db, account.id, client.id, scopes
    )
    if needs_consent:
        if "none" in authz.prompt:
            _end_flow(flow_id)
            return _error_to_client(authz, "consent_required", "The user must consent.")
        return _consent_page(flow_id, client, scopes)
    return _issue(flow_id, authz, login, scopes)


def _consent_page(flow_id: str, client: Client, scopes: list[str], status: int = 200) -> Response:
    described = [(s, SCOPE_DESCRIPTIONS[s]() if s in SCOPE_DESCRIPTIONS else s) for s in scopes]
    flow = _flow(flow_id) or {}
    authz = provider.AuthorizationRequest.from_dict(flow["request"])
    allow_form_target(_origin(authz.redirect_uri))
    agency_row = get_session().get(Agency, client.agency_id)
    agency = agency_row.name if agency_row else client.agency_id
    body = render_template(
        "identity/consent.html",
        flow_id=flow_id,
        client=client,
        agency=agency,
        scopes=described,
    )
    return Response(body, status=status, mimetype="text/html")


def _origin(uri: str) -> str:
    parts = urlsplit(uri)
    return f"{parts.scheme}://{parts.netloc}"


@bp.post("/authorize/consent/<flow_id>")
def consent(flow_id: str) -> ResponseReturnValue:
    check_csrf()
    flow = _flow(flow_id)
    if flow is None:
        return _error_page("invalid_request", _("This sign-in has expired. Start again."))
    authz = provider.AuthorizationRequest.from_dict(flow["request"])
    login = _current_login()
    db = get_session()
    client = provider.client_row(db, authz.client_id)
    if login is None or client is None:
        return _continue(flow_id)
    account = db.get(Account, login.account_id)
    assert account is not None
    allow_form_target(_origin(authz.redirect_uri))
    fields = _holder(account)
    if request.form.get("decision") != "allow":
        _end_flow(flow_id)
        record_event("oidc.consent_denied", client=client.id, **fields)
        return _error_to_client(authz, "access_denied", "The user did not allow access.")
    scopes = provider.effective_scopes(authz, account)
    provider.remember_consent(db, account.id, client.id, scopes)
    db.commit()
    record_event("oidc.consent_granted", client=client.id, scopes=scopes, **fields)
    return _issue(flow_id, authz, login, scopes)


def _holder(account: Account) -> dict[str, Any]:
    holder = holder_of(get_session(), account)
    fields: dict[str, Any] = {"account": str(account.id)}
    if holder.person_id:
        fields["person"] = holder.person_id
    if holder.officer_id:
        fields["officer"] = holder.officer_id
    return fields


def _issue(
    flow_id: str, authz: provider.AuthorizationRequest, login: provider.Login, scopes: list[str]
) -> Response:
    db = get_session()
    par_key = (_flow(flow_id) or {}).get("par")
    if par_key and not provider.consume_request(db, par_key):
        db.rollback()
        _drop_flow(flow_id)
        return _error_to_client(authz, "invalid_request_uri", "request_uri has been used.")
    code = provider.issue_code(db, authz, login, scopes)
    db.commit()
    _drop_flow(flow_id)
    allow_form_target(_origin(authz.redirect_uri))
    return _redirect_to_client(authz.redirect_uri, {"code": code, "state": authz.state})
