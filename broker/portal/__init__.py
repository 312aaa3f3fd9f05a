"""The citizen portal: a person's agencies, consent requests, consents and access history."""

from __future__ import annotations

import uuid
from pathlib import Path

from flask import Flask, session

from broker.portal.oidc import ensure_portal_client
from broker.portal.views import bp

__all__ = ["current_person", "ensure_portal_client", "init_app"]


def current_person() -> uuid.UUID | None:
    """The logged-in citizen, while the provider's session that signed them in lasts.

    Logging out of the provider (or its idle expiry) ends the portal too: the portal's
    login names the account it was made for and must still match the session's account.
    """
    login = session.get("portal")
    if not login or login.get("account") != session.get("account_id"):
        return None
    return uuid.UUID(login["person"])


def init_app(app: Flask) -> None:
    app.register_blueprint(bp)
    app.extensions["casebroker.citizen"] = current_person
    babel = app.extensions.get("babel")
    folder = str(Path(__file__).parent / "translations")
    if babel is not None and folder not in babel.translation_directories:
        babel.translation_directories.append(folder)
