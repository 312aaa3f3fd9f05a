"""The exchange API: federated lookups across agencies."""

from __future__ import annotations

from pathlib import Path

from flask import Flask

from broker.exchange import views
from broker.exchange.sources import SourceCaller
from policies import PolicyEngine


def init_app(app: Flask) -> None:
    """Wire the exchange: its blueprint, the policy engine and the source callers."""
    app.extensions["casebroker.policy"] = PolicyEngine(Path(app.config["POLICY_DIR"]))
    app.extensions["casebroker.sources"] = SourceCaller()
    app.register_blueprint(views.bp)
