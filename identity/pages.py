"""What every server-rendered page needs: CSRF tokens, a strict CSP, no caching.

Forms carry a per-session token checked on every POST (the synchronizer token pattern, OWASP);
with SameSite=Lax cookies that stops cross-site form posts. Pages load no script at all and
only our own stylesheet, so the Content-Security-Policy can forbid everything else.
"""

from __future__ import annotations

import hmac
import secrets
from urllib.parse import urlencode

from flask import Blueprint, Flask, Response, g, render_template, request, session
from flask_babel import get_locale
from flask_babel import gettext as _


def csrf_token() -> str:
    token = session.get("csrf")
    if not token:
        token = secrets.token_urlsafe(32)
        session["csrf"] = token
    return token


class CsrfFailure(Exception):
    """A form post without this session's token: answered with a page, 400."""


def check_csrf() -> None:
    """Raise ``CsrfFailure`` unless the form's token is the session's."""
    sent = request.form.get("csrf_token", "")
    expected = session.get("csrf", "")
    if not expected or not hmac.compare_digest(sent, expected):
        raise CsrfFailure()


def _csrf_page(_exc: CsrfFailure) -> Response:
    body = render_template(
        "identity/error.html",
        error="csrf",
        description=_(
            "The form has expired or did not come from this site. Go back and try again."
        ),
    )
    return page_headers(Response(body, 400, mimetype="text/html"))


def allow_form_target(origin: str) -> None:
    """Chrome applies form-action to the redirect after a form post: name the client's origin."""
    g.setdefault("form_targets", set()).add(origin)


def page_headers(response: Response) -> Response:
    """Headers for HTML pages: strict CSP, no framing, no caching of personal pages."""
    form_action = " ".join(["'self'", *sorted(g.get("form_targets", set()))])
    response.headers["Content-Security-Policy"] = (
        "default-src 'none'; style-src 'self'; img-src 'self'; "
        f"form-action {form_action}; frame-ancestors 'none'; base-uri 'none'"
    )
    response.headers["X-Frame-Options"] = "DENY"
    response.headers["Cache-Control"] = "no-store"
    return response


def protect(bp: Blueprint, exempt: frozenset[str] = frozenset()) -> None:
    """Every page of ``bp`` gets the headers above and every form post the CSRF check.

    Downloads (CSV, JSON) of personal data are not cached either. ``exempt`` names endpoints
    that take no form (static files).
    """

    @bp.after_request
    def _headers(response: Response) -> Response:
        if response.mimetype == "text/html":
            page_headers(response)
        response.headers["Cache-Control"] = "no-store"
        return response

    @bp.before_request
    def _csrf() -> None:
        if request.method == "POST" and request.endpoint not in exempt:
            check_csrf()


def language_url(code: str) -> str:
    """The current page in another language (GET pages only; forms keep their own state)."""
    args = request.args.to_dict(flat=True)
    args["lang"] = code
    return request.path + "?" + urlencode(args)


def init_app(app: Flask) -> None:
    app.register_error_handler(CsrfFailure, _csrf_page)
    app.jinja_env.globals["csrf_token"] = csrf_token
    app.jinja_env.globals["language_url"] = language_url
    app.jinja_env.globals["current_locale"] = lambda: str(get_locale() or "en")
