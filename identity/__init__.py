"""Identity: the OAuth 2.0 / OpenID Connect provider, clients, keys and identity links."""

from __future__ import annotations

from flask import Flask


def init_app(app: Flask) -> None:
    """Wire the identity blueprints and commands; nothing else happens here."""
