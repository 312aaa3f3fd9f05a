"""HTTP layer of the consent API: authenticate, parse, call the service, render.

Agencies authenticate with a bearer access token carrying the ``consent`` scope. Citizens
are whoever the app's citizen resolver says is logged in (``app.extensions
["casebroker.citizen"]``, a callable returning the person's id or ``None``), which the
identity provider's login supplies; without one, every citizen endpoint answers 401.
"""

from __future__ import annotations

import base64
import binascii
import uuid
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

from flask import Blueprint, Response, current_app, g, jsonify, render_template, request
from flask.typing import ResponseReturnValue
from marshmallow import Schema, ValidationError
from sqlalchemy import and_, or_, select

from broker.db import get_session
from broker.exchange.views import authenticate
from broker.models import Agency, DataCategory, Purpose
from broker.problems import Problem, ValidationProblem, parse_json, problem_response
from consent import notifications
from consent.errors import ConsentError
from consent.models import Consent, ConsentEvent
from consent.receipts import ReceiptInvalid, verify_receipt
from consent.schemas import (
    CitizenGrantSchema,
    ConsentRequestSchema,
    ContactSchema,
    EmptySchema,
    ListQuery,
    NotificationQuery,
    ReceiptVerifySchema,
    utc,
)
from consent.service import (
    Actor,
    ConsentService,
    ConsentSettings,
    Terms,
    effective_status,
    purpose_categories,
)
from identity.keys import published_jwks
from identity.models import IdentityLink

bp = Blueprint("consent", __name__, url_prefix="/consent/v1", template_folder="templates")

SCOPE = "consent"
#: The receipt page is static: no scripts, no frames, its own inline style only.
RECEIPT_PAGE_CSP = (
    "default-src 'none'; style-src 'unsafe-inline'; base-uri 'none'; form-action 'none'; "
    "frame-ancestors 'none'"
)
CITIZEN_RESOLVER = "casebroker.citizen"


def service() -> ConsentService:
    """The request's consent service; the portal's views use the same."""
    return ConsentService(
        get_session(), ConsentSettings.from_config(current_app.config), g.get("correlation_id")
    )


def consent_problem(exc: ConsentError) -> Response:
    """Every service refusal becomes an RFC 9457 problem with the refusal's own type."""
    problem = Problem(exc.detail)
    problem.status, problem.slug, problem.title = exc.status, exc.slug, exc.title
    return problem_response(problem)


# --- authentication -------------------------------------------------------------------------


def authenticate_agency() -> Actor:
    """The exchange API's token check (bearer or DPoP-bound), with the ``consent`` scope:
    agencies use one kind of token for every API of the broker."""
    caller = authenticate(SCOPE)
    return Actor.agency(caller.agency, caller.client_id, caller.officer)


def current_citizen() -> uuid.UUID:
    resolver: Callable[[], uuid.UUID | None] | None = current_app.extensions.get(CITIZEN_RESOLVER)
    person_id = resolver() if resolver else None
    if person_id is None:
        raise Problem.of(401, "Authentication required", "Log in to the citizen portal first.")
    return person_id


# --- parsing --------------------------------------------------------------------------------


def require_json_post() -> None:
    """Citizen changes carry a JSON body (``{}`` will do): a cross-site page cannot send one
    without a CORS preflight, which the broker never grants, so a logged-in citizen's browser
    cannot be made to approve or revoke by another site."""
    parse_json(EmptySchema)


def parse_query(schema: Schema) -> dict[str, Any]:
    try:
        return schema.load(request.args.to_dict())
    except ValidationError as exc:
        raise ValidationProblem(
            "The query does not match the schema.", errors=exc.messages
        ) from None


def parse_id(consent_id: str) -> uuid.UUID:
    try:
        return uuid.UUID(consent_id)
    except ValueError:
        raise Problem.of(404, "Consent not found", "That is not a consent id.") from None


def _terms(data: dict[str, Any], grantee: str) -> Terms:
    return Terms(
        grantee=grantee,
        purpose=data["purpose"],
        categories=tuple(data["categories"]),
        provider=data["provider"],
        fields=data["fields_"],
    )


# --- representations ------------------------------------------------------------------------


def _history(consent: Consent) -> list[dict[str, Any]]:
    return [
        {
            "from": e.from_status,
            "to": e.to_status,
            "at": utc(_aware(e.at)),
            "actor": e.actor,
            "channel": e.channel,
        }
        for e in consent.history
    ]


def _aware(moment: datetime) -> datetime:
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def _terms_json(consent: Consent) -> dict[str, Any]:
    return {
        "id": str(consent.id),
        "status": effective_status(consent, datetime.now(UTC)),
        "recorded_status": consent.status,
        "grantee": consent.grantee_agency_id,
        "provider": consent.provider_agency_id,
        "purpose": consent.purpose_id,
        "categories": list(consent.categories),
        "fields": consent.fields,
        "valid_from": utc(_aware(consent.valid_from)) if consent.status != "requested" else None,
        "valid_until": utc(_aware(consent.valid_until)) if consent.status != "requested" else None,
        "duration_days": (_aware(consent.valid_until) - _aware(consent.valid_from))
        // timedelta(days=1),
        "requested_at": utc(_aware(consent.created_at)),
        "request_expires_at": utc(_aware(consent.request_expires_at))
        if consent.request_expires_at
        else None,
        "granted_at": utc(_aware(consent.granted_at)) if consent.granted_at else None,
        "justification": consent.justification,
    }


def agency_json(consent: Consent, identifiers: dict[uuid.UUID, dict[str, str]]) -> dict[str, Any]:
    body = _terms_json(consent)
    body["person"] = identifiers.get(consent.person_id)
    body["history"] = _history(consent)
    return body


def citizen_json(consent: Consent) -> dict[str, Any]:
    body = _terms_json(consent)
    body["history"] = _history(consent)
    body["receipt_available"] = consent.receipt_jws is not None
    return body


def _identifiers(agency: str, person_ids: set[uuid.UUID]) -> dict[uuid.UUID, dict[str, str]]:
    """The agency's own identifier for each person: never another agency's, never ours."""
    if not person_ids:
        return {}
    rows = get_session().execute(
        select(IdentityLink.person_id, IdentityLink.scheme, IdentityLink.value)
        .where(IdentityLink.agency_id == agency, IdentityLink.person_id.in_(person_ids))
        .order_by(IdentityLink.scheme)
    )
    found: dict[uuid.UUID, dict[str, str]] = {}
    for person_id, scheme, value in rows:
        found.setdefault(person_id, {"scheme": scheme, "value": value})
    return found


def _page(query: Any, args: dict[str, Any]) -> tuple[list[Consent], str | None]:
    """Keyset pagination, newest first, by (created_at, id); the cursor is opaque."""
    if args["status"]:
        query = query.where(Consent.status == args["status"])
    if args["purpose"]:
        query = query.where(Consent.purpose_id == args["purpose"])
    if args["cursor"]:
        created, last_id = _decode_cursor(args["cursor"])
        query = query.where(
            or_(
                Consent.created_at < created,
                and_(Consent.created_at == created, Consent.id < last_id),
            )
        )
    rows = list(
        get_session().scalars(
            query.order_by(Consent.created_at.desc(), Consent.id.desc()).limit(args["limit"] + 1)
        )
    )
    more = len(rows) > args["limit"]
    rows = rows[: args["limit"]]
    cursor = _encode_cursor(rows[-1]) if more else None
    return rows, cursor


def _encode_cursor(consent: Consent) -> str:
    raw = f"{_aware(consent.created_at).isoformat()}|{consent.id}".encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def _decode_cursor(cursor: str) -> tuple[datetime, uuid.UUID]:
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode()
        created, _, last_id = raw.partition("|")
        return datetime.fromisoformat(created), uuid.UUID(last_id)
    except (binascii.Error, UnicodeDecodeError, ValueError):
        raise ValidationProblem("The cursor is not one this API gave.") from None


# --- agencies -------------------------------------------------------------------------------


@bp.post("/requests")
def create_request() -> ResponseReturnValue:
    """An agency asks a person, named by its own identifier, for consent."""
    actor = authenticate_agency()
    data = parse_json(ConsentRequestSchema)
    agency = str(actor.agency_id)
    consent, created = service().request(
        actor,
        data["person"]["scheme"],
        data["person"]["value"],
        _terms(data, agency),
        data["duration_days"],
        data["justification"],
    )
    body = agency_json(consent, {consent.person_id: dict(data["person"])})
    response = jsonify(body)
    response.status_code = 201 if created else 200
    response.headers["Location"] = f"{bp.url_prefix}/consents/{consent.id}"
    return response


@bp.get("/consents/<consent_id>")
def agency_consent(consent_id: str) -> ResponseReturnValue:
    actor = authenticate_agency()
    agency = str(actor.agency_id)
    consent = service().for_agency(agency, parse_id(consent_id))
    return jsonify(agency_json(consent, _identifiers(agency, {consent.person_id})))


@bp.get("/consents")
def agency_consents() -> ResponseReturnValue:
    actor = authenticate_agency()
    agency = str(actor.agency_id)
    args = parse_query(ListQuery())
    rows, cursor = _page(select(Consent).where(Consent.grantee_agency_id == agency), args)
    identifiers = _identifiers(agency, {c.person_id for c in rows})
    return jsonify(consents=[agency_json(c, identifiers) for c in rows], next_cursor=cursor)


# --- public ---------------------------------------------------------------------------------


@bp.get("/purposes/<purpose_id>")
def purpose_notice(purpose_id: str) -> ResponseReturnValue:
    """What a purpose is and what consent under it may cover: the receipts' notice link."""
    session = get_session()
    purpose = session.get(Purpose, purpose_id)
    if purpose is None:
        raise Problem.of(404, "Purpose not found", f"No purpose {purpose_id!r} is registered.")
    return jsonify(
        id=purpose.id,
        name=purpose.name,
        description=purpose.description,
        max_consent_days=purpose.max_consent_days,
        consent_categories=purpose_categories(session, purpose.id),
    )


@bp.post("/receipts/verify")
def verify() -> ResponseReturnValue:
    """Check a receipt's signature against the broker's published keys. It says nothing
    about the consent's current state, which only its citizen and grantee may see."""
    data = parse_json(ReceiptVerifySchema)
    try:
        verified = verify_receipt(
            data["receipt"], published_jwks(get_session()), current_app.config["ISSUER"]
        )
    except ReceiptInvalid as exc:
        raise Problem.of(422, "Invalid receipt", str(exc)) from None
    return jsonify(valid=True, kid=verified.kid, alg=verified.alg, claims=verified.claims)


# --- citizens -------------------------------------------------------------------------------


@bp.get("/me/consents")
def my_consents() -> ResponseReturnValue:
    person_id = current_citizen()
    args = parse_query(ListQuery())
    rows, cursor = _page(select(Consent).where(Consent.person_id == person_id), args)
    return jsonify(consents=[citizen_json(c) for c in rows], next_cursor=cursor)


@bp.post("/me/consents")
def my_grant() -> ResponseReturnValue:
    person_id = current_citizen()
    data = parse_json(CitizenGrantSchema)
    svc = service()
    valid_from = data["valid_from"] or svc.now
    valid_until = data["valid_until"] or valid_from + timedelta(days=data["duration_days"])
    consent = svc.grant(person_id, _terms(data, data["grantee"]), valid_until, valid_from)
    response = jsonify(citizen_json(consent))
    response.status_code = 201
    response.headers["Location"] = f"{bp.url_prefix}/me/consents/{consent.id}"
    return response


@bp.get("/me/consents/<consent_id>")
def my_consent(consent_id: str) -> ResponseReturnValue:
    person_id = current_citizen()
    return jsonify(citizen_json(service().for_citizen(person_id, parse_id(consent_id))))


@bp.post("/me/consents/<consent_id>/approve")
def my_approve(consent_id: str) -> ResponseReturnValue:
    person_id = current_citizen()
    require_json_post()
    return jsonify(citizen_json(service().approve(person_id, parse_id(consent_id))))


@bp.post("/me/consents/<consent_id>/decline")
def my_decline(consent_id: str) -> ResponseReturnValue:
    person_id = current_citizen()
    require_json_post()
    return jsonify(citizen_json(service().decline(person_id, parse_id(consent_id))))


@bp.post("/me/consents/<consent_id>/revoke")
def my_revoke(consent_id: str) -> ResponseReturnValue:
    person_id = current_citizen()
    require_json_post()
    consent = service().revoke(parse_id(consent_id), Actor.citizen(), person_id=person_id)
    return jsonify(citizen_json(consent))


def _my_receipt(consent_id: str) -> Consent:
    person_id = current_citizen()
    consent = service().for_citizen(person_id, parse_id(consent_id))
    if consent.receipt_jws is None:
        raise Problem.of(404, "No receipt", "Only a granted consent has a receipt.")
    return consent


@bp.get("/me/consents/<consent_id>/receipt")
def my_receipt(consent_id: str) -> ResponseReturnValue:
    """The signed receipt as a file (``application/jose``, RFC 7515 section 9.2.1)."""
    consent = _my_receipt(consent_id)
    response = Response(consent.receipt_jws + "\n", mimetype="application/jose")
    response.headers["Content-Disposition"] = (
        f'attachment; filename="consent-receipt-{consent.id}.jws"'
    )
    response.headers["Cache-Control"] = "no-store"
    return response


@bp.get("/me/consents/<consent_id>/receipt.html")
def my_receipt_page(consent_id: str) -> ResponseReturnValue:
    """The receipt as a printable page; the portal links to it."""
    consent = _my_receipt(consent_id)
    response = Response(render_receipt_page(consent), mimetype="text/html")
    response.headers["Cache-Control"] = "no-store"
    response.headers["Content-Security-Policy"] = RECEIPT_PAGE_CSP
    return response


def render_receipt_page(consent: Consent) -> str:
    session = get_session()
    verified = verify_receipt(
        consent.receipt_jws or "", published_jwks(session), current_app.config["ISSUER"]
    )
    claims = verified.claims
    names = {
        "grantee": session.get(Agency, consent.grantee_agency_id),
        "provider": session.get(Agency, consent.provider_agency_id)
        if consent.provider_agency_id
        else None,
        "purpose": session.get(Purpose, consent.purpose_id),
    }
    categories = {
        c.id: c
        for c in session.scalars(
            select(DataCategory).where(DataCategory.id.in_(consent.categories))
        )
    }
    history = session.scalars(
        select(ConsentEvent).where(ConsentEvent.consent_id == consent.id).order_by(ConsentEvent.id)
    ).all()
    return render_template(
        "consent/receipt.html",
        consent=consent,
        claims=claims,
        terms=claims["terms"],
        kid=verified.kid,
        alg=verified.alg,
        names=names,
        categories=categories,
        status=effective_status(consent, datetime.now(UTC)),
        history=history,
        jwks_uri=current_app.config["ISSUER"] + "/jwks.json",
        download=f"{bp.url_prefix}/me/consents/{consent.id}/receipt",
        issued=utc(datetime.fromtimestamp(claims["iat"], UTC)),
    )


@bp.get("/me/notifications")
def my_notifications() -> ResponseReturnValue:
    person_id = current_citizen()
    args = parse_query(NotificationQuery())
    views = notifications.list_notifications(
        get_session(),
        person_id,
        limit=args["limit"],
        before=args["before"],
        unread_only=args["unread"],
        portal_url=current_app.config["ISSUER"],
    )
    return jsonify(notifications=[v.to_json() for v in views])


@bp.post("/me/notifications/<int:notification_id>/read")
def my_notification_read(notification_id: int) -> ResponseReturnValue:
    person_id = current_citizen()
    require_json_post()
    notifications.mark_read(get_session(), person_id, notification_id)
    return "", 204


@bp.put("/me/contact")
def my_contact() -> ResponseReturnValue:
    """Where notifications are e-mailed; ``{"email": null}`` keeps them in the portal only."""
    person_id = current_citizen()
    data = parse_json(ContactSchema)
    notifications.set_contact_email(get_session(), person_id, data["email"])
    return jsonify(email=data["email"])
