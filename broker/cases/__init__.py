"""Case registrations: an agency may look up only persons it has an open case on."""

from __future__ import annotations

from flask import Flask

from broker.cases.service import Actor, CaseError, CaseFacts, CaseInput, CaseRegistry, case_facts


def init_app(app: Flask) -> None:
    """Wire the case registration API."""
    from broker.cases import views

    app.register_blueprint(views.bp)


__all__ = [
    "Actor",
    "CaseError",
    "CaseFacts",
    "CaseInput",
    "CaseRegistry",
    "case_facts",
    "init_app",
]
