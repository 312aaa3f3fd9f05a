"""The portal's pages: one action per page, server-rendered, no script.

The HTTP layer translates only: what to show is in ``broker.portal.service``, what a consent
may become is decided by ``consent.service.ConsentService``.
"""

from __future__ import annotations

import hmac
import logging
import uuid
from collections.abc import Callable
from datetime import UTC, datetime
from functools import wraps
from typing import Any
from urllib.parse import urlencode

from flask import (
    Blueprint,
    Response,
    abort,
    current_app,
    g,
    redirect,
    render_template,
    request,
    session,
    url_for,
)
from flask.typing import ResponseReturnValue
from flask_babel import get_locale
from sqlalchemy.orm import Session

from broker.db import get_session
from broker.portal import oidc, service
from broker.problems import Problem
from consent.errors import ConsentError
from consent.notifications import list_notifications, mark_read
from consent.service import Actor, ConsentService, ConsentSettings
from identity.accounts import holder_of
from identity.models import Account
from identity.pages import protect

log = logging.getLogger("casebroker.portal")
bp = Blueprint("portal", __name__, url_prefix="/portal", template_folder="templates")


protect(bp)


@bp.errorhandler(404)
def _not_found(_exc: Exception) -> ResponseReturnValue:
    """Someone else's consent looks exactly like one that does not exist."""
    g.person_id = _person()
    return _page("portal/not_found.html", 404)


def _person() -> uuid.UUID | None:
    from broker.portal import current_person

    return current_person()


def citizen_page(view: Callable[..., ResponseReturnValue]) -> Callable[..., ResponseReturnValue]:
    """Pages for a logged-in citizen; anyone else is sent to log in and brought back."""

    @wraps(view)
    def wrapper(*args: Any, **kwargs: Any) -> ResponseReturnValue:
        person = _person()
        if person is None:
            return redirect(url_for("portal.login", next=request.full_path.rstrip("?")), 303)
        g.person_id = person
        return view(*args, **kwargs)

    return wrapper


def _db() -> Session:
    return get_session()


def _now() -> datetime:
    return datetime.now(UTC)


def _locale() -> str:
    return str(get_locale() or "en")


def _consents() -> ConsentService:
    return ConsentService(
        _db(), ConsentSettings.from_config(current_app.config), g.get("correlation_id")
    )


def _safe_next(value: str | None) -> str:
    if value and value.startswith("/portal") and not value.startswith("//"):
        return value
    return url_for("portal.home")


# --- signing in -----------------------------------------------------------------------------


@bp.get("/")
def home() -> ResponseReturnValue:
    person = _person()
    if person is None:
        return render_template("portal/welcome.html")
    g.person_id = person
    db = _db()
    return render_template(
        "portal/home.html",
        waiting=len(service.pending_requests(db, person, _now(), _locale())),
        unread=sum(1 for n in list_notifications(db, person, unread_only=True) if not n.read),
    )


def _login_cookie() -> str:
    secure = current_app.config["ISSUER"].startswith("https://")
    return "__Host-casebroker-portal-login" if secure else "casebroker-portal-login"


def _kek() -> bytes:
    return current_app.config["KEY_ENCRYPTION_KEY_BYTES"]


@bp.get("/login")
def login() -> ResponseReturnValue:
    """Start the authorization code flow at the broker's own provider."""
    pending = oidc.PendingLogin.new()
    params = pending.authorization_params(current_app.config["ISSUER"], _locale())
    response = redirect(url_for("identity_authorize.authorize") + "?" + urlencode(params), 303)
    response.set_cookie(
        _login_cookie(),
        pending.seal(_kek(), _safe_next(request.args.get("next"))),
        max_age=oidc.LOGIN_TTL,
        path="/",
        secure=_login_cookie().startswith("__Host-"),
        httponly=True,
        samesite="Lax",
    )
    return response


@bp.get("/callback")
def callback() -> ResponseReturnValue:
    response = _finish_login()
    response.delete_cookie(
        _login_cookie(), path="/", secure=_login_cookie().startswith("__Host-"), httponly=True
    )
    return response


def _finish_login() -> Response:
    """OIDC Core 3.1.2.7 and 3.1.3.7, plus RFC 9207's ``iss`` check, in that order."""
    try:
        pending, next_url = oidc.PendingLogin.open(_kek(), request.cookies.get(_login_cookie(), ""))
    except oidc.LoginFailed as failure:
        return _login_failed(failure.reason)
    if not hmac.compare_digest(request.args.get("state", ""), pending.state):
        return _login_failed("state")
    if request.args.get("iss") != current_app.config["ISSUER"]:
        return _login_failed("iss")
    if "error" in request.args or not request.args.get("code"):
        return _login_failed(request.args.get("error", "code")[:40])
    _db().commit()
    try:
        app = current_app._get_current_object()  # type: ignore[attr-defined]
        claims = oidc.redeem(app, pending, request.args["code"])
    except oidc.LoginFailed as failure:
        return _login_failed(failure.reason)
    db = _db()
    try:
        account = db.get(Account, uuid.UUID(str(claims["sub"])))
    except ValueError:
        account = None
    if account is None or str(account.id) != session.get("account_id"):
        return _login_failed("subject")
    holder = holder_of(db, account)
    if holder.kind != "citizen" or holder.person_id is None:
        return _page("portal/not_citizen.html", 403)
    session["portal"] = {"account": str(account.id), "person": str(holder.person_id)}
    return redirect(next_url, 303)  # type: ignore[return-value]


def _login_failed(reason: str) -> Response:
    log.info("portal login failed: %s", reason)
    return _page("portal/login_failed.html", 400, denied=reason == "access_denied")


@bp.post("/logout")
def logout() -> ResponseReturnValue:
    """Ends the whole session: on a shared computer the provider's login must go too."""
    session.end()  # type: ignore[attr-defined]
    return redirect(url_for("portal.home"), 303)


def _page(template: str, status: int = 200, **context: Any) -> Response:
    return Response(render_template(template, **context), status, mimetype="text/html")


# --- pages ----------------------------------------------------------------------------------


@bp.get("/agencies")
@citizen_page
def agencies() -> ResponseReturnValue:
    return render_template(
        "portal/agencies.html", agencies=service.my_agencies(_db(), g.person_id, _locale())
    )


@bp.get("/requests")
@citizen_page
def requests_page() -> ResponseReturnValue:
    waiting = service.pending_requests(_db(), g.person_id, _now(), _locale())
    return render_template("portal/requests.html", requests=waiting)


def _own_request(consent_id: str) -> service.ConsentView:
    found = service.find_consent(_db(), g.person_id, consent_id, _now(), _locale())
    if found is None or found[0].status != "requested":
        abort(404)
    return found[0]


@bp.route("/requests/<consent_id>/<any(approve, decline):answer>", methods=["GET", "POST"])
@citizen_page
def answer_request(consent_id: str, answer: str) -> ResponseReturnValue:
    view = _own_request(consent_id)
    if request.method == "GET":
        return render_template("portal/answer.html", c=view, answer=answer)
    svc = _consents()
    try:
        if answer == "approve":
            svc.approve(g.person_id, view.id)
        else:
            svc.decline(g.person_id, view.id)
    except ConsentError as exc:
        return _page("portal/answer.html", 409, c=view, answer=answer, problem=str(exc))
    if answer == "approve":
        return redirect(url_for("portal.consent", consent_id=view.id, done="approved"), 303)
    return redirect(url_for("portal.requests_page", done="declined"), 303)


@bp.get("/consents")
@citizen_page
def consents() -> ResponseReturnValue:
    grouped = service.my_consents(_db(), g.person_id, _now(), _locale())
    return render_template("portal/consents.html", groups=grouped)


def _own_consent(consent_id: str) -> tuple[service.ConsentView, list]:
    found = service.find_consent(_db(), g.person_id, consent_id, _now(), _locale())
    if found is None or found[0].status == "requested":
        abort(404)
    return found


@bp.get("/consents/<consent_id>")
@citizen_page
def consent(consent_id: str) -> ResponseReturnValue:
    view, history = _own_consent(consent_id)
    return render_template(
        "portal/consent.html", c=view, history=history, done=request.args.get("done")
    )


@bp.route("/consents/<consent_id>/revoke", methods=["GET", "POST"])
@citizen_page
def revoke(consent_id: str) -> ResponseReturnValue:
    view, _history = _own_consent(consent_id)
    if view.status != "active":
        abort(404)
    if request.method == "GET":
        return render_template("portal/revoke.html", c=view)
    try:
        _consents().revoke(view.id, Actor.citizen(), person_id=g.person_id)
    except ConsentError as exc:
        return _page("portal/revoke.html", 409, consent=view, problem=str(exc))
    return redirect(url_for("portal.consent", consent_id=view.id, done="revoked"), 303)


def _history_filters() -> tuple[service.HistoryFilters, list[tuple[str, str]], str | None]:
    choices = service.history_agencies(_db(), g.person_id, _locale())
    try:
        return service.HistoryFilters.parse(request.args, [c[0] for c in choices]), choices, None
    except service.FilterError as exc:
        return service.HistoryFilters(), choices, str(exc)


@bp.get("/history")
@citizen_page
def history() -> ResponseReturnValue:
    filters, choices, problem = _history_filters()
    views = [] if problem else service.access_history(_db(), g.person_id, filters, locale=_locale())
    return _page(
        "portal/history.html",
        400 if problem else 200,
        accesses=views,
        filters=filters,
        choices=choices,
        problem=problem,
        args=request.args,
        limit=service.HISTORY_LIMIT,
    )


@bp.get("/history.<any(csv, json):kind>")
@citizen_page
def history_export(kind: str) -> ResponseReturnValue:
    filters, _choices, problem = _history_filters()
    if problem:
        raise Problem.of(400, "Invalid filter", f"The {problem} filter is not valid.")
    views = service.access_history(_db(), g.person_id, filters, locale=_locale())
    stamp = _now().strftime("%Y%m%d")
    if kind == "csv":
        response = Response(service.history_csv(views), mimetype="text/csv")
    else:
        response = current_app.json.response(service.history_json(views, filters))
    response.headers["Content-Disposition"] = (
        f'attachment; filename="my-access-history-{stamp}.{kind}"'
    )
    return response


@bp.get("/notifications")
@citizen_page
def notifications() -> ResponseReturnValue:
    views = list_notifications(_db(), g.person_id, portal_url=current_app.config["ISSUER"])
    return render_template("portal/notifications.html", notifications=views)


@bp.post("/notifications/<int:notification_id>/read")
@citizen_page
def notification_read(notification_id: int) -> ResponseReturnValue:
    try:
        mark_read(_db(), g.person_id, notification_id)
    except ConsentError:
        abort(404)
    return redirect(url_for("portal.notifications"), 303)
