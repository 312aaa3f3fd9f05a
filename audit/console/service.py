"""What the auditor's console decides and reads: who may use it, searches, proofs, the review
queue, findings, daily series and the per-officer volume rule.

The web layer only translates forms to calls here. Every read of events is recorded first as
the auditor's own audit event (committed), and then sees the log as it was just before it.
"""

from __future__ import annotations

import base64
import dataclasses
import functools
import json
import math
import uuid
from collections import defaultdict
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import Any

from sqlalchemy import and_, func, or_, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

import audit
from audit import checkpoints, merkle, note, search, tree, verify
from audit.console.models import OUTCOMES, AuditFinding
from audit.models import AuditCheckpoint, AuditEvent, AuditVerification
from identity.models import Account, Officer

LOOKUP_KIND = "lookup.decision"
#: Canonical JSON (sorted keys, no spaces) lets these flags be matched in the stored record.
BREAK_GLASS = '%"break_glass":true%'
REVIEW = '%"review":true%'
#: Form fields the console adds to the audit search's own parameters.
FLAGS = tuple(search.FLAGS)
DATE_FIELDS = ("from", "to")
PAGE_SIZE = 25
QUEUE_SIZE = 50
MAX_NOTE = 2000
CHART_DAYS = 14
BASELINE_DAYS = 30
SIGMAS = 3
#: Below this many lookups in a day nobody is flagged, however quiet their past.
MIN_FLAGGED = 5


class ConsoleError(ValueError):
    """Input the console refuses; ``field`` names the form field, ``code`` the message."""

    def __init__(self, field: str, code: str, detail: str = "") -> None:
        super().__init__(detail or code)
        self.field = field
        self.code = code


@dataclass(frozen=True)
class ConsoleAuditor:
    officer_id: uuid.UUID
    agency: str
    name: str


def auditor_of(session: Session, account: Account | None) -> ConsoleAuditor | None:
    """The active officer with the auditor role behind ``account``, else None."""
    if account is None or account.kind != "officer" or account.officer_id is None:
        return None
    officer = session.get(Officer, account.officer_id)
    if officer is None or officer.status != "active" or "auditor" not in officer.role_names:
        return None
    return ConsoleAuditor(officer.id, officer.agency_id, officer.display_name)


def record_access(
    session: Session,
    auditor: ConsoleAuditor,
    kind: str,
    correlation_id: str | None,
    **fields: Any,
) -> int:
    """Append and commit the auditor's own access before anything is shown; its leaf index."""
    record = audit.make_record(
        kind,
        correlation_id,
        audit.event_time(),
        officer=str(auditor.officer_id),
        requester=auditor.agency,
        channel="console",
        **fields,
    )
    appended = audit.append(session, [record])
    session.commit()
    return appended[0].index


# --- search -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class ConsoleQuery:
    query: search.EventQuery
    break_glass: bool = False
    without_case: bool = False

    def describe(self) -> dict[str, Any]:
        described = self.query.describe()
        described.update({flag: True for flag in FLAGS if getattr(self, flag)})
        return described


def _day(field: str, value: str) -> date:
    try:
        return date.fromisoformat(value)
    except ValueError:
        raise ConsoleError(field, "date") from None


def parse_form(args: Mapping[str, str]) -> ConsoleQuery:
    """The search form: the audit search's parameters, dates as whole UTC days, two flags.

    Empty fields are dropped (a form sends every field); anything else unknown is an error.
    """
    given = {k: v for k, v in args.items() if v != "" and k != "lang"}
    flags = {flag: given.pop(flag, "") for flag in FLAGS}
    for flag, value in flags.items():
        if value not in ("", "1"):
            raise ConsoleError(flag, "flag")
    if "from" in given:
        given["from"] = datetime.combine(_day("from", given["from"]), datetime.min.time(), UTC)
        given["from"] = given["from"].isoformat()
    if "to" in given:
        end = _day("to", given["to"]) + timedelta(days=1)
        given["to"] = datetime.combine(end, datetime.min.time(), UTC).isoformat()
    try:
        query = search.parse_query(given)
    except search.QueryError as exc:
        raise ConsoleError(exc.parameter, "query", str(exc)) from None
    query = dataclasses.replace(query, limit=PAGE_SIZE)
    return ConsoleQuery(query, bool(flags["break_glass"]), bool(flags["without_case"]))


@dataclass(frozen=True)
class Row:
    seq: int
    time: datetime
    kind: str
    decision: str | None
    requester: str | None
    provider: str | None
    officer: str | None
    purpose: str | None
    category: str | None
    correlation_id: str | None
    break_glass: bool
    review: bool
    without_case: bool
    pruned: bool


def _row(event: AuditEvent) -> Row:
    shown = search.public_event(event)
    record = shown["record"] or {}
    return Row(
        seq=event.seq,
        time=datetime.fromisoformat(shown["time"]),
        kind=event.kind,
        decision=event.decision,
        requester=event.requester_agency_id,
        provider=event.provider_agency_id,
        officer=shown["officer"],
        purpose=event.purpose_id,
        category=event.category_id,
        correlation_id=event.correlation_id,
        break_glass=bool(record.get("break_glass")),
        review=bool(record.get("review")),
        without_case=bool(record.get("without_case")),
        pruned=shown["pruned"],
    )


@dataclass(frozen=True)
class Results:
    rows: list[Row]
    next_cursor: str | None


def run_search(session: Session, wanted: ConsoleQuery, upto: int) -> Results:
    """The audit search over the log as it was at ``upto``, with the console's flags.

    The flags match the canonical record text, so events whose body retention pruned no
    longer match them (their indexed fields still do).
    """
    person = search.resolve_person(session, wanted.query)
    flags = tuple(flag for flag in FLAGS if getattr(wanted, flag))
    query = dataclasses.replace(wanted.query, upto=upto, flags=flags)
    page = search.search(session, query, person)
    return Results([_row(e) for e in page.events], page.next_cursor)


def choices(session: Session) -> dict[str, list[str]]:
    """Values the search form offers in its lists: what the log actually holds."""
    found: dict[str, list[str]] = {}
    for name, column in (
        ("agency", AuditEvent.requester_agency_id),
        ("purpose", AuditEvent.purpose_id),
        ("category", AuditEvent.category_id),
        ("kind", AuditEvent.kind),
    ):
        values = session.scalars(select(column).where(column.is_not(None)).distinct().limit(200))
        found[name] = sorted(values)
    return found


# --- one event and its proof -----------------------------------------------------------------


@dataclass(frozen=True)
class ProofCheck:
    """How an event's inclusion proof fared against the latest checkpoint."""

    status: str  # verified, pending, failed, no-checkpoint
    tree_size: int = 0
    checkpoint_time: datetime | None = None
    root_hash: str = ""
    proof: tuple[str, ...] = ()
    reason: str = ""


def _b64(value: bytes) -> str:
    return base64.b64encode(value).decode()


def check_proof(session: Session, event: AuditEvent, origin: str) -> ProofCheck:
    """Verify, here on the server, that the event is in the latest signed checkpoint.

    Three things must hold: the checkpoint's signature and origin (c2sp.org/signed-note), the
    record's leaf hash (RFC 9162 section 2.1.1) and the inclusion proof from the stored tree
    (section 2.1.3.2) against the signed root, not against the tree the proof came from.
    """
    latest = checkpoints.latest_checkpoint(session)
    if latest is None:
        return ProofCheck("no-checkpoint")
    when = _utc(latest.created_at)
    if event.seq >= latest.tree_size:
        return ProofCheck("pending", latest.tree_size, when, _b64(latest.root_hash))
    failed = functools.partial(ProofCheck, "failed", latest.tree_size, when)
    try:
        signed = note.open_checkpoint(latest.note, checkpoints.verifiers(session).values(), origin)
    except note.NoteError as exc:
        return failed(_b64(latest.root_hash), reason=f"checkpoint signature: {exc}")
    if signed.size != latest.tree_size or signed.root_hash != latest.root_hash:
        return failed(_b64(latest.root_hash), reason="the signed note differs from its columns")
    if event.record is not None and audit.leaf_hash(event.record.encode()) != event.leaf_hash:
        return failed(_b64(signed.root_hash), reason="the record does not match its leaf hash")
    try:
        proof = tree.inclusion_proof(session, event.seq, signed.size)
        merkle.verify_inclusion(event.seq, signed.size, event.leaf_hash, proof, signed.root_hash)
    except (tree.TreeError, merkle.ProofError) as exc:
        return failed(_b64(signed.root_hash), reason=str(exc))
    return ProofCheck(
        "verified", signed.size, when, _b64(signed.root_hash), tuple(_b64(p) for p in proof)
    )


@dataclass(frozen=True)
class EventView:
    row: Row
    record: dict[str, Any] | None
    record_text: str
    leaf_hash: str
    proof: ProofCheck
    finding: AuditFinding | None
    reviewable: bool


def event_view(session: Session, seq: int, upto: int, origin: str) -> EventView | None:
    """One event as an auditor sees it; None when it does not exist (or came after ``upto``)."""
    event = session.get(AuditEvent, seq)
    if event is None or seq >= upto:
        return None
    shown = search.public_event(event)
    record = shown["record"]
    text = json.dumps(record, indent=2, ensure_ascii=False, sort_keys=True) if record else ""
    row = _row(event)
    return EventView(
        row=row,
        record=record,
        record_text=text,
        leaf_hash=shown["leaf_hash"],
        proof=check_proof(session, event, origin),
        finding=session.get(AuditFinding, seq),
        reviewable=event.kind == LOOKUP_KIND and (row.break_glass or row.review),
    )


# --- the review queue and findings ------------------------------------------------------------


def _reviewable() -> Any:
    return and_(
        AuditEvent.kind == LOOKUP_KIND,
        or_(AuditEvent.record.like(BREAK_GLASS), AuditEvent.record.like(REVIEW)),
    )


def review_queue(session: Session, upto: int) -> tuple[list[Row], int]:
    """Break-glass accesses and permits flagged for review with no finding yet, newest first;
    and how many wait in all."""
    unreviewed = select(AuditEvent).where(
        _reviewable(),
        AuditEvent.seq < upto,
        ~select(AuditFinding.event_seq).where(AuditFinding.event_seq == AuditEvent.seq).exists(),
    )
    rows = session.scalars(unreviewed.order_by(AuditEvent.seq.desc()).limit(QUEUE_SIZE))
    waiting = session.scalar(select(func.count()).select_from(unreviewed.subquery()))
    return [_row(e) for e in rows], int(waiting or 0)


def recent_findings(session: Session, limit: int = 20) -> list[AuditFinding]:
    return list(
        session.scalars(select(AuditFinding).order_by(AuditFinding.created_at.desc()).limit(limit))
    )


def record_finding(
    session: Session,
    auditor: ConsoleAuditor,
    seq: int,
    outcome: str,
    text: str,
    correlation_id: str | None,
) -> AuditFinding:
    """Close a queue item: the finding row and its ``audit.finding`` event in one transaction.

    The primary key on the reviewed event settles two auditors closing the same item at once:
    the second gets ``ConsoleError('event', 'reviewed')`` and nothing of theirs is logged.
    """
    text = text.strip()
    if outcome not in OUTCOMES:
        raise ConsoleError("outcome", "outcome")
    if not text:
        raise ConsoleError("note", "note-missing")
    if len(text) > MAX_NOTE or not all(c.isprintable() or c in "\r\n\t" for c in text):
        raise ConsoleError("note", "note-invalid")
    event = session.scalar(select(AuditEvent).where(AuditEvent.seq == seq, _reviewable()))
    if event is None:
        raise ConsoleError("event", "not-reviewable")
    if session.get(AuditFinding, seq) is not None:
        raise ConsoleError("event", "reviewed")
    record = audit.make_record(
        "audit.finding",
        correlation_id,
        audit.event_time(),
        officer=str(auditor.officer_id),
        requester=auditor.agency,
        channel="console",
        event=seq,
        outcome=outcome,
        finding=text,
    )
    try:
        appended = audit.append(session, [record])
        finding = AuditFinding(
            event_seq=seq,
            outcome=outcome,
            note=text,
            officer_id=auditor.officer_id,
            finding_seq=appended[0].index,
            created_at=datetime.fromisoformat(record["time"]),
        )
        session.add(finding)
        session.commit()
    except IntegrityError:
        session.rollback()
        raise ConsoleError("event", "reviewed") from None
    return finding


# --- charts and unusual volume ----------------------------------------------------------------


def _utc(value: datetime) -> datetime:
    return value if value.tzinfo else value.replace(tzinfo=UTC)


def _as_date(value: Any) -> date:
    return date.fromisoformat(value) if isinstance(value, str) else value


def days_ending(today: date, count: int) -> list[date]:
    return [today - timedelta(days=count - 1 - i) for i in range(count)]


@dataclass(frozen=True)
class Series:
    """Daily counts over ``days``: lookups by requesting agency, denials, break-glass."""

    days: list[date]
    by_agency: dict[str, list[int]]
    denials: list[int]
    break_glass: list[int]


def daily_series(session: Session, today: date, upto: int, count: int = CHART_DAYS) -> Series:
    """Lookup decisions per day over the last ``count`` UTC days, grouped in the database."""
    days = days_ending(today, count)
    start = datetime.combine(days[0], datetime.min.time(), UTC)
    index = {d: i for i, d in enumerate(days)}
    day = func.date(AuditEvent.created_at)
    base = (
        AuditEvent.kind == LOOKUP_KIND,
        AuditEvent.created_at >= start,
        AuditEvent.seq < upto,
    )
    by_agency: dict[str, list[int]] = defaultdict(lambda: [0] * count)
    statement = (
        select(AuditEvent.requester_agency_id, day, func.count())
        .where(*base)
        .group_by(AuditEvent.requester_agency_id, day)
    )
    for agency, when, n in session.execute(statement):
        if _as_date(when) in index:
            by_agency[agency or "-"][index[_as_date(when)]] = n
    denials = [0] * count
    for when, n in session.execute(
        select(day, func.count()).where(*base, AuditEvent.decision == "deny").group_by(day)
    ):
        if _as_date(when) in index:
            denials[index[_as_date(when)]] = n
    glass = [0] * count
    for when, n in session.execute(
        select(day, func.count()).where(*base, AuditEvent.record.like(BREAK_GLASS)).group_by(day)
    ):
        if _as_date(when) in index:
            glass[index[_as_date(when)]] = n
    return Series(days, dict(sorted(by_agency.items())), denials, glass)


@dataclass(frozen=True)
class VolumeFlag:
    officer: str
    agency: str | None
    today: int
    mean: float
    sigma: float
    threshold: float


def unusual_volume(session: Session, now: datetime, upto: int) -> list[VolumeFlag]:
    """Officers whose lookups today exceed their own baseline.

    A lookup is one request (one correlation id), however many sources it asked. The
    baseline is each of the previous ``BASELINE_DAYS`` UTC days, quiet days counting as zero:
    flagged when today > mean + ``SIGMAS`` x standard deviation and today >= ``MIN_FLAGGED``.
    """
    today = now.astimezone(UTC).date()
    start = datetime.combine(today - timedelta(days=BASELINE_DAYS), datetime.min.time(), UTC)
    day = func.date(AuditEvent.created_at)
    statement = (
        select(
            AuditEvent.officer_id,
            AuditEvent.requester_agency_id,
            day,
            func.count(func.distinct(AuditEvent.correlation_id)),
        )
        .where(
            AuditEvent.kind == LOOKUP_KIND,
            AuditEvent.officer_id.is_not(None),
            AuditEvent.created_at >= start,
            AuditEvent.seq < upto,
        )
        .group_by(AuditEvent.officer_id, AuditEvent.requester_agency_id, day)
    )
    counts: dict[uuid.UUID, dict[date, int]] = defaultdict(dict)
    agencies: dict[uuid.UUID, str | None] = {}
    for officer, agency, when, n in session.execute(statement):
        on = _as_date(when)
        counts[officer][on] = counts[officer].get(on, 0) + n
        agencies[officer] = agency
    flags = []
    for officer, per_day in counts.items():
        current = per_day.get(today, 0)
        history = [per_day.get(today - timedelta(days=k), 0) for k in range(1, BASELINE_DAYS + 1)]
        mean = sum(history) / len(history)
        sigma = math.sqrt(sum((x - mean) ** 2 for x in history) / len(history))
        threshold = mean + SIGMAS * sigma
        if current >= MIN_FLAGGED and current > threshold:
            flags.append(
                VolumeFlag(str(officer), agencies[officer], current, mean, sigma, threshold)
            )
    return sorted(flags, key=lambda f: (-f.today, f.officer))


# --- integrity ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class Integrity:
    checkpoint: AuditCheckpoint | None
    checkpoint_time: datetime | None
    root_hash: str
    signature_ok: bool
    signature_problem: str
    integrated: int
    pending: int
    verification: AuditVerification | None = None


def integrity(session: Session, origin: str) -> Integrity:
    """The latest signed checkpoint, its signature checked now, and the tree's backlog."""
    latest = checkpoints.latest_checkpoint(session)
    head = tree.tree_head(session)
    pending = tree.pending(session)
    last_run = verify.last_run(session)
    if latest is None:
        return Integrity(None, None, "", False, "", head.size, pending, last_run)
    problem = ""
    try:
        signed = note.open_checkpoint(latest.note, checkpoints.verifiers(session).values(), origin)
        if (signed.size, signed.root_hash) != (latest.tree_size, latest.root_hash):
            problem = "the signed note differs from its columns"
    except note.NoteError as exc:
        problem = str(exc)
    return Integrity(
        latest,
        _utc(latest.created_at),
        _b64(latest.root_hash),
        not problem,
        problem,
        head.size,
        pending,
        last_run,
    )
