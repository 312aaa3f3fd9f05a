"""Audit events of the identity provider: logins, MFA changes, consents, key rotations.

Each is appended and committed in its own transaction before the response leaves, so an
event is recorded even when the request it belongs to fails afterwards.
"""

from __future__ import annotations

from typing import Any

from flask import g, has_request_context, request

import audit
from broker.db import get_db


def source_address() -> str | None:
    return request.remote_addr if has_request_context() else None


def record_event(kind: str, **fields: Any) -> None:
    """Append one event (``kind`` like ``login.succeeded``) and commit it."""
    correlation_id = g.get("correlation_id") if has_request_context() else None
    fields = {
        k: (str(v) if v is not None and k in ("person", "officer") else v)
        for k, v in fields.items()
    }
    record = audit.make_record(kind, correlation_id, audit.event_time(), **fields)
    with get_db().session() as session:
        audit.append(session, [record])
