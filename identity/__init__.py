"""Identity: the OAuth 2.0 authorization server, agency clients, signing keys, persons."""

from __future__ import annotations

from flask import Flask

from identity import views
from identity.cli import clients_group
from identity.server import create_server


def init_app(app: Flask) -> None:
    """Wire the identity endpoints and commands."""
    app.extensions["casebroker.oauth"] = create_server(app)
    app.register_blueprint(views.bp)
    app.cli.add_command(clients_group)
