"""The federated lookup: resolve, find sources, decide, record, fetch, keep what is permitted.

The steps run in the order of ``LookupService.run``, visible in one place. Decisions are
appended to the audit log and committed before any source is called, so every decision is
durable before data exists to be returned, and a failure to record stops the lookup with no data.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import bindparam, select
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session

import audit
import consent
from audit import policy_versions
from broker.cases.service import CaseFacts, case_facts
from broker.exchange.sources import SourceCaller, SourceSpec
from broker.models import Agency, DataCategory, Purpose, Source, SourceCategory
from broker.prepared import Fetched, Prepared
from identity.models import IdentityLink
from policies import Decision, DecisionRequest, PolicyEngine, PurposeCapError, check_purpose_request

log = logging.getLogger("casebroker.exchange")


_purpose = Purpose.__table__.c
_category = DataCategory.__table__.c
_link = IdentityLink.__table__
_asked = _link.alias("asked")
_source = Source.__table__.c
_agency = Agency.__table__.c
_provides = SourceCategory.__table__.c

# The registry and identity reads of a lookup, built once: a lookup pays only for running them.
_PURPOSE = Prepared(
    select(_purpose.id, _purpose.break_glass_allowed, _purpose.justification_required).where(
        _purpose.id == bindparam("purpose")
    )
)
_CATEGORIES = Prepared(
    select(_category.id, _category.sensitivity, _category.fields).where(
        _category.id.in_(bindparam("categories", expanding=True))
    )
)
#: Every agency's links to the person the requester names with its own identifier.
_PERSON_LINKS = Prepared(
    select(_link.c.person_id, _link.c.agency_id, _link.c.scheme, _link.c.value)
    .join(_asked, _asked.c.person_id == _link.c.person_id)
    .where(
        _asked.c.agency_id == bindparam("agency"),
        _asked.c.scheme == bindparam("scheme"),
        _asked.c.value == bindparam("value"),
    )
)
#: The other agencies' active sources of a wanted category, with every category they provide.
_TARGETS = Prepared(
    select(
        _source.id,
        _source.agency_id,
        _source.adapter,
        _source.config,
        _source.timeout_ms,
        _category.id.label("category_id"),
        _category.fields,
    )
    .join(Agency.__table__, _agency.id == _source.agency_id)
    .join(SourceCategory.__table__, _provides.source_id == _source.id)
    .join(DataCategory.__table__, _category.id == _provides.category_id)
    .where(
        _source.status == "active",
        _agency.status == "active",
        _source.agency_id != bindparam("requester"),
        _source.id.in_(
            select(_provides.source_id).where(
                _provides.category_id.in_(bindparam("categories", expanding=True))
            )
        ),
    )
    .order_by(_source.agency_id, _source.id, _category.id)
)


class LookupRejected(Exception):
    """The request cannot be decided at all (unknown purpose, category or person)."""

    def __init__(self, status: int, title: str, detail: str, audited: bool = False) -> None:
        super().__init__(detail)
        self.status, self.title, self.detail, self.audited = status, title, detail, audited


class AuditUnavailable(Exception):
    """The decisions could not be recorded; nothing may be returned."""


@dataclass(frozen=True)
class Caller:
    client_id: str
    agency: str
    officer: str | None = None
    officer_roles: tuple[str, ...] = ()


@dataclass(frozen=True)
class LookupRequest:
    scheme: str
    value: str
    categories: tuple[str, ...]
    purpose: str
    justification: str | None = None
    break_glass: bool = False


@dataclass
class Target:
    """One (source, category) pair to decide on and perhaps fetch."""

    source: SourceSpec
    provider: str
    #: The category's ``id``, ``sensitivity`` and ``fields``.
    category: Fetched
    identifier: str | None
    decision: Decision | None = None
    #: The fields that may leave: the obligation's, narrowed by the consent it relied on.
    fields: tuple[str, ...] = ()
    appended: audit.Appended | None = None


@dataclass
class LookupResult:
    correlation_id: str
    purpose: str
    break_glass: bool
    results: list[dict[str, Any]] = field(default_factory=list)


class LookupService:
    def __init__(
        self,
        session: Session,
        engine: PolicyEngine,
        sources: SourceCaller,
        correlation_id: str,
        now: datetime | None = None,
    ) -> None:
        self.session = session
        self.engine = engine
        self.sources = sources
        self.correlation_id = correlation_id
        self.now = now or datetime.now(UTC)
        self.time = audit.event_time(self.now)

    def run(self, caller: Caller, request: LookupRequest) -> LookupResult:
        purpose, break_glass = self._check_purpose(caller, request)
        categories = self._check_categories(request)
        person_id, identifiers = self._resolve_person(caller, request)
        targets = self._find_targets(caller, categories, identifiers)
        consents = self._consents(caller, person_id, purpose)
        cases = case_facts(
            self.session, caller.agency, person_id, purpose.id, caller.officer, self.now
        )
        self._decide(caller, request, targets, consents, cases, break_glass)
        self._record(caller, request, person_id, targets, cases, break_glass)
        return self._fetch_and_shape(request, targets, break_glass)

    def _check_purpose(self, caller: Caller, request: LookupRequest) -> tuple[Fetched, bool]:
        found = _PURPOSE.rows(self.session, {"purpose": request.purpose})
        if not found:
            raise LookupRejected(
                422, "Unknown purpose", f"No purpose {request.purpose!r} is registered."
            )
        purpose = found[0]
        try:
            check = check_purpose_request(purpose, request.justification, request.break_glass)
        except PurposeCapError as exc:
            self._reject(caller, request, "purpose", str(exc))
            raise LookupRejected(422, "Purpose requirements not met", str(exc), True) from None
        return purpose, check.break_glass

    def _check_categories(self, request: LookupRequest) -> list[Fetched]:
        rows = _CATEGORIES.rows(self.session, {"categories": list(request.categories)})
        found = {row.id: row for row in rows}
        unknown = [c for c in request.categories if c not in found]
        if unknown:
            raise LookupRejected(
                422, "Unknown category", f"Unknown categories: {', '.join(unknown)}."
            )
        return [found[c] for c in request.categories]

    def _resolve_person(
        self, caller: Caller, request: LookupRequest
    ) -> tuple[uuid.UUID, dict[str, dict[str, str]]]:
        """The person's internal id and every agency's identifiers for them, by scheme."""
        links = _PERSON_LINKS.rows(
            self.session,
            {"agency": caller.agency, "scheme": request.scheme, "value": request.value},
        )
        if not links:
            self._reject(caller, request, "person", "unknown identifier")
            raise LookupRejected(
                404,
                "Person not found",
                "Your agency has no person registered under this identifier.",
                True,
            )
        by_agency: dict[str, dict[str, str]] = {}
        for link in links:
            by_agency.setdefault(link.agency_id, {})[link.scheme] = link.value
        return links[0].person_id, by_agency

    def _find_targets(
        self,
        caller: Caller,
        categories: Sequence[Fetched],
        identifiers: Mapping[str, Mapping[str, str]],
    ) -> list[Target]:
        """The other agencies' active sources providing a wanted category, with the person's
        identifier at each.

        A source's spec lists every category it provides, not only the wanted ones, so its
        adapter (kept per process, keyed by the spec) is the same whatever a lookup asks for.
        """
        wanted = {c.id: c for c in categories}
        rows = _TARGETS.rows(self.session, {"categories": list(wanted), "requester": caller.agency})
        sources: dict[str, tuple[Fetched, dict[str, tuple[str, ...]]]] = {}
        for row in rows:
            sources.setdefault(row.id, (row, {}))[1][row.category_id] = tuple(row.fields)
        targets = []
        for source, provided in sources.values():
            config = dict(source.config)
            spec = SourceSpec(source.id, source.adapter, config, provided, source.timeout_ms / 1000)
            schemes = identifiers.get(source.agency_id, {})
            scheme = config.get("identifier_scheme")
            identifier = schemes.get(scheme) if scheme else next(iter(schemes.values()), None)
            for category_id in provided:
                if category_id in wanted:
                    targets.append(Target(spec, source.agency_id, wanted[category_id], identifier))
        return targets

    def _consents(
        self, caller: Caller, person_id: uuid.UUID, purpose: Fetched
    ) -> Sequence[Fetched]:
        """Read at decision time from the consent table: a revocation committed before this
        statement is seen by it, on every node; a consent past its window no longer counts."""
        return consent.in_force(self.session, person_id, caller.agency, purpose.id, self.now)

    @staticmethod
    def _covering(consents: Sequence[Fetched], provider: str, category: str) -> list[Fetched]:
        return [
            c
            for c in consents
            if category in c.categories and c.provider_agency_id in (None, provider)
        ]

    @staticmethod
    def _effective_fields(
        decision: Decision, category: Fetched, covering: Sequence[Fetched]
    ) -> tuple[str, ...]:
        """The obligation's fields that the category has; where the permit rests on consent,
        only those some covering consent allows (a consent naming no fields allows all)."""
        allowed = _permitted_fields(decision, category)
        if "consent" not in (decision.legal_basis or "").split(",") or not covering:
            return allowed
        granted: set[str] = set()
        for c in covering:
            named = (c.fields or {}).get(category.id)
            if not named:
                return allowed
            granted.update(named)
        return tuple(f for f in allowed if f in granted)

    def _decide(
        self,
        caller: Caller,
        request: LookupRequest,
        targets: list[Target],
        consents: Sequence[Fetched],
        cases: CaseFacts,
        break_glass: bool,
    ) -> None:
        requests = [
            DecisionRequest(
                requester=caller.agency,
                client_id=caller.client_id,
                officer_roles=caller.officer_roles,
                provider=t.provider,
                category=t.category.id,
                sensitivity=t.category.sensitivity,
                purpose=request.purpose,
                consent=bool(self._covering(consents, t.provider, t.category.id)),
                justification=bool(request.justification and request.justification.strip()),
                break_glass=break_glass,
                now=self.now,
                open_case=cases.open_case,
                case_capacities=cases.capacities,
                officer_assigned=cases.officer_assigned,
            )
            for t in targets
        ]
        for target, decision in zip(targets, self.engine.decide_many(requests), strict=True):
            target.decision = decision
            if decision.permit:
                covering = self._covering(consents, target.provider, target.category.id)
                target.fields = self._effective_fields(decision, target.category, covering)

    def _record(
        self,
        caller: Caller,
        request: LookupRequest,
        person_id: uuid.UUID,
        targets: list[Target],
        cases: CaseFacts,
        break_glass: bool,
    ) -> None:
        """One event per decision; a permit without an open case is flagged for review."""
        records = []
        for t in targets:
            d = t.decision
            assert d is not None
            records.append(
                audit.make_record(
                    "lookup.decision",
                    self.correlation_id,
                    self.time,
                    client=caller.client_id,
                    officer=caller.officer,
                    requester=caller.agency,
                    person=str(person_id),
                    provider=t.provider,
                    source=t.source.id,
                    category=t.category.id,
                    purpose=request.purpose,
                    decision="permit" if d.permit else "deny",
                    policies=list(d.policy_ids),
                    policy_version=d.policy_version,
                    legal_basis=d.legal_basis,
                    fields=list(t.fields) if d.permit else None,
                    reason=None if d.permit else d.reason,
                    break_glass=break_glass or None,
                    justification=request.justification,
                    cases=list(cases.references) or None,
                    capacities=list(cases.capacities) or None,
                    without_case=None if cases.open_case else True,
                    review=True if d.permit and (break_glass or not cases.open_case) else None,
                )
            )
        try:
            loaded = self._first_uses(targets)
            appended = audit.append(self.session, loaded + records)[len(loaded) :]
            self.session.commit()
        except SQLAlchemyError as exc:
            self.session.rollback()
            raise AuditUnavailable(str(exc)) from exc
        for target, entry in zip(targets, appended, strict=True):
            target.appended = entry

    def _first_uses(self, targets: Sequence[Target]) -> list[dict[str, Any]]:
        """``policy.loaded`` records for policy set versions deciding for the first time."""
        versions = dict.fromkeys(t.decision.policy_version for t in targets if t.decision)
        loaded = []
        for version in versions:
            if version is not None:
                record = policy_versions.first_use(
                    self.session, version, self.engine.files_of, self.time
                )
                if record is not None:
                    loaded.append(record)
        return loaded

    def _reject(self, caller: Caller, request: LookupRequest, stage: str, reason: str) -> None:
        """Refused lookups are recorded too: probing for identifiers is worth an auditor's look."""
        record = audit.make_record(
            "lookup.rejected",
            self.correlation_id,
            self.time,
            client=caller.client_id,
            officer=caller.officer,
            requester=caller.agency,
            purpose=request.purpose,
            categories=list(request.categories),
            stage=stage,
            reason=reason,
        )
        try:
            audit.append(self.session, [record])
            self.session.commit()
        except SQLAlchemyError as exc:
            self.session.rollback()
            raise AuditUnavailable(str(exc)) from exc

    def _fetch_and_shape(
        self, request: LookupRequest, targets: list[Target], break_glass: bool
    ) -> LookupResult:
        calls = [
            (t.source, t.category.id, t.identifier)
            for t in targets
            if t.decision and t.decision.permit and t.identifier
        ]
        outcomes = iter(self.sources.fetch_all(calls))
        result = LookupResult(self.correlation_id, request.purpose, break_glass)
        for t in targets:
            d = t.decision
            assert d is not None and t.appended is not None
            entry: dict[str, Any] = {
                "provider": t.provider,
                "source": t.source.id,
                "category": t.category.id,
            }
            if not d.permit:
                entry.update(status="denied", reason=d.reason)
            elif not t.identifier:
                entry.update(status="not_found")
            else:
                outcome = next(outcomes)
                if outcome.records is None:
                    log.warning(
                        "source %s unavailable for %s: %s (correlation id %s)",
                        t.source.id,
                        t.category.id,
                        outcome.error,
                        self.correlation_id,
                    )
                    entry.update(status="unavailable", reason="The source could not answer.")
                elif not outcome.records:
                    entry.update(status="not_found")
                else:
                    allowed = t.fields
                    entry.update(
                        status="ok",
                        fields=list(allowed),
                        legal_basis=d.legal_basis,
                        records=[_only(r, allowed) for r in outcome.records],
                    )
            entry["audit"] = {"index": t.appended.index, "leaf_hash": t.appended.leaf_hash.hex()}
            result.results.append(entry)
        return result


def _permitted_fields(decision: Decision, category: Fetched) -> tuple[str, ...]:
    """The obligation's fields that the category really has, in the category's order."""
    permitted = set(decision.obligations.fields if decision.obligations else ())
    return tuple(f for f in category.fields if f in permitted)


def _only(record: Mapping[str, Any], allowed: Sequence[str]) -> dict[str, Any]:
    return {name: record[name] for name in allowed if name in record}


__all__ = [
    "AuditUnavailable",
    "Caller",
    "LookupRejected",
    "LookupRequest",
    "LookupResult",
    "LookupService",
]
