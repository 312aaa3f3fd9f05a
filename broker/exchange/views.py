"""HTTP layer of the exchange API: authenticate, parse, call the service, render."""

from __future__ import annotations

import logging
from typing import Any

from flask import Blueprint, current_app, g, jsonify, request
from flask.typing import ResponseReturnValue
from marshmallow import Schema, ValidationError

from broker.db import get_session
from broker.exchange.schemas import LookupRequestSchema
from broker.exchange.service import (
    AuditUnavailable,
    Caller,
    LookupRejected,
    LookupRequest,
    LookupService,
)
from broker.problems import Problem, ServiceUnavailableProblem, ValidationProblem
from identity.server import RESOURCE_PATH
from identity.tokens import InvalidToken, verify_access_token

log = logging.getLogger("casebroker.exchange")
bp = Blueprint("exchange", __name__, url_prefix=RESOURCE_PATH)


class TokenProblem(Problem):
    """RFC 6750 section 3: the challenge goes in WWW-Authenticate, the details in the body."""

    slug, title = "invalid-token", "Access token rejected"

    def __init__(self, exc: InvalidToken) -> None:
        super().__init__(str(exc))
        self.status = exc.status
        if exc.error == "insufficient_scope":
            self.slug, self.title = "insufficient-scope", "Insufficient scope"
        self.headers["WWW-Authenticate"] = (
            f'Bearer realm="casebroker", error="{exc.error}", scope="lookup"'
        )


def authenticate(scope: str) -> Caller:
    header = request.headers.get("Authorization", "")
    kind, _, token = header.partition(" ")
    if kind.lower() != "bearer" or not token.strip():
        problem = Problem.of(
            401, "Authentication required", "Send an access token: Authorization: Bearer <token>."
        )
        problem.headers["WWW-Authenticate"] = 'Bearer realm="casebroker"'
        raise problem
    config = current_app.config
    try:
        token_info = verify_access_token(
            get_session(),
            token.strip(),
            config["ISSUER"],
            config["ISSUER"] + RESOURCE_PATH,
            scope,
            config["CLOCK_SKEW"],
        )
    except InvalidToken as exc:
        raise TokenProblem(exc) from None
    return Caller(
        token_info.client_id, token_info.agency, token_info.officer, token_info.officer_roles
    )


def parse_json(schema: Schema) -> dict[str, Any]:
    if request.mimetype != "application/json":
        problem = Problem("Send the request body as application/json.")
        problem.status, problem.slug, problem.title = (
            415,
            "unsupported-media-type",
            "Unsupported media type",
        )
        raise problem
    body = request.get_json(silent=True)
    if body is None:
        raise Problem("The request body is not valid JSON.")
    try:
        return schema.load(body)
    except ValidationError as exc:
        raise ValidationProblem(
            "The request does not match the schema.", errors=exc.messages
        ) from None


@bp.post("/lookups")
def create_lookup() -> ResponseReturnValue:
    """Ask every other agency holding the person for the categories, under a purpose."""
    caller = authenticate("lookup")
    data = parse_json(LookupRequestSchema())
    lookup = LookupRequest(
        scheme=data["person"]["scheme"],
        value=data["person"]["value"],
        categories=tuple(data["categories"]),
        purpose=data["purpose"],
        justification=data["justification"],
        break_glass=data["break_glass"],
    )
    service = LookupService(
        get_session(),
        current_app.extensions["casebroker.policy"],
        current_app.extensions["casebroker.sources"],
        g.correlation_id,
    )
    try:
        result = service.run(caller, lookup)
    except LookupRejected as exc:
        raise Problem.of(exc.status, exc.title, exc.detail) from None
    except AuditUnavailable:
        log.exception("audit append failed (correlation id %s)", g.correlation_id)
        problem = ServiceUnavailableProblem(
            "The decisions could not be recorded, so no data is returned. Try again later."
        )
        problem.headers["Retry-After"] = "5"
        raise problem from None
    for entry in result.results:
        if entry["status"] == "unavailable":
            log.warning(
                "source %s unavailable for %s (correlation id %s)",
                entry["source"],
                entry["category"],
                g.correlation_id,
            )
    return jsonify(
        correlation_id=result.correlation_id,
        purpose=result.purpose,
        break_glass=result.break_glass,
        results=result.results,
    )
