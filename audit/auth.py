"""Who may use the auditor API: an officer holding the ``auditor`` role, by access token.

The token (RFC 9068, from the broker's provider) must carry the ``audit`` scope and the officer;
the officer's roles are then read from the database, not trusted from the token, so revoking the
role or disabling the officer takes effect at once, on every node.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass

from flask import current_app, request
from sqlalchemy.orm import Session

from broker.problems import Problem
from identity.endpoints import check_bound_token
from identity.models import Officer
from identity.tokens import InvalidToken, verify_access_token

AUDIT_SCOPE = "audit"
AUDIT_ROLE = "auditor"
RESOURCE_PATH = "/audit/v1"


@dataclass(frozen=True)
class Auditor:
    client_id: str
    agency: str
    officer_id: uuid.UUID


def _challenge(status: int, title: str, detail: str, error: str | None = None) -> Problem:
    problem = Problem.of(status, title, detail)
    challenge = f'Bearer realm="casebroker", scope="{AUDIT_SCOPE}"'
    if error:
        challenge += f', error="{error}"'
    problem.headers["WWW-Authenticate"] = challenge
    return problem


def authenticate_auditor(session: Session) -> Auditor:
    """RFC 6750 bearer or RFC 9449 DPoP authentication, then the auditor role checked in the
    database."""
    kind, _, token = request.headers.get("Authorization", "").partition(" ")
    if kind.lower() not in ("bearer", "dpop") or not token.strip():
        raise _challenge(
            401,
            "Authentication required",
            "Send an access token: Authorization: Bearer <token>, or DPoP <token> with a proof.",
        )
    config = current_app.config
    try:
        info = verify_access_token(
            session,
            token.strip(),
            config["ISSUER"],
            config["ISSUER"] + RESOURCE_PATH,
            AUDIT_SCOPE,
            config["CLOCK_SKEW"],
        )
    except InvalidToken as exc:
        title = (
            "Insufficient scope" if exc.error == "insufficient_scope" else "Access token rejected"
        )
        raise _challenge(exc.status, title, str(exc), exc.error) from None
    # RFC 9449 section 7.1: a sender-constrained token needs the DPoP scheme and a proof by
    # its key; it is never accepted as a bearer token. The proof's jti is burned in its own
    # transaction: end this session's reads first, so a request never holds two connections.
    session.commit()
    refused = check_bound_token(token.strip(), kind, info.cnf, request.path)
    if refused:
        error, detail = refused
        raise _challenge(401, "Access token rejected", detail, error)
    officer = None
    if info.officer:
        try:
            officer = session.get(Officer, uuid.UUID(str(info.officer)))
        except ValueError:
            officer = None
    if officer is None or officer.status != "active" or officer.agency_id != info.agency:
        raise Problem.of(403, "Not an auditor", "The token does not carry an active officer.")
    if AUDIT_ROLE not in officer.role_names:
        raise Problem.of(403, "Not an auditor", "The officer does not hold the auditor role.")
    return Auditor(info.client_id, info.agency, officer.id)
