"""Single-use values shared by every process: client assertion and DPoP proof ``jti``.

A value is burned by inserting it, committed at once on an autocommitted connection (the
request's own, ``broker.db.get_autocommit_connection``, not its session's): the primary key
makes a second insert of it fail in every process sharing the database, and the commit makes
the burn stand even when the request that carried it fails later. The statements are built
once; they run on every token request.
"""

from __future__ import annotations

from datetime import UTC, datetime

from sqlalchemy import DateTime, bindparam, delete, insert
from sqlalchemy.engine import Connection
from sqlalchemy.exc import IntegrityError

from broker.prepared import Prepared
from identity.models import ReplayGuard

_guard = ReplayGuard.__table__
_BURN = Prepared(
    insert(_guard).values(
        namespace=bindparam("namespace"),
        value=bindparam("value"),
        expires_at=bindparam("expires_at", type_=DateTime(timezone=True)),
    )
)
_SWEEP = Prepared(
    delete(_guard).where(_guard.c.expires_at < bindparam("now", type_=DateTime(timezone=True)))
)


def burn(connection: Connection, namespace: str, digest: str, expires_at: datetime) -> bool:
    """Burn ``digest`` (a hex SHA-256) in ``namespace`` on an autocommitted ``connection``;
    False when it was burned before.

    One statement: no transaction to open or close around it, so on PostgreSQL a burn is one
    round trip. About one call in 256 (those whose digest starts with ``00``) also deletes the
    entries past their expiry, of every namespace: no scheduler is needed to keep the table small.
    """
    try:
        _BURN.rows(connection, {"namespace": namespace, "value": digest, "expires_at": expires_at})
    except IntegrityError:
        return False
    if digest.startswith("00"):
        _SWEEP.rows(connection, {"now": datetime.now(UTC)})
    return True
