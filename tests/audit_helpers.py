"""Helpers for the audit log tests: events, integration, auditors and their tokens, raw SQL."""

from __future__ import annotations

import secrets
import time
import uuid
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

from flask import Flask
from joserfc import jwt
from sqlalchemy import text

import audit
from audit import checkpoints, integrator, note
from audit.auth import RESOURCE_PATH
from broker.models import Agency
from identity.keys import active_key
from identity.models import Officer, OfficerRole


def field_values(record: Any) -> set[str]:
    """Every scalar value in a decoded record, as text: a test asks whether a field holds a
    value, never whether the serialised record contains it somewhere (a timestamp might)."""
    if isinstance(record, dict):
        return set().union(*(field_values(v) for v in record.values()))
    if isinstance(record, list):
        return set().union(*(field_values(v) for v in record))
    return {str(record)}


def sessions(app: Flask):
    return app.extensions["casebroker.db"].sessionmaker()


def append_events(
    app: Flask, count: int, when: datetime | None = None, **fields: Any
) -> list[audit.Appended]:
    """``count`` test events in one committed append."""
    stamp = audit.event_time(when or datetime.now(UTC))
    records = [
        audit.make_record("test.event", f"corr-{i}", stamp, n=i, **fields) for i in range(count)
    ]
    with sessions(app) as session:
        appended = audit.append(session, records)
        session.commit()
    return appended


def integrate(app: Flask) -> int:
    """Integrate everything pending; returns the tree size."""
    return integrator.run(app)[1].size


def execute(app: Flask, sql: str, **params: Any) -> None:
    """Raw SQL straight at the database, the way someone tampering with it would."""
    with app.extensions["casebroker.db"].engine.begin() as connection:
        connection.execute(text(sql), params)


def log_verifier(app: Flask) -> note.Verifier:
    response = app.test_client().get("/audit/v1/checkpoint-key")
    assert response.status_code == 200
    return note.parse_verifier_key(response.get_data(as_text=True))


def origin(app: Flask) -> str:
    return checkpoints.log_origin(app.config)


def make_officer(
    app: Flask,
    agency: str = "oversight",
    roles: Sequence[str] = ("auditor",),
    status: str = "active",
) -> uuid.UUID:
    with app.extensions["casebroker.db"].session() as session:
        if session.get(Agency, agency) is None:
            session.add(Agency(id=agency, name=agency.title(), sector="oversight"))
            session.flush()
        officer = Officer(agency_id=agency, display_name="A. Auditor", status=status)
        session.add(officer)
        session.flush()
        for role in roles:
            session.add(OfficerRole(officer_id=officer.id, role=role))
        return officer.id


def officer_token(
    app: Flask,
    officer: uuid.UUID | str | None,
    agency: str = "oversight",
    scope: str = "audit",
    roles: Sequence[str] = ("auditor",),
    audience: str | None = None,
    **overrides: Any,
) -> str:
    """An RFC 9068 access token signed by the broker's own key, as its provider issues them."""
    with app.extensions["casebroker.db"].sessionmaker() as session:
        loaded = active_key(session, app.config["KEY_ENCRYPTION_KEY_BYTES"])
    issuer = app.config["ISSUER"]
    now = int(time.time())
    claims: dict[str, Any] = {
        "iss": issuer,
        "aud": audience or issuer + RESOURCE_PATH,
        "iat": now,
        "exp": now + 300,
        "jti": secrets.token_urlsafe(12),
        "client_id": "oversight-console",
        "agency": agency,
        "scope": scope,
        "officer": str(officer) if officer else None,
        "roles": list(roles),
    }
    claims.update(overrides)
    claims = {k: v for k, v in claims.items() if v is not None}
    header = {"alg": "ES256", "kid": loaded.kid, "typ": "at+jwt"}
    return jwt.encode(header, claims, loaded.key, algorithms=["ES256"])


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def run_cli(app: Flask, *args: str):
    """``casebroker audit ARGS`` against this app."""
    from audit.cli import audit_group

    return app.test_cli_runner().invoke(audit_group, list(args))
