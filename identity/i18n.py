"""English and French for every page (Flask-Babel), shared by all the broker's packages.

Each package may keep its own catalogue in ``<package>/translations``; all are loaded, so
teams add messages without touching each other's files. The language comes from an explicit
``?lang=`` choice (remembered in a cookie), then the cookie, then ``Accept-Language``.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

from flask import Flask, Response, request
from flask_babel import Babel

LANGUAGES = ("en", "fr")
LANGUAGE_NAMES = {"en": "English", "fr": "Français"}
COOKIE = "casebroker_lang"
PACKAGES = ("identity", "broker", "consent", "audit", "policies")


def select_locale() -> str:
    chosen = request.args.get("lang") or request.cookies.get(COOKIE)
    if chosen in LANGUAGES:
        return chosen
    for locale in (request.args.get("ui_locales") or "").split():
        if locale.split("-")[0] in LANGUAGES:
            return locale.split("-")[0]
    return request.accept_languages.best_match(LANGUAGES) or "en"


def _remember_choice(response: Response) -> Response:
    chosen = request.args.get("lang")
    if chosen in LANGUAGES and request.cookies.get(COOKIE) != chosen:
        response.set_cookie(COOKIE, chosen, max_age=365 * 86400, samesite="Lax", httponly=True)
    return response


def translation_directories() -> list[str]:
    found = []
    for name in PACKAGES:
        spec = importlib.util.find_spec(name)
        if spec is None or spec.origin is None:
            continue
        folder = Path(spec.origin).parent / "translations"
        if folder.is_dir():
            found.append(str(folder))
    return found


def init_app(app: Flask) -> None:
    app.config.setdefault("BABEL_DEFAULT_LOCALE", "en")
    app.config["BABEL_TRANSLATION_DIRECTORIES"] = ";".join(translation_directories())
    Babel(app, locale_selector=select_locale)
    app.after_request(_remember_choice)
    app.jinja_env.globals["LANGUAGE_NAMES"] = LANGUAGE_NAMES
