"""Which policy set decided: each version is kept, with its files, from the first time it decides.

Decision events name the policy set version that decided them. The first decision of a version
also writes the version's files to ``audit_policy_version`` and a ``policy.loaded`` event with
each file's SHA-256, in the same transaction as the decision: so every version named by a
decision has its text in the database and its hashes in the tamper-evident log, whichever node
loaded it first and however often the files change afterwards.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from typing import Any
from weakref import WeakKeyDictionary

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from audit.log import make_record
from audit.models import AuditPolicyVersion

#: Versions seen recorded, per database engine. A recorded version stays recorded (rows are
#: never removed), so this only saves a read; a version is added once a committed row is seen,
#: never on the strength of an insert that might still roll back.
_seen: WeakKeyDictionary[Any, set[str]] = WeakKeyDictionary()


def first_use(
    session: Session,
    version: str,
    files_of: Callable[[str], Mapping[str, str] | None],
    time: str,
) -> dict[str, Any] | None:
    """Record ``version`` if no node has yet; the ``policy.loaded`` record to append with the
    decisions when this call recorded it, else ``None``. The caller commits."""
    seen = _seen.setdefault(session.get_bind(), set())
    if version in seen:
        return None
    known = select(AuditPolicyVersion.version).where(AuditPolicyVersion.version == version)
    if session.scalar(known) is not None:
        seen.add(version)
        return None
    files = files_of(version)
    if files is None:  # no longer held by the engine: the next decision by it records it
        return None
    try:
        with session.begin_nested():
            session.add(
                AuditPolicyVersion(
                    version=version, first_used_at=datetime.now(UTC), files=dict(files)
                )
            )
    except IntegrityError:  # another node recorded it first, with its own event
        return None
    return make_record(
        "policy.loaded",
        None,
        time,
        version=version,
        files={name: hashlib.sha256(text.encode()).hexdigest() for name, text in files.items()},
    )


def find(session: Session, version: str) -> AuditPolicyVersion | None:
    """A recorded version with its files, for the auditor API."""
    return session.get(AuditPolicyVersion, version)
