"""What the citizen portal shows: a person's agencies, requests, consents and access history.

Every query here takes the logged-in person's id and filters on it in SQL, so a page can
never reach another person's rows by an id in its URL: someone else's row is not found.
"""

from __future__ import annotations

import csv
import io
import json
import uuid
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass
from datetime import UTC, date, datetime, time, timedelta
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from audit.models import AuditEvent
from broker.models import Agency
from broker.registry.names import Names, label
from consent.models import Consent, ConsentEvent
from consent.service import effective_status
from identity.models import IdentityLink

#: Lookup decisions are what "who looked at my data" lists.
ACCESS_KINDS = ("lookup.decision",)
OUTCOMES = ("permit", "deny")
#: The history page and its exports stop here; the filters narrow a longer history down.
HISTORY_LIMIT = 1000


class FilterError(ValueError):
    """A history filter the portal cannot apply; the message is shown to the citizen."""


@dataclass(frozen=True)
class AgencyView:
    id: str
    name: str
    sector: str
    since: datetime


def my_agencies(session: Session, person_id: uuid.UUID, locale: str = "en") -> list[AgencyView]:
    """The reference directory's answer to "which agencies know me", one line per agency."""
    rows = session.execute(
        select(Agency, IdentityLink.created_at)
        .join(IdentityLink, IdentityLink.agency_id == Agency.id)
        .where(IdentityLink.person_id == person_id)
        .order_by(Agency.name, IdentityLink.created_at)
    )
    seen: dict[str, AgencyView] = {}
    for agency, since in rows:
        if agency.id not in seen:
            seen[agency.id] = AgencyView(
                agency.id, label(agency, "name", locale), agency.sector, since
            )
    return sorted(seen.values(), key=lambda view: view.name)


@dataclass(frozen=True)
class ConsentView:
    id: uuid.UUID
    status: str
    agency: str
    provider: str
    purpose: str
    categories: list[str]
    days: int
    valid_from: datetime
    valid_until: datetime
    justification: str | None
    request_expires_at: datetime | None
    has_receipt: bool


def _aware(moment: datetime | None) -> datetime | None:
    if moment is None:
        return None
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def consent_view(consent: Consent, names: Names, now: datetime) -> ConsentView:
    start, end = _aware(consent.valid_from), _aware(consent.valid_until)
    assert start is not None and end is not None
    return ConsentView(
        id=consent.id,
        status=effective_status(consent, now),
        agency=names.agency(consent.grantee_agency_id),
        provider=names.agency(consent.provider_agency_id),
        purpose=names.purpose(consent.purpose_id),
        categories=[names.category(c) for c in consent.categories],
        days=max(1, round((end - start) / timedelta(days=1))),
        valid_from=start,
        valid_until=end,
        justification=consent.justification,
        request_expires_at=_aware(consent.request_expires_at),
        has_receipt=consent.receipt_jws is not None,
    )


def _consents(session: Session, person_id: uuid.UUID) -> Sequence[Consent]:
    return session.scalars(
        select(Consent).where(Consent.person_id == person_id).order_by(Consent.created_at.desc())
    ).all()


def pending_requests(
    session: Session, person_id: uuid.UUID, now: datetime, locale: str = "en"
) -> list[ConsentView]:
    """Requests the citizen can still answer (a lapsed request is no longer shown)."""
    names = Names(session, locale)
    views = [consent_view(c, names, now) for c in _consents(session, person_id)]
    return [v for v in views if v.status == "requested"]


def my_consents(
    session: Session, person_id: uuid.UUID, now: datetime, locale: str = "en"
) -> dict[str, list]:
    """Granted consents by their state now: active, revoked, expired."""
    names = Names(session, locale)
    grouped: dict[str, list[ConsentView]] = {"active": [], "revoked": [], "expired": []}
    for consent in _consents(session, person_id):
        view = consent_view(consent, names, now)
        if view.status in grouped:
            grouped[view.status].append(view)
    return grouped


def find_consent(
    session: Session, person_id: uuid.UUID, consent_id: str, now: datetime, locale: str = "en"
) -> tuple[ConsentView, list[ConsentEvent]] | None:
    """One of the citizen's own consents with its history; anything else is ``None``."""
    try:
        key = uuid.UUID(consent_id)
    except ValueError:
        return None
    consent = session.scalar(
        select(Consent).where(Consent.id == key, Consent.person_id == person_id)
    )
    if consent is None:
        return None
    return consent_view(consent, Names(session, locale), now), list(consent.history)


@dataclass(frozen=True)
class HistoryFilters:
    agency: str | None = None
    outcome: str | None = None
    start: date | None = None
    end: date | None = None

    @classmethod
    def parse(cls, args: Any, agencies: Iterable[str]) -> HistoryFilters:
        """Read the filter form; the date range is inclusive of both days."""
        agency = (args.get("agency") or "").strip() or None
        if agency is not None and agency not in set(agencies):
            raise FilterError("agency")
        outcome = (args.get("outcome") or "").strip() or None
        if outcome is not None and outcome not in OUTCOMES:
            raise FilterError("outcome")
        start, end = _day(args.get("from")), _day(args.get("to"))
        if start and end and end < start:
            raise FilterError("range")
        return cls(agency, outcome, start, end)

    def query_args(self) -> dict[str, str]:
        values = {
            "agency": self.agency,
            "outcome": self.outcome,
            "from": self.start.isoformat() if self.start else None,
            "to": self.end.isoformat() if self.end else None,
        }
        return {k: v for k, v in values.items() if v}


def _day(value: str | None) -> date | None:
    value = (value or "").strip()
    if not value:
        return None
    if len(value) != 10:
        raise FilterError("date")
    try:
        return date.fromisoformat(value)
    except ValueError:
        raise FilterError("date") from None


@dataclass(frozen=True)
class AccessView:
    time: datetime
    agency_id: str
    agency: str
    officer: str | None
    system: str | None
    purpose: str
    category: str
    outcome: str
    capacities: list[str]
    break_glass: bool
    reason: str | None

    def to_json(self) -> dict[str, Any]:
        data = asdict(self)
        data["time"] = self.time.astimezone(UTC).isoformat(timespec="seconds")
        data.pop("agency_id")
        return data


def access_history(
    session: Session,
    person_id: uuid.UUID,
    filters: HistoryFilters,
    limit: int = HISTORY_LIMIT,
    locale: str = "en",
) -> list[AccessView]:
    """Every lookup decision about the person in the audit log, newest first."""
    query = select(AuditEvent).where(
        AuditEvent.person_id == person_id, AuditEvent.kind.in_(ACCESS_KINDS)
    )
    if filters.agency:
        query = query.where(AuditEvent.requester_agency_id == filters.agency)
    if filters.outcome:
        query = query.where(AuditEvent.decision == filters.outcome)
    if filters.start:
        query = query.where(AuditEvent.created_at >= datetime.combine(filters.start, time.min))
    if filters.end:
        next_day = filters.end + timedelta(days=1)
        query = query.where(AuditEvent.created_at < datetime.combine(next_day, time.min))
    names = Names(session, locale)
    views = []
    for event in session.scalars(query.order_by(AuditEvent.seq.desc()).limit(limit)):
        record = json.loads(event.record or "{}")
        views.append(
            AccessView(
                time=_aware(event.created_at) or datetime.now(UTC),
                agency_id=event.requester_agency_id or "",
                agency=names.agency(event.requester_agency_id),
                officer=names.officer(event.officer_id) if event.officer_id else None,
                system=None if event.officer_id else names.client(event.client_id),
                purpose=names.purpose(event.purpose_id),
                category=names.category(event.category_id),
                outcome=event.decision or "",
                capacities=[names.capacity(c) for c in record.get("capacities") or []],
                break_glass=bool(record.get("break_glass")),
                reason=record.get("reason"),
            )
        )
    return views


def history_agencies(
    session: Session, person_id: uuid.UUID, locale: str = "en"
) -> list[tuple[str, str]]:
    """The agencies the filter offers: those that looked, and those that know the person."""
    looked = session.scalars(
        select(AuditEvent.requester_agency_id)
        .where(AuditEvent.person_id == person_id, AuditEvent.kind.in_(ACCESS_KINDS))
        .distinct()
    ).all()
    ids = {a for a in looked if a} | {a.id for a in my_agencies(session, person_id)}
    names = Names(session, locale)
    return sorted(((i, names.agency(i)) for i in ids), key=lambda pair: pair[1])


CSV_COLUMNS = (
    "time",
    "agency",
    "officer",
    "system",
    "purpose",
    "category",
    "outcome",
    "capacities",
    "break_glass",
    "reason",
)


def history_csv(views: Sequence[AccessView]) -> str:
    """A spreadsheet-safe CSV: cells that a spreadsheet would run as formulas are quoted out."""
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow(CSV_COLUMNS)
    for view in views:
        data = view.to_json()
        data["capacities"] = "; ".join(view.capacities)
        data["break_glass"] = "yes" if view.break_glass else "no"
        writer.writerow([_cell(data[c]) for c in CSV_COLUMNS])
    return out.getvalue()


def _cell(value: Any) -> str:
    text = "" if value is None else str(value)
    if text[:1] in ("=", "+", "-", "@", "\t", "\r"):
        return "'" + text
    return text


def history_json(views: Sequence[AccessView], filters: HistoryFilters) -> dict[str, Any]:
    return {
        "filters": filters.query_args(),
        "accesses": [v.to_json() for v in views],
        "truncated": len(views) >= HISTORY_LIMIT,
    }
