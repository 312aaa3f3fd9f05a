"""HTTP layer of the exchange API: authenticate, parse, call the service, render."""

from __future__ import annotations

import logging

from flask import Blueprint, current_app, g, jsonify, request
from flask.typing import ResponseReturnValue

from broker.db import get_autocommit_connection, get_session
from broker.exchange.schemas import LookupRequestSchema
from broker.exchange.service import (
    AuditUnavailable,
    Caller,
    LookupRejected,
    LookupRequest,
    LookupService,
)
from broker.problems import Problem, ServiceUnavailableProblem, parse_json
from identity.dpop import DPoPError, current_nonce, verify_proof
from identity.server import RESOURCE_PATH
from identity.tokens import InvalidToken, verify_access_token

log = logging.getLogger("casebroker.exchange")
bp = Blueprint("exchange", __name__, url_prefix=RESOURCE_PATH)


class TokenProblem(Problem):
    """RFC 6750 section 3 / RFC 9449 7.1: the challenge goes in WWW-Authenticate (with a
    fresh ``DPoP-Nonce`` when one is needed), the details in the body."""

    slug, title = "invalid-token", "Access token rejected"

    def __init__(self, exc: InvalidToken, scheme: str = "Bearer", error: str | None = None):
        super().__init__(str(exc))
        self.status = exc.status
        error = error or exc.error
        if error == "insufficient_scope":
            self.slug, self.title = "insufficient-scope", "Insufficient scope"
        elif error in ("invalid_dpop_proof", "use_dpop_nonce"):
            self.slug, self.title = "invalid-dpop-proof", "DPoP proof rejected"
        challenge = "DPoP" if scheme.lower() == "dpop" else "Bearer"
        extra = ', algs="ES256 PS256 EdDSA"' if challenge == "DPoP" else ""
        self.headers["WWW-Authenticate"] = (
            f'{challenge} realm="casebroker", error="{error}", scope="lookup"{extra}'
        )
        if error == "use_dpop_nonce":
            self.headers["DPoP-Nonce"] = current_nonce(current_app.config["SECRET_KEY"])


def authenticate(scope: str) -> Caller:
    """RFC 6750 / RFC 9449 7.1: a DPoP-bound token needs the DPoP scheme and a proof signed by
    its key for this method and URL; FAPI clients' tokens must be bound. An officer's token
    (code flow) carries the officer, their agency and roles; a machine token the client's."""
    scheme, _, token = request.headers.get("Authorization", "").partition(" ")
    token = token.strip()
    if scheme.lower() not in ("bearer", "dpop") or not token:
        problem = Problem.of(
            401,
            "Authentication required",
            "Send an access token: Authorization: DPoP <token> with a DPoP proof.",
        )
        problem.headers["WWW-Authenticate"] = (
            'DPoP realm="casebroker", algs="ES256 PS256 EdDSA", Bearer realm="casebroker"'
        )
        raise problem
    config = current_app.config
    session = get_session()
    try:
        token_info = verify_access_token(
            session,
            token,
            config["ISSUER"],
            config["ISSUER"] + RESOURCE_PATH,
            scope,
            config["CLOCK_SKEW"],
        )
    except InvalidToken as exc:
        raise TokenProblem(exc, scheme) from None
    bound = (token_info.cnf or {}).get("jkt")
    if scheme.lower() == "bearer":
        registered_non_fapi = token_info.client_fapi is not None and not token_info.client_fapi
        if bound or not registered_non_fapi:
            raise TokenProblem(
                InvalidToken("This token must be used with the DPoP scheme and a proof."), "DPoP"
            )
    else:
        if not bound:
            raise TokenProblem(InvalidToken("This token is not DPoP-bound."), "DPoP")
        # The proof's jti is burned on a connection of its own; end the reads so far first,
        # so that a request never holds two pooled connections (a pool-wide deadlock under load).
        session.commit()
        try:
            proof = verify_proof(
                request.headers.get("DPoP"),
                method=request.method,
                url=config["ISSUER"] + request.path,
                burns=get_autocommit_connection(),
                access_token=token,
                nonce_secret=config["SECRET_KEY"] if config["DPOP_NONCE"] else None,
                skew=int(config["CLOCK_SKEW"]),
            )
        except DPoPError as exc:
            raise TokenProblem(InvalidToken(exc.description), "DPoP", exc.error) from None
        if proof.jkt != bound:
            raise TokenProblem(
                InvalidToken("The DPoP proof is not signed by the key the token is bound to."),
                "DPoP",
                "invalid_dpop_proof",
            )
    if token_info.grant_id is not None and token_info.officer is None:
        raise Problem.of(403, "Forbidden", "Only officers may use the exchange for a person.")
    return Caller(
        token_info.client_id, token_info.agency, token_info.officer, token_info.officer_roles
    )


@bp.post("/lookups")
def create_lookup() -> ResponseReturnValue:
    """Ask every other agency holding the person for the categories, under a purpose."""
    caller = authenticate("lookup")
    data = parse_json(LookupRequestSchema)
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
