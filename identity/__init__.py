"""Identity: the OpenID Connect provider, agency clients, signing keys, persons, accounts."""

from __future__ import annotations

from flask import Flask

from identity import authorize, endpoints, i18n, pages, views, web
from identity.cli import accounts_group, clients_group, keys_group
from identity.server import create_server
from identity.sessions import DatabaseSessionInterface
from identity.upstream import load_providers


def init_app(app: Flask) -> None:
    """Wire the identity endpoints, pages, browser sessions, languages and commands."""
    app.session_interface = DatabaseSessionInterface()
    app.extensions["casebroker.upstream"] = load_providers(app.config["UPSTREAM_PROVIDERS"])
    i18n.init_app(app)
    pages.init_app(app)
    app.extensions["casebroker.oauth"] = create_server(app)
    app.register_blueprint(views.bp)
    app.register_blueprint(web.bp)
    app.register_blueprint(authorize.bp)
    app.register_blueprint(endpoints.bp)
    app.cli.add_command(clients_group)
    app.cli.add_command(keys_group)
    app.cli.add_command(accounts_group)
