"""Pages people use: log in, second factor, their account, MFA set-up, apps they allowed.

Server-rendered, no script; every form posts with a CSRF token. The HTTP layer only
translates: decisions are in ``identity.accounts`` and ``identity.provider``.
"""

from __future__ import annotations

import time
import uuid
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlsplit

from flask import (
    Blueprint,
    Response,
    current_app,
    redirect,
    render_template,
    request,
    session,
    url_for,
)
from flask.typing import ResponseReturnValue
from flask_babel import gettext as _
from sqlalchemy import select

from broker.db import get_session
from identity import accounts, upstream
from identity.events import record_event, source_address
from identity.models import Account, Client
from identity.oidc_models import ConsentGrant, TokenFamily
from identity.pages import allow_form_target, protect

bp = Blueprint(
    "identity_web",
    __name__,
    template_folder="templates",
    static_folder="static",
    static_url_path="/assets/identity",
)
MFA_PENDING_TTL = 300


protect(bp, frozenset({"identity_web.static"}))


def safe_next(value: str | None) -> str:
    """Only same-site paths: no open redirect through ``next``."""
    if (
        value
        and value.startswith("/")
        and not value.startswith(("//", "/\\"))
        and len(value) < 4000
    ):
        return value
    return url_for("identity_web.account")


def allow_flow_target(next_url: str) -> None:
    """The login form may end in a redirect to the client: CSP form-action must allow it."""
    prefix = "/authorize/continue/"
    if next_url.startswith(prefix):
        flow = (session.get("flows") or {}).get(next_url[len(prefix) :].split("?")[0])
        if flow:
            parts = urlsplit(flow["request"]["redirect_uri"])
            allow_form_target(f"{parts.scheme}://{parts.netloc}")


def current_account() -> Account | None:
    account_id = session.get("account_id")
    if not account_id:
        return None
    account = get_session().get(Account, uuid.UUID(account_id))
    if account is None or account.status != "active":
        session.end()  # type: ignore[attr-defined]
        return None
    return account


def _holder_fields(account: Account) -> dict[str, Any]:
    holder = accounts.holder_of(get_session(), account)
    fields: dict[str, Any] = {"account": str(account.id)}
    if holder.person_id:
        fields["person"] = holder.person_id
    if holder.officer_id:
        fields["officer"] = holder.officer_id
    return fields


def complete_login(account: Account, amr: list[str], acr: str | None = None, **how: Any) -> None:
    """Start a fresh session id for the logged-in user (no fixation) and record how."""
    acr = acr or (accounts.ACR_MFA if "otp" in amr else accounts.ACR_PASSWORD)
    pending = session.get("flows")
    csrf = session.get("csrf")
    session.clear()
    session.regenerate()  # type: ignore[attr-defined]
    session.update(
        account_id=str(account.id),
        auth_time=int(time.time()),
        acr=acr,
        amr=amr,
        login_seq=int(time.time() * 1000),
    )
    if pending:
        session["flows"] = pending
    if csrf:
        session["csrf"] = csrf
    record_event("login.succeeded", acr=acr, amr=amr, **how, **_holder_fields(account))


@bp.route("/login", methods=["GET", "POST"])
def login() -> ResponseReturnValue:
    next_url = safe_next(request.values.get("next"))
    allow_flow_target(next_url)
    hint = request.args.get("login_hint", "")
    if request.method == "GET":
        expired = bool(session.get("expired") or request.args.get("expired"))
        return _login_page(next_url, hint, {}, 200, expired)
    db = get_session()
    username = request.form.get("username", "").strip()
    password = request.form.get("password", "")
    errors: dict[str, str] = {}
    if not username:
        errors["username"] = _("Enter your username.")
    if not password:
        errors["password"] = _("Enter your password.")
    if errors:
        return _login_page(next_url, username, errors, 400)
    account = accounts.find_account(db, username)
    keys = [f"address:{source_address()}"]
    if account is not None:
        keys.append(f"account:{account.id}")
    wait = accounts.throttle_wait(db, keys)
    if wait:
        record_event(
            "login.throttled", reason="too-many-attempts", source=source_address(), wait=wait
        )
        message = _("Too many attempts. Wait %(seconds)s seconds, then try again.", seconds=wait)
        response = _login_page(next_url, username, {"password": message}, 429)
        response.headers["Retry-After"] = str(wait)
        return response
    if not accounts.check_password(account, password):
        accounts.record_failure(db, keys)
        db.commit()
        fields = _holder_fields(account) if account else {"reason": "unknown-username"}
        record_event("login.failed", stage="password", source=source_address(), **fields)
        return _login_page(
            next_url, username, {"password": _("The username or password is not right.")}, 401
        )
    assert account is not None
    accounts.clear_failures(db, f"account:{account.id}")
    db.commit()
    if account.totp_enabled_at is not None:
        session["mfa_pending"] = {"account_id": str(account.id), "at": int(time.time())}
        return redirect(url_for("identity_web.login_mfa", next=next_url), 303)
    complete_login(account, ["pwd"])
    return redirect(next_url, 303)


def _login_page(
    next_url: str, username: str, errors: dict[str, str], status: int, expired: bool = False
) -> Response:
    providers = list(current_app.extensions["casebroker.upstream"].values())
    for provider in providers:
        parts = urlsplit(provider.issuer)
        allow_form_target(f"{parts.scheme}://{parts.netloc}")
    body = render_template(
        "identity/login.html",
        next_url=next_url,
        username=username,
        errors=errors,
        expired=expired,
        providers=providers,
    )
    return Response(body, status=status, mimetype="text/html")


def _upstream_error(message: str, **fields: Any) -> Response:
    record_event("login.failed", stage="upstream", source=source_address(), **fields)
    body = render_template("identity/error.html", error="upstream", description=message)
    return Response(body, 400, mimetype="text/html")


@bp.post("/login/upstream/<name>")
def upstream_start(name: str) -> ResponseReturnValue:
    """Sign in with an upstream provider: push the request there and send the browser."""
    provider = current_app.extensions["casebroker.upstream"].get(name)
    if provider is None:
        return _upstream_error(_("This sign-in method is not available."), provider=name[:64])
    next_url = safe_next(request.form.get("next"))
    redirect_uri = current_app.config["ISSUER"] + url_for(
        "identity_web.upstream_callback", name=name
    )
    try:
        target, flow = upstream.start(provider, redirect_uri)
    except upstream.UpstreamError as exc:
        return _upstream_error(str(exc), provider=name)
    flow["next"] = next_url
    session["upstream"] = flow
    parts = urlsplit(provider.issuer)
    allow_form_target(f"{parts.scheme}://{parts.netloc}")
    return redirect(target, 303)


@bp.get("/login/upstream/<name>/callback")
def upstream_callback(name: str) -> ResponseReturnValue:
    """RFC 9207 ``iss`` and ``state`` checked, code redeemed, the subject mapped by its link."""
    flow = session.pop("upstream", None)
    provider = current_app.extensions["casebroker.upstream"].get(name)
    if provider is None or not flow or flow.get("provider") != name:
        return _upstream_error(_("This sign-in has expired. Start again."), provider=name[:64])
    if time.time() - flow["started"] > MFA_PENDING_TTL:
        return _upstream_error(_("This sign-in has expired. Start again."), provider=name)
    try:
        result = upstream.finish(provider, flow, request.args.to_dict(flat=True))
    except upstream.UpstreamError as exc:
        return _upstream_error(str(exc), provider=name)
    account = upstream.linked_account(get_session(), name, result.subject)
    if account is None or account.status != "active":
        return _upstream_error(
            _("This sign-in is not linked to an account here. Ask the service desk."),
            provider=name,
            reason="unlinked",
        )
    complete_login(account, result.amr, result.acr, provider=name)
    return redirect(safe_next(flow.get("next")), 303)


def _pending_account() -> Account | None:
    pending = session.get("mfa_pending")
    if not pending or time.time() - pending.get("at", 0) > MFA_PENDING_TTL:
        return None
    return get_session().get(Account, uuid.UUID(pending["account_id"]))


@bp.route("/login/mfa", methods=["GET", "POST"])
def login_mfa() -> ResponseReturnValue:
    next_url = safe_next(request.values.get("next"))
    allow_flow_target(next_url)
    account = _pending_account()
    if account is None:
        return redirect(url_for("identity_web.login", next=next_url), 303)
    if request.method == "GET":
        return render_template("identity/mfa.html", next_url=next_url, errors={})
    db = get_session()
    keys = [f"address:{source_address()}", f"account:{account.id}"]
    wait = accounts.throttle_wait(db, keys)
    if wait:
        message = _("Too many attempts. Wait %(seconds)s seconds, then try again.", seconds=wait)
        body = render_template("identity/mfa.html", next_url=next_url, errors={"code": message})
        return Response(body, 429, {"Retry-After": str(wait)}, mimetype="text/html")
    code = request.form.get("code", "")
    recovery = request.form.get("recovery_code", "")
    kek = current_app.config["KEY_ENCRYPTION_KEY_BYTES"]
    ok = False
    method = "totp"
    if code:
        ok = accounts.verify_totp(db, kek, account, code)
    elif recovery:
        method = "recovery-code"
        ok = accounts.use_recovery_code(db, account, recovery)
    if not ok:
        accounts.record_failure(db, keys)
        db.commit()
        record_event(
            "login.failed",
            stage="mfa",
            method=method,
            source=source_address(),
            **_holder_fields(account),
        )
        message = _("The code is not right, or it has been used already.")
        body = render_template("identity/mfa.html", next_url=next_url, errors={"code": message})
        return Response(body, 401, mimetype="text/html")
    accounts.clear_failures(db, f"account:{account.id}")
    db.commit()
    session.pop("mfa_pending", None)
    if method == "recovery-code":
        record_event("mfa.recovery_code_used", **_holder_fields(account))
    complete_login(account, ["pwd", "otp"])
    return redirect(next_url, 303)


def _require_login() -> Account | Response:
    account = current_account()
    if account is None:
        expired = 1 if session.get("expired") else None
        target = request.full_path.rstrip("?")
        return redirect(url_for("identity_web.login", next=target, expired=expired), 303)
    return account


@bp.get("/account")
def account() -> ResponseReturnValue:
    account = _require_login()
    if isinstance(account, Response):
        return account
    db = get_session()
    holder = accounts.holder_of(db, account)
    rows = db.execute(
        select(ConsentGrant, Client)
        .join(Client, Client.id == ConsentGrant.client_id)
        .where(ConsentGrant.account_id == account.id)
        .order_by(ConsentGrant.granted_at.desc())
    ).all()
    return render_template(
        "identity/account.html",
        account=account,
        holder=holder,
        grants=rows,
        recovery_left=accounts.remaining_recovery_codes(db, account),
        message=session.pop("message", None),
    )


@bp.post("/account/apps/<client_id>/withdraw")
def withdraw(client_id: str) -> ResponseReturnValue:
    """Withdrawing a remembered grant also revokes that app's refresh tokens."""
    account = _require_login()
    if isinstance(account, Response):
        return account
    db = get_session()
    grant = db.scalar(
        select(ConsentGrant).where(
            ConsentGrant.account_id == account.id, ConsentGrant.client_id == client_id
        )
    )
    if grant is not None:
        db.delete(grant)
        for family in db.scalars(
            select(TokenFamily).where(
                TokenFamily.account_id == account.id,
                TokenFamily.client_id == client_id,
                TokenFamily.revoked_at.is_(None),
            )
        ):
            family.revoked_at = datetime.now(UTC)
            family.revoked_reason = "consent-withdrawn"
        db.commit()
        record_event("oidc.consent_withdrawn", client=client_id, **_holder_fields(account))
        session["message"] = _("You withdrew the access you had given.")
    return redirect(url_for("identity_web.account"), 303)


@bp.route("/account/mfa", methods=["GET", "POST"])
def mfa_setup() -> ResponseReturnValue:
    """Enrol an authenticator app: show the secret, confirm one code, then recovery codes."""
    account = _require_login()
    if isinstance(account, Response):
        return account
    db = get_session()
    if account.totp_enabled_at is not None:
        return redirect(url_for("identity_web.account"), 303)
    secret = session.get("totp_setup")
    if not secret:
        secret = accounts.new_totp_secret()
        session["totp_setup"] = secret
    uri = accounts.provisioning_uri(secret, account)
    if request.method == "GET":
        return render_template("identity/mfa_setup.html", secret=secret, uri=uri, errors={})
    step = accounts.totp_matches(secret, request.form.get("code", ""))
    if step is None:
        body = render_template(
            "identity/mfa_setup.html",
            secret=secret,
            uri=uri,
            errors={"code": _("The code is not right. Check the time on your device.")},
        )
        return Response(body, 400, mimetype="text/html")
    accounts.enable_totp(db, current_app.config["KEY_ENCRYPTION_KEY_BYTES"], account, secret, step)
    codes = accounts.new_recovery_codes(db, account)
    db.commit()
    session.pop("totp_setup", None)
    record_event("mfa.enabled", method="totp", **_holder_fields(account))
    return render_template("identity/recovery_codes.html", codes=codes)


@bp.post("/account/mfa/recovery-codes")
def new_recovery_codes() -> ResponseReturnValue:
    account = _require_login()
    if isinstance(account, Response):
        return account
    if account.totp_enabled_at is None:
        return redirect(url_for("identity_web.account"), 303)
    db = get_session()
    codes = accounts.new_recovery_codes(db, account)
    db.commit()
    record_event("mfa.recovery_codes_replaced", **_holder_fields(account))
    return render_template("identity/recovery_codes.html", codes=codes)


@bp.post("/account/mfa/disable")
def mfa_disable() -> ResponseReturnValue:
    """Turning MFA off needs a current code, so a stolen session alone cannot do it."""
    account = _require_login()
    if isinstance(account, Response):
        return account
    db = get_session()
    kek = current_app.config["KEY_ENCRYPTION_KEY_BYTES"]
    if not accounts.verify_totp(db, kek, account, request.form.get("code", "")):
        db.rollback()
        session["message"] = _("The code is not right, so two-step verification is still on.")
        return redirect(url_for("identity_web.account"), 303)
    accounts.disable_totp(db, account)
    db.commit()
    record_event("mfa.disabled", method="totp", **_holder_fields(account))
    session["message"] = _("Two-step verification is off.")
    return redirect(url_for("identity_web.account"), 303)


@bp.post("/logout/local")
def logout_local() -> ResponseReturnValue:
    account = current_account()
    if account is not None:
        record_event("logout", **_holder_fields(account))
    session.end()  # type: ignore[attr-defined]
    return render_template("identity/logged_out.html")
