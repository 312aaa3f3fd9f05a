"""The auditor's queries over the audit log: filters, keyset pages, statistics.

Persons are named the way agencies know them (``scheme:value``, optionally with the agency that
uses the scheme) and resolved through the identity links; the broker's internal person ids are
used inside the query only and are removed from every event shown.
"""

from __future__ import annotations

import base64
import binascii
import json
import uuid
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import Select, and_, func, or_, select
from sqlalchemy.orm import Session

from audit.models import AuditEvent
from identity.models import IdentityLink

MAX_LIMIT = 500
DEFAULT_LIMIT = 50
MAX_VALUE_LENGTH = 256
#: Record keys never shown to an auditor: internal identifiers.
HIDDEN_KEYS = ("person",)

#: Query parameter -> indexed column it matches exactly.
EXACT = {
    "requester": AuditEvent.requester_agency_id,
    "provider": AuditEvent.provider_agency_id,
    "client": AuditEvent.client_id,
    "purpose": AuditEvent.purpose_id,
    "category": AuditEvent.category_id,
    "decision": AuditEvent.decision,
    "kind": AuditEvent.kind,
    "correlation_id": AuditEvent.correlation_id,
}
#: Flags of a lookup decision searched for in the canonical record, where they appear exactly
#: as these bytes (sorted keys, no spaces): no column copies them.
FLAGS = {"break_glass": '"break_glass":true', "without_case": '"without_case":true'}
PARAMETERS = frozenset(
    {
        *EXACT,
        *FLAGS,
        "case",
        "person",
        "person_agency",
        "agency",
        "officer",
        "from",
        "to",
        "limit",
        "cursor",
    }
)


class QueryError(ValueError):
    """A search parameter that is malformed or names nothing; ``parameter`` says which."""

    def __init__(self, parameter: str, message: str) -> None:
        super().__init__(message)
        self.parameter = parameter


@dataclass(frozen=True)
class EventQuery:
    exact: dict[str, str] = field(default_factory=dict)
    person: tuple[str, str] | None = None
    person_agency: str | None = None
    agency: str | None = None
    officer: uuid.UUID | None = None
    since: datetime | None = None
    until: datetime | None = None
    limit: int = DEFAULT_LIMIT
    before_seq: int | None = None
    #: Events from this index on are not shown: the log as it was when the request came.
    upto: int | None = None
    flags: tuple[str, ...] = ()
    #: A case reference: the events of the case and the lookups that relied on it.
    case: str | None = None

    def describe(self) -> dict[str, Any]:
        """The filters as recorded in the auditor's own audit event (no person identifier)."""
        described: dict[str, Any] = dict(self.exact)
        if self.person:
            described["person_scheme"] = self.person[0]
        for key in ("person_agency", "agency"):
            if getattr(self, key):
                described[key] = getattr(self, key)
        if self.officer:
            described["officer"] = str(self.officer)
        if self.since:
            described["from"] = self.since.isoformat()
        if self.until:
            described["to"] = self.until.isoformat()
        for flag in self.flags:
            described[flag] = True
        if self.case:
            described["case"] = self.case
        return described


def _time(parameter: str, value: str) -> datetime:
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        raise QueryError(parameter, f"{parameter} is not an ISO 8601 date-time") from None
    if parsed.tzinfo is None:
        raise QueryError(parameter, f"{parameter} needs a time zone, e.g. 2026-01-31T00:00:00Z")
    return parsed


def encode_cursor(seq: int) -> str:
    return base64.urlsafe_b64encode(f"seq:{seq}".encode()).decode().rstrip("=")


def _decode_cursor(value: str) -> int:
    try:
        raw = base64.urlsafe_b64decode(value + "=" * (-len(value) % 4)).decode()
        kind, _, number = raw.partition(":")
        if kind != "seq" or not number.isdigit() or len(number) > 19:
            raise ValueError
        return int(number)
    except (ValueError, binascii.Error, UnicodeDecodeError):
        raise QueryError("cursor", "cursor is not one this API gave out") from None


def parse_query(args: Mapping[str, str], paged: bool = True) -> EventQuery:
    """Check every parameter; unknown ones are errors, so a typo never widens a search."""
    unknown = sorted(set(args) - PARAMETERS - ({"format"} if not paged else set()))
    if unknown:
        raise QueryError(unknown[0], f"unknown parameter {unknown[0]!r}")
    for key, value in args.items():
        if len(value) > MAX_VALUE_LENGTH or not value.isprintable():
            raise QueryError(key, f"{key} is too long or holds control characters")
    exact = {k: args[k] for k in EXACT if args.get(k)}
    if "decision" in exact and exact["decision"] not in ("permit", "deny"):
        raise QueryError("decision", "decision is permit or deny")
    person = None
    if args.get("person"):
        scheme, sep, value = args["person"].partition(":")
        if not sep or not scheme or not value:
            raise QueryError("person", "person is the agency identifier as scheme:value")
        person = (scheme, value)
    officer = None
    if args.get("officer"):
        try:
            officer = uuid.UUID(args["officer"])
        except ValueError:
            raise QueryError("officer", "officer is an officer id (a UUID)") from None
    since = _time("from", args["from"]) if args.get("from") else None
    until = _time("to", args["to"]) if args.get("to") else None
    if since and until and since >= until:
        raise QueryError("to", "to must be after from")
    limit = DEFAULT_LIMIT
    if paged and args.get("limit"):
        if not args["limit"].isdigit() or not 1 <= int(args["limit"]) <= MAX_LIMIT:
            raise QueryError("limit", f"limit is a whole number from 1 to {MAX_LIMIT}")
        limit = int(args["limit"])
    before = _decode_cursor(args["cursor"]) if paged and args.get("cursor") else None
    flags = []
    for flag in FLAGS:
        if args.get(flag) not in (None, "", "true", "false"):
            raise QueryError(flag, f"{flag} is true or false")
        if args.get(flag) == "true":
            flags.append(flag)
    return EventQuery(
        flags=tuple(flags),
        case=args.get("case") or None,
        exact=exact,
        person=person,
        person_agency=args.get("person_agency") or None,
        agency=args.get("agency") or None,
        officer=officer,
        since=since,
        until=until,
        limit=limit,
        before_seq=before,
    )


def resolve_person(session: Session, query: EventQuery) -> uuid.UUID | None:
    """The internal id behind ``scheme:value``; an identifier that names nothing is an error."""
    if query.person is None:
        return None
    scheme, value = query.person
    statement = select(IdentityLink.person_id).where(
        IdentityLink.scheme == scheme, IdentityLink.value == value
    )
    if query.person_agency:
        statement = statement.where(IdentityLink.agency_id == query.person_agency)
    found = set(session.scalars(statement.distinct().limit(2)))
    if not found:
        raise QueryError("person", "no person is known by that identifier")
    if len(found) > 1:
        raise QueryError("person", "the identifier names several persons; add person_agency")
    return found.pop()


def _filtered(statement: Select, query: EventQuery, person_id: uuid.UUID | None) -> Select:
    for key, value in query.exact.items():
        statement = statement.where(EXACT[key] == value)
    if person_id is not None:
        statement = statement.where(AuditEvent.person_id == person_id)
    if query.agency:
        statement = statement.where(
            or_(
                AuditEvent.requester_agency_id == query.agency,
                AuditEvent.provider_agency_id == query.agency,
            )
        )
    if query.officer:
        statement = statement.where(AuditEvent.officer_id == query.officer)
    if query.since:
        statement = statement.where(AuditEvent.created_at >= query.since)
    if query.until:
        statement = statement.where(AuditEvent.created_at < query.until)
    if query.upto is not None:
        statement = statement.where(AuditEvent.seq < query.upto)
    if query.flags:
        # The flags are fields of lookup decisions; other records (an auditor's own search
        # among them) may hold the same words in their filters.
        statement = statement.where(AuditEvent.kind == "lookup.decision")
    for flag in query.flags:
        statement = statement.where(AuditEvent.record.contains(FLAGS[flag], autoescape=True))
    if query.case:
        quoted = json.dumps(query.case, ensure_ascii=False)
        statement = statement.where(
            or_(
                AuditEvent.record.contains(f'"case":{quoted}', autoescape=True),
                and_(
                    AuditEvent.record.contains('"cases":[', autoescape=True),
                    AuditEvent.record.contains(quoted, autoescape=True),
                ),
            )
        )
    return statement


@dataclass(frozen=True)
class Page:
    events: list[AuditEvent]
    next_cursor: str | None


def search(session: Session, query: EventQuery, person_id: uuid.UUID | None) -> Page:
    """Newest first, keyset-paged on the leaf index: stable while the log grows."""
    statement = _filtered(select(AuditEvent), query, person_id)
    if query.before_seq is not None:
        statement = statement.where(AuditEvent.seq < query.before_seq)
    rows = list(session.scalars(statement.order_by(AuditEvent.seq.desc()).limit(query.limit + 1)))
    more = len(rows) > query.limit
    rows = rows[: query.limit]
    return Page(rows, encode_cursor(rows[-1].seq) if more and rows else None)


def iterate(
    session: Session, query: EventQuery, person_id: uuid.UUID | None, chunk: int = 200
) -> Iterator[list[AuditEvent]]:
    """Every matching event, oldest first, a chunk at a time (constant memory)."""
    after = -1
    while True:
        statement = _filtered(select(AuditEvent), query, person_id).where(AuditEvent.seq > after)
        rows = list(session.scalars(statement.order_by(AuditEvent.seq).limit(chunk)))
        if not rows:
            return
        yield rows
        after = rows[-1].seq
        session.expunge_all()


def _utc(value: datetime) -> datetime:
    """SQLite hands back naive date-times; every stored time is UTC."""
    return value if value.tzinfo else value.replace(tzinfo=UTC)


def public_record(row: AuditEvent) -> dict[str, Any] | None:
    if row.record is None:
        return None
    record = json.loads(row.record)
    for key in HIDDEN_KEYS:
        record.pop(key, None)
    return record


def public_event(row: AuditEvent) -> dict[str, Any]:
    """An event as an auditor sees it: indexed fields, the record without internal ids."""
    return {
        "index": row.seq,
        "leaf_hash": base64.b64encode(row.leaf_hash).decode(),
        "time": _utc(row.created_at).isoformat(),
        "kind": row.kind,
        "decision": row.decision,
        "requester": row.requester_agency_id,
        "provider": row.provider_agency_id,
        "client": row.client_id,
        "officer": str(row.officer_id) if row.officer_id else None,
        "purpose": row.purpose_id,
        "category": row.category_id,
        "correlation_id": row.correlation_id,
        "pruned": row.record is None,
        "record": public_record(row),
    }


STAT_DIMENSIONS = {
    "decision": AuditEvent.decision,
    "kind": AuditEvent.kind,
    "requester": AuditEvent.requester_agency_id,
    "provider": AuditEvent.provider_agency_id,
    "purpose": AuditEvent.purpose_id,
    "category": AuditEvent.category_id,
}
STAT_TOP = 50
#: The most recent days with events that the daily series covers.
STAT_DAYS = 366


def stats(session: Session, query: EventQuery, person_id: uuid.UUID | None) -> dict[str, Any]:
    """Counts by decision, kind, agencies, purpose, category and day, over the filters."""
    total = session.scalar(
        _filtered(select(func.count()), query, person_id).select_from(AuditEvent)
    )
    result: dict[str, Any] = {"total": total}
    for name, column in STAT_DIMENSIONS.items():
        count = func.count().label("n")
        statement = (
            _filtered(select(column, count), query, person_id)
            .where(column.is_not(None))
            .group_by(column)
            .order_by(count.desc(), column)
            .limit(STAT_TOP)
        )
        result[f"by_{name}"] = [{"value": v, "count": n} for v, n in session.execute(statement)]
    day = func.date(AuditEvent.created_at)
    statement = _filtered(select(day, func.count()), query, person_id).group_by(day)
    days = session.execute(statement.order_by(day.desc()).limit(STAT_DAYS)).all()
    result["by_day"] = [
        {"day": d if isinstance(d, str) else d.isoformat(), "count": n} for d, n in reversed(days)
    ]
    return result
