"""Browser sessions kept in the database, so every process sees the same login and its expiry.

The cookie carries 256 random bits; the table is keyed by their SHA-256, so a database leak
does not hand out live sessions. A session ends after ``SESSION_IDLE_TIMEOUT`` seconds without a
request, or ``SESSION_LIFETIME`` seconds after it began. Logging in rotates the id (no
session fixation). Flask's ``session`` is the interface, so other blueprints share the login.
"""

from __future__ import annotations

import hashlib
import secrets
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

from flask import Flask, Request, Response
from flask.sessions import SessionInterface, SessionMixin
from sqlalchemy import delete, select
from werkzeug.datastructures import CallbackDict

from broker.db import get_db
from identity.oidc_models import WebSession

#: Skip the write-back of an unchanged session seen less than this long ago.
TOUCH_INTERVAL = timedelta(seconds=30)


def _digest(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


class DatabaseSession(CallbackDict, SessionMixin):
    """Session data plus the bookkeeping the interface needs to save it."""

    def __init__(self, initial: dict[str, Any] | None = None, token: str | None = None) -> None:
        def on_update(_self: CallbackDict) -> None:
            self.modified = True

        super().__init__(initial or {}, on_update)
        self.token = token
        self.old_token: str | None = None
        self.modified = False
        self.rotate = False
        self.ended = False
        self.last_seen: datetime | None = None
        self.created_at: datetime | None = None

    def regenerate(self) -> None:
        """Issue a new id now, stored at the next save (call on login: no session fixation)."""
        if not self.rotate:
            self.old_token = self.token
        self.token = secrets.token_urlsafe(32)
        self.rotate = True
        self.modified = True

    def end(self) -> None:
        """Forget everything and drop the row."""
        self.clear()
        self.ended = True


def cookie_name(app: Flask) -> str:
    """``__Host-`` binds the cookie to this exact origin over https (RFC 6265bis 4.1.3.2)."""
    return "__Host-casebroker" if app.config["ISSUER"].startswith("https://") else "casebroker"


class DatabaseSessionInterface(SessionInterface):
    def open_session(self, app: Flask, request: Request) -> DatabaseSession:
        token = request.cookies.get(cookie_name(app))
        if not token or len(token) > 128:
            return DatabaseSession()
        now = datetime.now(UTC)
        with get_db(app).sessionmaker() as db:
            row = db.get(WebSession, _digest(token))
            if row is None:
                return DatabaseSession()
            idle = timedelta(seconds=int(app.config["SESSION_IDLE_TIMEOUT"]))
            if _aware(row.expires_at) <= now or _aware(row.last_seen_at) + idle <= now:
                db.execute(delete(WebSession).where(WebSession.id == row.id))
                db.commit()
                session = DatabaseSession()
                session["expired"] = True
                return session
        session = DatabaseSession(dict(row.data), token)
        session.last_seen = _aware(row.last_seen_at)
        session.created_at = _aware(row.created_at)
        return session

    def save_session(self, app: Flask, session: DatabaseSession, response: Response) -> None:  # type: ignore[override]
        name = cookie_name(app)
        secure = name.startswith("__Host-")
        now = datetime.now(UTC)
        current = session.old_token if session.rotate else session.token
        old_id = _digest(current) if current else None
        if session.ended or (not session and current is None):
            if old_id:
                with get_db(app).sessionmaker() as db, db.begin():
                    db.execute(delete(WebSession).where(WebSession.id == old_id))
                response.delete_cookie(name, path="/", secure=secure, httponly=True)
            return
        data = {k: v for k, v in session.items() if k != "expired"}
        if not data and current is None:
            return
        fresh = session.last_seen is None or now - session.last_seen >= TOUCH_INTERVAL
        if not (session.modified or session.rotate or fresh):
            return
        account_id = data.get("account_id")
        with get_db(app).sessionmaker() as db, db.begin():
            if session.rotate or session.token is None:
                if old_id:
                    db.execute(delete(WebSession).where(WebSession.id == old_id))
                session.token = session.token if session.rotate else secrets.token_urlsafe(32)
                row = WebSession(
                    id=_digest(session.token),
                    created_at=now,
                    expires_at=now + timedelta(seconds=int(app.config["SESSION_LIFETIME"])),
                )
                db.add(row)
            else:
                row = db.scalar(select(WebSession).where(WebSession.id == old_id))
                if row is None:
                    return
            row.data = data
            row.last_seen_at = now
            row.account_id = _uuid(account_id)
            if secrets.randbelow(256) == 0:
                db.execute(
                    delete(WebSession)
                    .where(WebSession.expires_at < now)
                    .execution_options(synchronize_session=False)
                )
        response.set_cookie(
            name,
            session.token,
            httponly=True,
            secure=secure,
            samesite="Lax",
            path="/",
        )
        response.vary.add("Cookie")


def _aware(value: datetime) -> datetime:
    """SQLite hands back naive datetimes; every stored time is UTC."""
    return value if value.tzinfo else value.replace(tzinfo=UTC)


def _uuid(value: Any) -> uuid.UUID | None:
    return uuid.UUID(value) if isinstance(value, str) else None


def session_id_of(session: SessionMixin) -> str | None:
    """The stored id of the current session (for ``sid`` claims and logout)."""
    token = getattr(session, "token", None)
    return _digest(token)[:32] if token else None
