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

from sqlalchemy import select
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session

import audit
from broker.exchange.sources import SourceCaller, SourceSpec
from broker.models import Agency, DataCategory, Purpose, Source
from consent.models import Consent
from identity.models import IdentityLink
from policies import Decision, DecisionRequest, PolicyEngine, PurposeCapError, check_purpose_request

log = logging.getLogger("casebroker.exchange")


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
    category: DataCategory
    identifier: str | None
    decision: Decision | None = None
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
        person_id = self._resolve_person(caller, request)
        targets = self._find_targets(caller, person_id, categories)
        consents = self._consents(caller, person_id, purpose)
        self._decide(caller, request, targets, consents, break_glass)
        self._record(caller, request, person_id, targets, break_glass)
        return self._fetch_and_shape(request, targets, break_glass)

    def _check_purpose(self, caller: Caller, request: LookupRequest) -> tuple[Purpose, bool]:
        purpose = self.session.get(Purpose, request.purpose)
        if purpose is None:
            raise LookupRejected(
                422, "Unknown purpose", f"No purpose {request.purpose!r} is registered."
            )
        try:
            check = check_purpose_request(purpose, request.justification, request.break_glass)
        except PurposeCapError as exc:
            self._reject(caller, request, "purpose", str(exc))
            raise LookupRejected(422, "Purpose requirements not met", str(exc), True) from None
        return purpose, check.break_glass

    def _check_categories(self, request: LookupRequest) -> list[DataCategory]:
        rows = self.session.scalars(
            select(DataCategory).where(DataCategory.id.in_(request.categories))
        ).all()
        found = {row.id: row for row in rows}
        unknown = [c for c in request.categories if c not in found]
        if unknown:
            raise LookupRejected(
                422, "Unknown category", f"Unknown categories: {', '.join(unknown)}."
            )
        return [found[c] for c in request.categories]

    def _resolve_person(self, caller: Caller, request: LookupRequest) -> uuid.UUID:
        person_id = self.session.scalar(
            select(IdentityLink.person_id).where(
                IdentityLink.agency_id == caller.agency,
                IdentityLink.scheme == request.scheme,
                IdentityLink.value == request.value,
            )
        )
        if person_id is None:
            self._reject(caller, request, "person", "unknown identifier")
            raise LookupRejected(
                404,
                "Person not found",
                "Your agency has no person registered under this identifier.",
                True,
            )
        return person_id

    def _find_targets(
        self, caller: Caller, person_id: uuid.UUID, categories: Sequence[DataCategory]
    ) -> list[Target]:
        wanted = {c.id: c for c in categories}
        sources = self.session.scalars(
            select(Source)
            .join(Agency, Agency.id == Source.agency_id)
            .where(
                Source.status == "active",
                Agency.status == "active",
                Source.agency_id != caller.agency,
            )
            .order_by(Source.agency_id, Source.id)
        ).all()
        links = self.session.execute(
            select(IdentityLink.agency_id, IdentityLink.scheme, IdentityLink.value).where(
                IdentityLink.person_id == person_id
            )
        ).all()
        by_agency: dict[str, dict[str, str]] = {}
        for agency_id, scheme, value in links:
            by_agency.setdefault(agency_id, {})[scheme] = value
        targets = []
        for source in sources:
            provided = {c.id: tuple(c.fields) for c in source.categories}
            spec = SourceSpec(
                source.id, source.adapter, dict(source.config), provided, source.timeout_ms / 1000
            )
            schemes = by_agency.get(source.agency_id, {})
            scheme = source.config.get("identifier_scheme")
            identifier = schemes.get(scheme) if scheme else next(iter(schemes.values()), None)
            for category_id in provided:
                if category_id in wanted:
                    targets.append(Target(spec, source.agency_id, wanted[category_id], identifier))
        return targets

    def _consents(self, caller: Caller, person_id: uuid.UUID, purpose: Purpose) -> list[Consent]:
        """Read at decision time from the consent table: a revocation committed before this
        statement is seen by it, on every node."""
        return list(
            self.session.scalars(
                select(Consent).where(
                    Consent.person_id == person_id,
                    Consent.grantee_agency_id == caller.agency,
                    Consent.purpose_id == purpose.id,
                    Consent.status == "active",
                    Consent.valid_from <= self.now,
                    Consent.valid_until > self.now,
                )
            )
        )

    @staticmethod
    def _covers(consents: Sequence[Consent], provider: str, category: str) -> bool:
        return any(
            category in c.categories and c.provider_agency_id in (None, provider) for c in consents
        )

    def _decide(
        self,
        caller: Caller,
        request: LookupRequest,
        targets: list[Target],
        consents: Sequence[Consent],
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
                consent=self._covers(consents, t.provider, t.category.id),
                justification=bool(request.justification and request.justification.strip()),
                break_glass=break_glass,
                now=self.now,
            )
            for t in targets
        ]
        for target, decision in zip(targets, self.engine.decide_many(requests), strict=True):
            target.decision = decision

    def _record(
        self,
        caller: Caller,
        request: LookupRequest,
        person_id: uuid.UUID,
        targets: list[Target],
        break_glass: bool,
    ) -> None:
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
                    legal_basis=d.legal_basis,
                    fields=list(d.obligations.fields) if d.obligations else None,
                    reason=None if d.permit else d.reason,
                    break_glass=break_glass or None,
                    justification=request.justification,
                )
            )
        try:
            appended = audit.append(self.session, records)
            self.session.commit()
        except SQLAlchemyError as exc:
            self.session.rollback()
            raise AuditUnavailable(str(exc)) from exc
        for target, entry in zip(targets, appended, strict=True):
            target.appended = entry

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
                    allowed = _permitted_fields(d, t.category)
                    entry.update(
                        status="ok",
                        fields=list(allowed),
                        legal_basis=d.legal_basis,
                        records=[_only(r, allowed) for r in outcome.records],
                    )
            entry["audit"] = {"index": t.appended.index, "leaf_hash": t.appended.leaf_hash.hex()}
            result.results.append(entry)
        return result


def _permitted_fields(decision: Decision, category: DataCategory) -> tuple[str, ...]:
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
