"""The auditor's console: web pages over the audit log for officers with the auditor role."""

from __future__ import annotations

from pathlib import Path

from flask import Flask

from audit.console.views import bp

__all__ = ["init_app"]


def init_app(app: Flask) -> None:
    """Register the pages and the console's French catalogue."""
    app.register_blueprint(bp)
    babel = app.extensions.get("babel")
    folder = str(Path(__file__).parent / "translations")
    if babel is not None and folder not in babel.translation_directories:
        babel.translation_directories.append(folder)
