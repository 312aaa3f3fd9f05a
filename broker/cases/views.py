"""HTTP layer of case registrations: an agency registers, reads and closes its own cases."""

from __future__ import annotations

from typing import Any

from flask import Blueprint, g, jsonify, request, url_for
from flask.typing import ResponseReturnValue
from sqlalchemy import select

from broker.cases.models import Case
from broker.cases.schemas import CaseCloseSchema, CaseRequestSchema
from broker.cases.service import Actor, CaseError, CaseInput, CaseRegistry
from broker.db import get_session
from broker.exchange.views import authenticate
from broker.problems import Problem, parse_json
from identity.models import IdentityLink
from identity.server import RESOURCE_PATH

bp = Blueprint("cases", __name__, url_prefix=RESOURCE_PATH + "/cases")

SCOPE = "cases"
PAGE_SIZE = 100


def _registry() -> CaseRegistry:
    caller = authenticate(SCOPE)
    actor = Actor(caller.agency, caller.client_id, caller.officer)
    return CaseRegistry(get_session(), actor, g.correlation_id)


def _problem(exc: CaseError) -> Problem:
    return Problem.of(exc.status, exc.title, exc.detail)


def _render(case: Case) -> dict[str, Any]:
    link = (
        get_session()
        .execute(
            select(IdentityLink.scheme, IdentityLink.value)
            .where(
                IdentityLink.person_id == case.person_id, IdentityLink.agency_id == case.agency_id
            )
            .order_by(IdentityLink.scheme)
            .limit(1)
        )
        .first()
    )
    return {
        "reference": case.reference,
        "person": {"scheme": link.scheme, "value": link.value} if link else None,
        "capacity": case.capacity_id,
        "purposes": [p.purpose_id for p in case.purposes],
        "starts_on": case.starts_on.isoformat(),
        "ends_on": case.ends_on.isoformat() if case.ends_on else None,
        "status": case.status,
        "closed_at": case.closed_at.isoformat() if case.closed_at else None,
        "close_reason": case.close_reason,
        "officers": [str(a.officer_id) for a in case.assignees if a.officer_id],
        "teams": [a.team for a in case.assignees if a.team],
    }


@bp.post("")
def register_case() -> ResponseReturnValue:
    """Register an open case on a person, named by your agency's own identifier."""
    registry = _registry()
    data = parse_json(CaseRequestSchema)
    item = CaseInput(
        reference=data["reference"],
        scheme=data["person"]["scheme"],
        value=data["person"]["value"],
        capacity=data["capacity"],
        purposes=tuple(data["purposes"]),
        starts_on=data["starts_on"],
        ends_on=data["ends_on"],
        officers=tuple(str(o) for o in data["officers"]),
        teams=tuple(data["teams"]),
    )
    session = get_session()
    try:
        case = registry.register(item)
    except CaseError as exc:
        session.rollback()
        raise _problem(exc) from None
    session.commit()
    response = jsonify(_render(case))
    response.status_code = 201
    response.headers["Location"] = url_for("cases.get_case", reference=case.reference)
    return response


@bp.get("/<path:reference>")
def get_case(reference: str) -> ResponseReturnValue:
    """One of your agency's cases; other agencies' cases are not found."""
    registry = _registry()
    try:
        return jsonify(_render(registry.get(reference)))
    except CaseError as exc:
        raise _problem(exc) from None


@bp.get("")
def list_cases() -> ResponseReturnValue:
    """Your agency's cases in reference order, a page at a time (``after`` is the cursor)."""
    registry = _registry()
    status = request.args.get("status")
    if status not in (None, "open", "closed"):
        raise Problem.of(400, "Invalid status", "status is open or closed.")
    after = request.args.get("after", "")
    query = (
        select(Case)
        .where(Case.agency_id == registry.actor.agency, Case.reference > after)
        .order_by(Case.reference)
        .limit(PAGE_SIZE + 1)
    )
    if status:
        query = query.where(Case.status == status)
    cases = list(get_session().scalars(query))
    page = cases[:PAGE_SIZE]
    more = len(cases) > PAGE_SIZE
    return jsonify(
        cases=[_render(c) for c in page], next_cursor=page[-1].reference if more else None
    )


@bp.post("/<path:reference>/close")
def close_case(reference: str) -> ResponseReturnValue:
    """Close a case now: from the next lookup on, it no longer makes one lawful."""
    registry = _registry()
    data = parse_json(CaseCloseSchema) if request.content_length else {"reason": None}
    session = get_session()
    try:
        case = registry.close(reference, data["reason"])
    except CaseError as exc:
        session.rollback()
        raise _problem(exc) from None
    session.commit()
    return jsonify(_render(case))
