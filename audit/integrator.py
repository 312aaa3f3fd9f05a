"""When integration runs: a worker command, and opportunistically after a response is sent.

A request that appended events marks itself (``audit.log.append``); once its response has been
handed to the server, the process runs integration batches if it has not tried for
``AUDIT_INTEGRATE_INTERVAL`` seconds. The response never waits for it, and correctness never
depends on it: the last attempt time is a per-process throttle only, the lock and the tree live
in the database, and ``casebroker audit integrate --follow`` integrates whatever is left.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable

from flask import Flask, Response, current_app, g

from audit import tree
from audit.checkpoints import log_origin
from broker.db import get_db

log = logging.getLogger("casebroker.audit")

_throttle = threading.Lock()
_last_attempt: dict[int, float] = {}


def run(app: Flask, max_batches: int | None = None) -> tuple[int, tree.TreeHead]:
    """Integrate what is pending, with the app's settings; returns (added, head)."""
    config = app.config
    with get_db(app).sessionmaker() as session:
        return tree.integrate(
            session,
            config["KEY_ENCRYPTION_KEY_BYTES"],
            log_origin(config),
            int(config["AUDIT_BATCH_SIZE"]),
            max_batches,
        )


def _due(app: Flask) -> bool:
    interval = int(app.config["AUDIT_INTEGRATE_INTERVAL"])
    if interval <= 0:
        return False
    now = time.monotonic()
    with _throttle:
        if now - _last_attempt.get(id(app), float("-inf")) < interval:
            return False
        _last_attempt[id(app)] = now
    return True


def _after_close(app: Flask) -> Callable[[], None]:
    def integrate() -> None:
        try:
            with app.app_context():
                run(app, max_batches=1)
        except Exception:
            log.exception("opportunistic audit integration failed; the worker will retry")

    return integrate


def schedule_after_response(response: Response) -> Response:
    """Flask ``after_request`` hook: integrate once the response has gone, if due."""
    if g.get("audit_appended") and _due(current_app):
        response.call_on_close(_after_close(current_app._get_current_object()))  # type: ignore[attr-defined]
    return response
