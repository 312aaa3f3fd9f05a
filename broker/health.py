"""Liveness and readiness probes for load balancers and orchestrators."""

from __future__ import annotations

from flask import Blueprint, current_app, jsonify
from flask.typing import ResponseReturnValue
from sqlalchemy.exc import SQLAlchemyError

from broker.db import get_db
from broker.migrate import current_revision, head_revision

bp = Blueprint("health", __name__)


@bp.get("/healthz")
def healthz() -> ResponseReturnValue:
    """The process is up; says nothing about its dependencies."""
    return jsonify(status="ok")


@bp.get("/readyz")
def readyz() -> ResponseReturnValue:
    """Ready to serve: the database answers and its schema is at the code's migration head."""
    try:
        current = current_revision(get_db().engine)
    except SQLAlchemyError:
        return jsonify(status="unavailable", database="unreachable"), 503
    head = head_revision()
    if current != head:
        return jsonify(
            status="unavailable", database="ok", migrations="pending", current=current, head=head
        ), 503
    engine = current_app.extensions.get("casebroker.policy")
    if engine is not None and not engine.loaded:
        # Without a policy set every decision is a deny: serving would only refuse lookups.
        return jsonify(status="unavailable", database="ok", policies="not loaded"), 503
    policies = {"policies": engine.version} if engine is not None else {}
    return jsonify(status="ok", database="ok", migrations="current", revision=current, **policies)
