"""Helpers for the auditor's console tests: officers with logins, lookup decisions, logging in."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

from audit_helpers import make_officer, sessions
from flask import Flask
from oidc_helpers import csrf_of

import audit
from identity.accounts import hash_password
from identity.models import Account

PASSWORD = "console-test-password-2026"


def officer_login(
    app: Flask, username: str, roles: Sequence[str] = ("auditor",), agency: str = "oversight"
) -> uuid.UUID:
    """An officer with ``roles`` and a password login; returns the officer id."""
    officer = make_officer(app, agency=agency, roles=roles)
    with app.extensions["casebroker.db"].session() as session:
        session.add(
            Account(
                username=username,
                password_hash=hash_password(PASSWORD),
                kind="officer",
                officer_id=officer,
            )
        )
    return officer


def log_in(client: Any, username: str) -> None:
    page = client.get("/login")
    response = client.post(
        "/login",
        data={"csrf_token": csrf_of(page.text), "username": username, "password": PASSWORD},
    )
    assert response.status_code == 303, response.text


def lookup_decisions(
    app: Flask,
    count: int = 1,
    when: datetime | None = None,
    officer: uuid.UUID | None = None,
    correlation: str | None = None,
    **fields: Any,
) -> list[int]:
    """``count`` lookup decisions shaped as the exchange writes them; their leaf indexes."""
    stamp = audit.event_time(when or datetime.now(UTC))
    defaults: dict[str, Any] = {
        "client": "health-emr",
        "requester": "health",
        "provider": "tax",
        "category": "income",
        "purpose": "emergency-care",
        "decision": "permit",
        "officer": str(officer) if officer else None,
    }
    defaults.update(fields)
    records = [
        audit.make_record("lookup.decision", correlation or uuid.uuid4().hex, stamp, **defaults)
        for _ in range(count)
    ]
    with sessions(app) as session:
        appended = audit.append(session, records)
        session.commit()
    return [a.index for a in appended]
