"""The auditor's console pages: server-rendered, no script, one blueprint at /audit/console.

The HTTP layer only translates: who may enter and what each page shows is decided in
``audit.console.service``. Every page that shows events records the auditor's access first.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from functools import wraps
from typing import Any

from flask import (
    Blueprint,
    current_app,
    g,
    redirect,
    render_template,
    request,
    url_for,
)
from flask.typing import ResponseReturnValue
from flask_babel import gettext as _

from audit import checkpoints
from audit.console import charts, service
from audit.console.models import OUTCOMES
from broker.db import get_session
from identity.pages import protect
from identity.web import current_account

bp = Blueprint("console", __name__, url_prefix="/audit/console", template_folder="templates")
MAX_SEQ = (1 << 63) - 1


protect(bp)


def auditor_page(view: Callable[..., ResponseReturnValue]) -> Callable[..., ResponseReturnValue]:
    """Officers with the auditor role; others are sent to log in, or refused when logged in."""

    @wraps(view)
    def wrapper(*args: Any, **kwargs: Any) -> ResponseReturnValue:
        account = current_account()
        if account is None:
            target = request.full_path.rstrip("?")
            return redirect(url_for("identity_web.login", next=target), 303)
        auditor = service.auditor_of(get_session(), account)
        if auditor is None:
            return render_template("console/forbidden.html"), 403
        g.auditor = auditor
        return view(*args, **kwargs)

    return wrapper


def _record(kind: str, **fields: Any) -> int:
    return service.record_access(get_session(), g.auditor, kind, g.get("correlation_id"), **fields)


def _origin() -> str:
    return checkpoints.log_origin(current_app.config)


OUTCOME_LABELS = {
    "justified": lambda: _("Justified"),
    "misuse": lambda: _("Misuse"),
    "follow-up": lambda: _("Needs follow-up"),
}


@bp.app_template_global("outcome_label")
def outcome_label(outcome: str) -> str:
    label = OUTCOME_LABELS.get(outcome)
    return label() if label else outcome


@bp.get("/")
@auditor_page
def overview() -> ResponseReturnValue:
    """Integrity, daily charts and unusual volume: counts over the log, recorded as stats."""
    session = get_session()
    now = datetime.now(UTC)
    upto = _record("audit.stats", filters={"view": "overview", "days": service.CHART_DAYS})
    series = service.daily_series(session, now.date(), upto)
    labels = [d.strftime("%m-%d") for d in series.days]
    lines = [charts.Line(agency, values) for agency, values in series.by_agency.items()]
    return render_template(
        "console/overview.html",
        integrity=service.integrity(session, _origin()),
        series=series,
        lookups_chart=charts.line_chart(
            "chart-lookups",
            _("Lookups per requesting agency per day"),
            _(
                "One line per agency over the last %(num)d days; the table below has the numbers.",
                num=len(labels),
            ),
            labels,
            lines,
        ),
        swatches=[charts.swatch(n) for n in range(len(lines))],
        denials_chart=charts.bar_chart(
            "chart-denials",
            _("Denied lookups per day"),
            _(
                "%(total)d denials over the last %(num)d days.",
                total=sum(series.denials),
                num=len(labels),
            ),
            labels,
            series.denials,
        ),
        glass_chart=charts.bar_chart(
            "chart-glass",
            _("Break-glass lookups per day"),
            _(
                "%(total)d break-glass decisions over the last %(num)d days.",
                total=sum(series.break_glass),
                num=len(labels),
            ),
            labels,
            series.break_glass,
        ),
        flags=service.unusual_volume(session, now, upto),
        rule=service,
    )


@bp.get("/search")
@auditor_page
def search_page() -> ResponseReturnValue:
    """The search form; a search runs (and is recorded) once any filter or the button is sent."""
    session = get_session()
    args = request.args.to_dict(flat=True)
    asked = args.pop("search", None) is not None or any(v for k, v in args.items() if k != "lang")
    context: dict[str, Any] = {"args": args, "choices": service.choices(session)}
    if not asked:
        return render_template("console/search.html", **context)
    try:
        wanted = service.parse_form(args)
    except service.ConsoleError as exc:
        return render_template("console/search.html", error=exc, **context), 400
    upto = _record("audit.search", filters=wanted.describe())
    try:
        results = service.run_search(session, wanted, upto)
    except service.search.QueryError as exc:
        error = service.ConsoleError(exc.parameter, "query", str(exc))
        return render_template("console/search.html", error=error, **context), 400
    next_args = dict(args, cursor=results.next_cursor) if results.next_cursor else None
    return render_template("console/search.html", results=results, next_args=next_args, **context)


def _event_page(seq: int, errors: dict[str, str] | None = None, form: Any = None) -> Any:
    if seq > MAX_SEQ:
        return render_template("console/not_found.html"), 404
    upto = _record("audit.view", event=seq)
    view = service.event_view(get_session(), seq, upto, _origin())
    if view is None:
        return render_template("console/not_found.html"), 404
    status = 400 if errors else 200
    return render_template(
        "console/event.html",
        view=view,
        errors=errors or {},
        form=form or {},
        outcomes=OUTCOMES,
        note_limit=service.MAX_NOTE,
    ), status


@bp.get("/events/<int:seq>")
@auditor_page
def event(seq: int) -> ResponseReturnValue:
    """One event, its record, and its inclusion proof checked against the latest checkpoint."""
    return _event_page(seq)


FINDING_MESSAGES = {
    "outcome": lambda: _("Choose an outcome."),
    "note-missing": lambda: _("Write what you found."),
    "note-invalid": lambda: _(
        "Keep the finding under %(num)d characters of plain text.", num=service.MAX_NOTE
    ),
    "not-reviewable": lambda: _("This event is not a break-glass access or flagged permit."),
    "reviewed": lambda: _("Another finding was recorded for this access already."),
}


@bp.post("/events/<int:seq>/finding")
@auditor_page
def finding(seq: int) -> ResponseReturnValue:
    """Record a finding; the access leaves the queue for everyone."""
    if seq > MAX_SEQ:
        return render_template("console/not_found.html"), 404
    outcome = request.form.get("outcome", "")
    text = request.form.get("note", "")
    try:
        service.record_finding(
            get_session(), g.auditor, seq, outcome, text, g.get("correlation_id")
        )
    except service.ConsoleError as exc:
        message = FINDING_MESSAGES[exc.code]()
        return _event_page(seq, {exc.field: message}, request.form)
    return redirect(url_for("console.queue", done=seq), 303)


@bp.get("/queue")
@auditor_page
def queue() -> ResponseReturnValue:
    """Break-glass accesses and flagged permits awaiting a finding, and recent findings."""
    session = get_session()
    upto = _record("audit.search", filters={"queue": "review"})
    rows, waiting = service.review_queue(session, upto)
    done = request.args.get("done", "")
    return render_template(
        "console/queue.html",
        rows=rows,
        waiting=waiting,
        findings=service.recent_findings(session),
        done=int(done) if done.isdigit() and len(done) < 20 else None,
    )
