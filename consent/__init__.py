"""Consent: records and their lifecycle, signed receipts, the citizens' notification outbox.

The public API is the service (``ConsentService``, ``Terms``, ``Actor``), the decision-time
read the exchange uses (``in_force``, ``covers``), receipts (``verify_receipt``) and the
notification functions the citizen portal calls (``list_notifications``, ``mark_read``).
"""

from __future__ import annotations

from flask import Flask

from consent.demo import seed_demo_consents
from consent.errors import (
    ConsentError,
    ConsentNotFound,
    InvalidTerms,
    PersonNotFound,
    RequestExpired,
    StateConflict,
)
from consent.notifications import list_notifications, mark_read, set_contact_email
from consent.receipts import ReceiptInvalid, verify_receipt
from consent.service import (
    Actor,
    ConsentService,
    ConsentSettings,
    Terms,
    effective_status,
    in_force,
)


def init_app(app: Flask) -> None:
    """Check the consent settings, wire the consent API, render refusals as problems."""
    from broker.config import ConfigError
    from consent import views

    config = app.config
    if config["SMTP_SECURITY"] not in ("starttls", "ssl", "none"):
        raise ConfigError("CASEBROKER_SMTP_SECURITY must be starttls, ssl or none")
    for key in (
        "CONSENT_REQUEST_TTL_DAYS",
        "CONSENT_MAX_DAYS",
        "CONSENT_EXPIRY_NOTICE_DAYS",
        "SMTP_PORT",
        "SMTP_TIMEOUT",
    ):
        if int(config[key]) <= 0:
            raise ConfigError(f"CASEBROKER_{key} must be positive")
    app.register_blueprint(views.bp)
    app.register_error_handler(ConsentError, views.consent_problem)


__all__ = [
    "Actor",
    "ConsentError",
    "ConsentNotFound",
    "ConsentService",
    "ConsentSettings",
    "InvalidTerms",
    "PersonNotFound",
    "ReceiptInvalid",
    "RequestExpired",
    "StateConflict",
    "Terms",
    "effective_status",
    "in_force",
    "init_app",
    "list_notifications",
    "mark_read",
    "seed_demo_consents",
    "set_contact_email",
    "verify_receipt",
]
