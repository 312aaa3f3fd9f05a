"""The citizens' notification outbox: what is written, how it is claimed and delivered.

Messages are rows of ``notification``, written in the same transaction as what they report,
so a committed event always has its message and a rolled-back one never does:

- a consent request: written by the request itself;
- a consent about to expire: written by the sweep (``collect_expiring``);
- a break-glass access: taken from the audit log, which already holds every break-glass
  decision in the lookup's own transaction. ``collect_break_glass`` tails the log from a
  cursor kept in ``outbox_cursor``; the log's gap-free sequence is committed in order (the
  append holds the counter's row lock until commit), so a cursor never steps over an event
  that is yet to commit. The lookup path is not touched and pays nothing.

Delivery (``deliver_due``) claims due rows with a lease, commits the claim, sends, then
marks each row sent. A worker that dies after sending and before marking loses its lease and
another sends again: at least once, never lost. Several workers may run at once: on
PostgreSQL the claim skips rows another worker has locked; on SQLite writers take turns.
"""

from __future__ import annotations

import json
import logging
import os
import secrets
import smtplib
import socket
import ssl
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from email.message import EmailMessage
from email.utils import formatdate, make_msgid
from typing import Any, Protocol

from sqlalchemy import and_, func, or_, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session

from audit.models import AuditEvent
from broker.registry.names import Names
from consent.errors import NotificationNotFound
from consent.models import CitizenContact, Consent, Notification, OutboxCursor

log = logging.getLogger("casebroker.notifications")

BREAK_GLASS_CURSOR = "break-glass"
#: ``"break_glass":true`` as it appears in a canonical record (sorted keys, no spaces): a
#: cheap pre-filter; the parsed record decides.
BREAK_GLASS_MARK = '%"break_glass":true%'
MAX_ATTEMPTS = 8
LEASE = timedelta(minutes=2)
MAX_LIST = 100


@dataclass(frozen=True)
class SmtpSettings:
    host: str
    port: int
    security: str
    username: str | None
    password: str | None
    sender: str
    timeout: float

    @classmethod
    def from_config(cls, config: Mapping[str, Any]) -> SmtpSettings | None:
        """``None`` when no SMTP server is configured: messages are then for the portal only."""
        if not config.get("SMTP_HOST"):
            return None
        return cls(
            host=config["SMTP_HOST"],
            port=int(config["SMTP_PORT"]),
            security=config["SMTP_SECURITY"],
            username=config.get("SMTP_USERNAME") or None,
            password=config.get("SMTP_PASSWORD") or None,
            sender=config["SMTP_FROM"],
            timeout=float(config["SMTP_TIMEOUT"]),
        )


class Sender(Protocol):
    def send(self, message: EmailMessage) -> None: ...


class SmtpSender:
    """Sends through the configured server with the standard library's SMTP client."""

    def __init__(self, settings: SmtpSettings) -> None:
        self.settings = settings

    def send(self, message: EmailMessage) -> None:
        s = self.settings
        context = ssl.create_default_context()
        if s.security == "ssl":
            client: smtplib.SMTP = smtplib.SMTP_SSL(
                s.host, s.port, timeout=s.timeout, context=context
            )
        else:
            client = smtplib.SMTP(s.host, s.port, timeout=s.timeout)
        with client:
            if s.security == "starttls":
                client.starttls(context=context)
            if s.username and s.password:
                client.login(s.username, s.password)
            client.send_message(message)


# --- writing ------------------------------------------------------------------------------


def enqueue(
    session: Session, person_id: uuid.UUID, kind: str, dedupe_key: str, payload: dict[str, Any]
) -> None:
    """Add a message in the caller's transaction; the caller commits with what it reports."""
    session.add(
        Notification(
            person_id=person_id,
            kind=kind,
            dedupe_key=dedupe_key,
            payload=payload,
            next_attempt_at=datetime.now(UTC),
        )
    )


def _insert_ignoring_duplicates(session: Session, rows: Sequence[dict[str, Any]]) -> int:
    """Insert messages whose ``dedupe_key`` is new; ones already there are left alone."""
    if not rows:
        return 0
    dialect = session.get_bind().dialect.name
    insert = postgresql.insert if dialect == "postgresql" else sqlite.insert
    statement = insert(Notification).on_conflict_do_nothing(index_elements=["dedupe_key"])
    created = 0
    for row in rows:
        created += len(session.execute(statement.values(**row).returning(Notification.id)).all())
    return created


def _lock_cursor(session: Session, name: str, wait: bool = True) -> int | None:
    """Take the cursor's row (and so the right to advance it); made on first use.

    Starting with a write takes SQLite's write lock before anything is read, and the row
    lock on PostgreSQL, so two collectors never read the same stretch of the log. Without
    ``wait``, PostgreSQL skips a cursor another collector holds (``None``): that collector
    is doing the work already.
    """
    dialect = session.get_bind().dialect.name
    if not wait and dialect == "postgresql":
        position = session.scalar(
            select(OutboxCursor.position)
            .where(OutboxCursor.name == name)
            .with_for_update(skip_locked=True)
        )
        if position is not None:
            return position
        if session.get(OutboxCursor, name) is not None:
            return None
    position = session.execute(
        update(OutboxCursor)
        .where(OutboxCursor.name == name)
        .values(position=OutboxCursor.position)
        .returning(OutboxCursor.position)
    ).scalar_one_or_none()
    if position is not None:
        return position
    insert = postgresql.insert if dialect == "postgresql" else sqlite.insert
    session.execute(insert(OutboxCursor).values(name=name, position=-1).on_conflict_do_nothing())
    return _lock_cursor(session, name)


def collect_break_glass(
    session: Session, batch: int = 500, wait: bool = True, max_batches: int | None = None
) -> int:
    """Turn break-glass permits in the audit log into messages; the caller commits.

    One message per lookup (its correlation id) and person, listing the permitted categories.
    A window of the log always ends with the whole of its last lookup, whose events were
    appended together, so a lookup's categories are never split between two messages.
    """
    position = _lock_cursor(session, BREAK_GLASS_CURSOR, wait)
    if position is None:
        return 0
    created = 0
    batches = 0
    while max_batches is None or batches < max_batches:
        batches += 1
        window = session.execute(
            select(AuditEvent.seq, AuditEvent.correlation_id)
            .where(AuditEvent.seq > position)
            .order_by(AuditEvent.seq)
            .limit(batch)
        ).all()
        if not window:
            break
        end, last_lookup = window[-1]
        if last_lookup:
            end = session.scalar(
                select(func.max(AuditEvent.seq)).where(
                    AuditEvent.correlation_id == last_lookup, AuditEvent.seq > position
                )
            )
        records = session.execute(
            select(AuditEvent.correlation_id, AuditEvent.record)
            .where(
                AuditEvent.seq > position,
                AuditEvent.seq <= end,
                AuditEvent.kind == "lookup.decision",
                AuditEvent.decision == "permit",
                AuditEvent.record.like(BREAK_GLASS_MARK),
            )
            .order_by(AuditEvent.seq)
        ).all()
        created += _insert_ignoring_duplicates(session, _break_glass_messages(records))
        position = end
        if len(window) < batch:
            break
    session.execute(
        update(OutboxCursor)
        .where(OutboxCursor.name == BREAK_GLASS_CURSOR)
        .values(position=position)
    )
    return created


def _break_glass_messages(records: Sequence[Any]) -> list[dict[str, Any]]:
    now = datetime.now(UTC)
    by_lookup: dict[tuple[str, str], dict[str, Any]] = {}
    for correlation_id, raw in records:
        record = json.loads(raw)
        if record.get("break_glass") is not True or not record.get("person"):
            continue
        entry = by_lookup.setdefault(
            (correlation_id or record["time"], record["person"]),
            {
                "requester": record.get("requester"),
                "purpose": record.get("purpose"),
                "time": record.get("time"),
                "access": [],
            },
        )
        entry["access"].append(
            {"provider": record.get("provider"), "category": record.get("category")}
        )
    return [
        {
            "person_id": uuid.UUID(person),
            "kind": "access.break_glass",
            "dedupe_key": f"access.break_glass:{lookup}:{person}",
            "payload": entry,
            "created_at": now,
            "delivery": "pending",
            "attempts": 0,
            "next_attempt_at": now,
        }
        for (lookup, person), entry in by_lookup.items()
    ]


def collect_expiring(session: Session, now: datetime, notice: timedelta) -> int:
    """One message per active consent entering its last ``notice``; the caller commits."""
    rows = session.execute(
        select(
            Consent.id,
            Consent.person_id,
            Consent.grantee_agency_id,
            Consent.purpose_id,
            Consent.valid_until,
            Consent.categories,
        )
        .where(
            Consent.status == "active",
            Consent.valid_until > now,
            Consent.valid_until <= now + notice,
        )
        .order_by(Consent.valid_until)
    ).all()
    return _insert_ignoring_duplicates(
        session,
        [
            {
                "person_id": person_id,
                "kind": "consent.expiring",
                "dedupe_key": f"consent.expiring:{consent_id}",
                "payload": {
                    "consent": str(consent_id),
                    "grantee": grantee,
                    "purpose": purpose,
                    "categories": list(categories),
                    "valid_until": until.astimezone(UTC).isoformat(timespec="seconds"),
                },
                "created_at": now,
                "delivery": "pending",
                "attempts": 0,
                "next_attempt_at": now,
            }
            for consent_id, person_id, grantee, purpose, until, categories in rows
        ],
    )


# --- reading, for the portal ---------------------------------------------------------------


@dataclass(frozen=True)
class NotificationView:
    id: int
    kind: str
    created_at: datetime
    read: bool
    delivery: str
    subject: str
    text: str
    payload: dict[str, Any]

    def to_json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "kind": self.kind,
            "created_at": self.created_at.astimezone(UTC).isoformat(timespec="seconds"),
            "read": self.read,
            "delivery": self.delivery,
            "subject": self.subject,
            "text": self.text,
            "details": self.payload,
        }


def list_notifications(
    session: Session,
    person_id: uuid.UUID,
    *,
    limit: int = 50,
    before: int | None = None,
    unread_only: bool = False,
    portal_url: str = "",
) -> list[NotificationView]:
    """A citizen's messages, newest first, whatever their e-mail delivery.

    Break-glass accesses are collected first, a bounded amount and never waiting for another
    collector, so the portal shows them even when no delivery worker runs; the collection
    commits on its own.
    """
    collect_break_glass(session, wait=False, max_batches=4)
    session.commit()
    query = select(Notification).where(Notification.person_id == person_id)
    if before is not None:
        query = query.where(Notification.id < before)
    if unread_only:
        query = query.where(Notification.read_at.is_(None))
    rows = session.scalars(query.order_by(Notification.id.desc()).limit(min(limit, MAX_LIST)))
    names = Names(session)
    views = []
    for row in rows:
        subject, text = render(row.kind, row.payload, names, portal_url)
        views.append(
            NotificationView(
                row.id,
                row.kind,
                row.created_at,
                row.read_at is not None,
                row.delivery,
                subject,
                text,
                dict(row.payload),
            )
        )
    return views


def mark_read(session: Session, person_id: uuid.UUID, notification_id: int) -> None:
    """Mark one of the citizen's own messages read; someone else's is as good as unknown."""
    result = session.execute(
        update(Notification)
        .where(Notification.id == notification_id, Notification.person_id == person_id)
        .values(read_at=datetime.now(UTC))
    )
    if not result.rowcount:
        session.rollback()
        raise NotificationNotFound(f"You have no notification {notification_id}.")
    session.commit()


def set_contact_email(session: Session, person_id: uuid.UUID, email: str | None) -> None:
    """Where the citizen's messages are e-mailed; ``None`` means the portal only."""
    row = session.get(CitizenContact, person_id)
    if email is None:
        if row is not None:
            session.delete(row)
    elif row is None:
        session.add(CitizenContact(person_id=person_id, email=email))
    else:
        row.email, row.updated_at = email, datetime.now(UTC)
    session.commit()


# --- rendering ------------------------------------------------------------------------------


def render(kind: str, payload: Mapping[str, Any], names: Names, portal_url: str) -> tuple[str, str]:
    """Subject and plain text, in English then French: the broker knows no language preference
    for a citizen, and official notices go out in both. Each part names the agencies, purposes
    and categories in its own language."""
    where = f"\n\n{portal_url}\n" if portal_url else "\n"
    if kind == "consent.requested":
        en, fr = _terms(names, payload, "grantee")
        return (
            f"{en.agency} asks for your consent / {fr.agency} demande votre consentement",
            f"{en.agency} asks for your consent to see: {en.categories}, for: {en.purpose}. "
            "Approve or decline it in the citizen portal.\n\n"
            f"{fr.agency} demande votre consentement pour consulter : {fr.categories}, "
            f"pour : {fr.purpose}. Acceptez ou refusez dans le portail citoyen." + where,
        )
    if kind == "consent.expiring":
        en, fr = _terms(names, payload, "grantee")
        until = str(payload.get("valid_until", ""))[:10]
        return (
            f"Your consent to {en.agency} ends on {until} / "
            f"Votre consentement à {fr.agency} prend fin le {until}",
            f"Your consent to {en.agency} for {en.purpose} ends on {until}. "
            "Nothing is needed if you do not want to renew it.\n\n"
            f"Votre consentement à {fr.agency} pour {fr.purpose} prend fin le {until}. "
            "Aucune action n'est nécessaire si vous ne souhaitez pas le renouveler." + where,
        )
    if kind == "access.break_glass":
        en, fr = _terms(names, payload, "requester")
        when = str(payload.get("time", ""))[:16].replace("T", " ")
        return (
            "Emergency access to your data / Accès d'urgence à vos données",
            f"On {when} UTC, {en.agency} used emergency (break-glass) access to see: "
            f"{en.accessed}, for: {en.purpose}. The access was recorded and is reviewed by "
            "oversight.\n\n"
            f"Le {when} UTC, {fr.agency} a utilisé un accès d'urgence pour consulter : "
            f"{fr.accessed}, pour : {fr.purpose}. L'accès a été enregistré et fait l'objet "
            "d'un contrôle." + where,
        )
    raise ValueError(f"unknown notification kind {kind!r}")


@dataclass(frozen=True)
class _Terms:
    """A notice's agency, purpose, categories and accesses, named in one language."""

    agency: str
    purpose: str
    categories: str
    accessed: str


def _terms(names: Names, payload: Mapping[str, Any], agency_key: str) -> tuple[_Terms, _Terms]:
    def named(locale: str) -> _Terms:
        return _Terms(
            agency=names.agency(payload.get(agency_key), locale),
            purpose=names.purpose(payload.get("purpose"), locale),
            categories=", ".join(names.category(c, locale) for c in payload.get("categories", [])),
            accessed=", ".join(
                f"{names.category(a.get('category'), locale)} "
                f"({names.agency(a.get('provider'), locale)})"
                for a in payload.get("access", [])
            ),
        )

    return named("en"), named("fr")


# --- delivery -------------------------------------------------------------------------------


@dataclass
class DeliveryReport:
    sent: int = 0
    portal: int = 0
    retried: int = 0
    failed: int = 0

    @property
    def handled(self) -> int:
        return self.sent + self.portal + self.retried + self.failed


def worker_id() -> str:
    return f"{socket.gethostname()[:40]}-{os.getpid()}-{secrets.token_hex(4)}"


def claim(
    session: Session, worker: str, now: datetime, limit: int, lease: timedelta = LEASE
) -> list[int]:
    """Lease up to ``limit`` due messages to ``worker`` and commit the lease."""
    due = and_(
        Notification.delivery == "pending",
        Notification.next_attempt_at <= now,
        or_(Notification.claimed_until.is_(None), Notification.claimed_until < now),
    )
    candidates = (
        select(Notification.id)
        .where(due)
        .order_by(Notification.id)
        .limit(limit)
        .with_for_update(skip_locked=True)
    )
    ids = list(
        session.scalars(
            update(Notification)
            .where(Notification.id.in_(candidates.scalar_subquery()), due)
            .values(claimed_by=worker, claimed_until=now + lease)
            .returning(Notification.id)
        )
    )
    session.commit()
    return sorted(ids)


def _backoff(attempts: int) -> timedelta:
    return timedelta(seconds=min(30 * 2 ** (attempts - 1), 3600))


def _finish(session: Session, notification_id: int, worker: str, **values: Any) -> None:
    """Record the outcome only while the lease is ours; a lost lease means another worker
    has the row, and its outcome counts."""
    session.execute(
        update(Notification)
        .where(Notification.id == notification_id, Notification.claimed_by == worker)
        .values(claimed_by=None, claimed_until=None, **values)
    )
    session.commit()


def deliver_due(
    session: Session,
    sender: Sender | None,
    *,
    sender_address: str = "",
    portal_url: str = "",
    worker: str | None = None,
    batch: int = 50,
    now: datetime | None = None,
) -> DeliveryReport:
    """Deliver what is due: e-mail where a server and an address exist, else the portal."""
    worker = worker or worker_id()
    report = DeliveryReport()
    ids = claim(session, worker, now or datetime.now(UTC), batch)
    names = Names(session)
    for notification_id in ids:
        row = session.get(Notification, notification_id, populate_existing=True)
        if row is None or row.claimed_by != worker:
            continue
        contact = session.get(CitizenContact, row.person_id)
        finished = datetime.now(UTC)
        if sender is None or contact is None:
            _finish(session, row.id, worker, delivery="portal", delivered_at=finished)
            report.portal += 1
            continue
        subject, body = render(row.kind, row.payload, names, portal_url)
        message = EmailMessage()
        message["From"] = sender_address
        message["To"] = contact.email
        message["Subject"] = subject
        message["Date"] = formatdate(usegmt=True)
        message["Message-ID"] = make_msgid(domain=sender_address.rpartition("@")[2] or None)
        message["X-Casebroker-Notification"] = str(row.id)
        message.set_content(body)
        try:
            sender.send(message)
        except (smtplib.SMTPException, OSError) as exc:
            attempts = row.attempts + 1
            error = f"{type(exc).__name__}: {exc}"[:500]
            if attempts >= MAX_ATTEMPTS or isinstance(exc, smtplib.SMTPRecipientsRefused):
                _finish(session, row.id, worker, delivery="failed", attempts=attempts,
                        last_error=error)  # fmt: skip
                report.failed += 1
            else:
                _finish(
                    session,
                    row.id,
                    worker,
                    attempts=attempts,
                    last_error=error,
                    next_attempt_at=finished + _backoff(attempts),
                )
                report.retried += 1
            log.warning("notification %s not delivered (attempt %s): %s", row.id, attempts, error)
            continue
        _finish(
            session, row.id, worker, delivery="sent", delivered_at=finished,
            attempts=row.attempts + 1, last_error=None,
        )  # fmt: skip
        report.sent += 1
    return report
