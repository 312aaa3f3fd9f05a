"""Accounts: password check, TOTP second factor, recovery codes, and guessing slowed down.

Passwords are argon2id (argon2-cffi); TOTP is RFC 6238 through pyotp, its secret sealed with
the KEK like signing keys, each time step accepted once. Throttling counts failures per
account and per source address in the database, so every process agrees: after a few
failures each further attempt must wait, doubling up to a cap. The per-account cap is short
(a minute), so an attacker cannot keep a citizen out for long; the per-address cap is long.
"""

from __future__ import annotations

import hashlib
import secrets
import time
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import pyotp
from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from sqlalchemy import select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from identity.keys import seal, unseal
from identity.models import Account, Officer, Person
from identity.oidc_models import LoginThrottle, RecoveryCode

HASHER = PasswordHasher()
#: A hash to verify against when the username is unknown, so timing does not tell.
_DUMMY_HASH = HASHER.hash(secrets.token_urlsafe(16))

ACR_PASSWORD = "urn:casebroker:acr:password"  # noqa: S105 (a name, not a secret)
ACR_MFA = "urn:casebroker:acr:mfa"
ACR_VALUES = (ACR_PASSWORD, ACR_MFA)
TOTP_ISSUER = "casebroker"
RECOVERY_CODE_COUNT = 10


@dataclass(frozen=True)
class ThrottleRule:
    free: int
    cap: timedelta
    forget_after: timedelta


#: From the fifth failure on, each attempt waits 2, 4, 8 ... seconds, up to the cap.
ACCOUNT_RULE = ThrottleRule(free=4, cap=timedelta(seconds=60), forget_after=timedelta(hours=1))
ADDRESS_RULE = ThrottleRule(free=30, cap=timedelta(minutes=15), forget_after=timedelta(hours=1))


def _aware(value: datetime) -> datetime:
    return value if value.tzinfo else value.replace(tzinfo=UTC)


def throttle_wait(session: Session, keys: list[str]) -> int:
    """Seconds before another attempt is allowed for any of ``keys`` (0: go ahead)."""
    now = datetime.now(UTC)
    rows = session.scalars(select(LoginThrottle).where(LoginThrottle.key.in_(keys)))
    wait = 0.0
    for row in rows:
        wait = max(wait, (_aware(row.blocked_until) - now).total_seconds())
    return int(wait + 0.999) if wait > 0 else 0


def _rule_for(key: str) -> ThrottleRule:
    return ACCOUNT_RULE if key.startswith("account:") else ADDRESS_RULE


def record_failure(session: Session, keys: list[str]) -> None:
    """Count one failure on every key, atomically (UPDATE ... SET failures = failures + 1)."""
    now = datetime.now(UTC)
    for key in keys:
        rule = _rule_for(key)
        for _attempt in range(2):
            row = session.get(LoginThrottle, key, with_for_update=True)
            if row is None:
                try:
                    with session.begin_nested():
                        session.add(LoginThrottle(key=key, failures=0, last_failure_at=now))
                except IntegrityError:
                    continue
                row = session.get(LoginThrottle, key, with_for_update=True)
            assert row is not None
            if _aware(row.last_failure_at) + rule.forget_after < now:
                row.failures = 0
            failures = row.failures + 1
            delay = timedelta(0)
            if failures > rule.free:
                delay = min(rule.cap, timedelta(seconds=2 ** min(failures - rule.free, 20)))
            session.execute(
                update(LoginThrottle)
                .where(LoginThrottle.key == key)
                .values(failures=failures, last_failure_at=now, blocked_until=now + delay)
            )
            break


def clear_failures(session: Session, key: str) -> None:
    session.execute(
        update(LoginThrottle)
        .where(LoginThrottle.key == key)
        .values(failures=0, blocked_until=datetime.now(UTC))
    )


def find_account(session: Session, username: str) -> Account | None:
    if not username or len(username) > 200 or not username.isprintable():
        return None
    return session.scalar(select(Account).where(Account.username == username.strip()))


def check_password(account: Account | None, password: str) -> bool:
    """argon2id verify; an unknown account costs the same time as a wrong password."""
    if len(password) > 1024:
        return False
    try:
        return HASHER.verify(account.password_hash if account else _DUMMY_HASH, password) and (
            account is not None and account.status == "active"
        )
    except (VerificationError, InvalidHashError):
        return False


def hash_password(password: str) -> str:
    return HASHER.hash(password)


def new_totp_secret() -> str:
    return pyotp.random_base32()


def provisioning_uri(secret: str, account: Account) -> str:
    return pyotp.TOTP(secret).provisioning_uri(name=account.username, issuer_name=TOTP_ISSUER)


def _step(at: float) -> int:
    return int(at // 30)


def totp_matches(secret: str, code: str, at: float | None = None) -> int | None:
    """The time step a 6-digit code belongs to (now or one step either side), or None."""
    code = code.strip().replace(" ", "")
    if not code.isdigit() or len(code) != 6:
        return None
    totp = pyotp.TOTP(secret)
    now = time.time() if at is None else at
    for offset in (0, -1, 1):
        moment = now + offset * 30
        if totp.verify(code, for_time=int(moment), valid_window=0):
            return _step(moment)
    return None


def enable_totp(session: Session, kek: bytes, account: Account, secret: str, step: int) -> None:
    account.totp_secret_encrypted = seal(kek, f"totp:{account.id}", secret.encode())
    account.totp_enabled_at = datetime.now(UTC)
    account.totp_last_step = step


def disable_totp(session: Session, account: Account) -> None:
    account.totp_secret_encrypted = None
    account.totp_enabled_at = None
    account.totp_last_step = None
    for code in session.scalars(select(RecoveryCode).where(RecoveryCode.account_id == account.id)):
        session.delete(code)


def verify_totp(session: Session, kek: bytes, account: Account, code: str) -> bool:
    """Accept a code once: the step must be later than the last accepted one (RFC 6238 5.2).

    The conditional UPDATE makes two processes racing with the same code agree on one winner.
    """
    if account.totp_secret_encrypted is None:
        return False
    secret = unseal(kek, f"totp:{account.id}", account.totp_secret_encrypted).decode()
    step = totp_matches(secret, code)
    if step is None:
        return False
    result = session.execute(
        update(Account)
        .where(
            Account.id == account.id,
            (Account.totp_last_step.is_(None)) | (Account.totp_last_step < step),
        )
        .values(totp_last_step=step)
        .execution_options(synchronize_session=False)
    )
    return result.rowcount == 1


def _code_hash(code: str) -> str:
    return hashlib.sha256(code.strip().replace("-", "").lower().encode()).hexdigest()


def new_recovery_codes(session: Session, account: Account) -> list[str]:
    """Replace the account's recovery codes; shown once, stored only as hashes."""
    for old in session.scalars(select(RecoveryCode).where(RecoveryCode.account_id == account.id)):
        session.delete(old)
    session.flush()
    codes = []
    for _ in range(RECOVERY_CODE_COUNT):
        raw = secrets.token_hex(6)
        codes.append(f"{raw[:4]}-{raw[4:8]}-{raw[8:]}")
    for code in codes:
        session.add(RecoveryCode(code_hash=_code_hash(code), account_id=account.id))
    return codes


def use_recovery_code(session: Session, account: Account, code: str) -> bool:
    if not code or len(code) > 64:
        return False
    result = session.execute(
        update(RecoveryCode)
        .where(
            RecoveryCode.code_hash == _code_hash(code),
            RecoveryCode.account_id == account.id,
            RecoveryCode.used_at.is_(None),
        )
        .values(used_at=datetime.now(UTC))
    )
    return result.rowcount == 1


def remaining_recovery_codes(session: Session, account: Account) -> int:
    return len(
        list(
            session.scalars(
                select(RecoveryCode.code_hash).where(
                    RecoveryCode.account_id == account.id, RecoveryCode.used_at.is_(None)
                )
            )
        )
    )


@dataclass(frozen=True)
class Holder:
    """Who an account belongs to, as the provider needs it for claims and audit."""

    kind: str
    person_id: uuid.UUID | None
    officer_id: uuid.UUID | None
    name: str
    given_name: str | None
    family_name: str | None
    agency: str | None
    roles: tuple[str, ...]


def holder_of(session: Session, account: Account) -> Holder:
    if account.kind == "officer":
        officer = session.get(Officer, account.officer_id)
        assert officer is not None
        return Holder(
            "officer",
            None,
            officer.id,
            officer.display_name,
            None,
            None,
            officer.agency_id if officer.status == "active" else None,
            tuple(officer.role_names) if officer.status == "active" else (),
        )
    person = session.get(Person, account.person_id)
    assert person is not None
    return Holder(
        "citizen",
        person.id,
        None,
        f"{person.given_name} {person.family_name}",
        person.given_name,
        person.family_name,
        None,
        (),
    )
