"""The application factory."""

from __future__ import annotations

import logging
import secrets
from collections.abc import Mapping
from typing import Any

from flask import Flask, Response, g, request

from broker import db, health, problems
from broker.config import load_config


def create_app(
    test_config: Mapping[str, Any] | None = None, environ: Mapping[str, str] | None = None
) -> Flask:
    """Build an app: defaults, then environment variables, then ``test_config`` overrides.

    Raises ``ConfigError`` (one line, no traceback needed) when the configuration is invalid.
    """
    config = load_config(environ, test_config)
    app = Flask("broker", instance_path=config["INSTANCE_PATH"])
    app.config.update(config)
    app.json.sort_keys = False
    logging.getLogger("casebroker").setLevel(config["LOG_LEVEL"])

    db.init_app(app)
    problems.init_app(app)
    app.before_request(_assign_correlation_id)
    app.after_request(_security_headers)
    app.register_blueprint(health.bp)

    import audit
    import consent
    import identity
    from audit import console
    from broker import cases, exchange, openapi, portal

    identity.init_app(app)
    audit.init_app(app)
    exchange.init_app(app)
    consent.init_app(app)
    cases.init_app(app)
    portal.init_app(app)
    console.init_app(app)
    app.register_blueprint(openapi.bp)
    return app


def _assign_correlation_id() -> None:
    """Every request gets an id that reaches the caller, the logs and the audit trail."""
    g.correlation_id = secrets.token_hex(16)


def _security_headers(response: Response) -> Response:
    response.headers.setdefault("X-Correlation-Id", g.get("correlation_id", ""))
    response.headers.setdefault("X-Content-Type-Options", "nosniff")
    response.headers.setdefault("Referrer-Policy", "no-referrer")
    if request.path.startswith(("/token", "/oauth")):
        response.headers["Cache-Control"] = "no-store"
    return response
