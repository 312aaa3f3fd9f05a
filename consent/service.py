"""The consent lifecycle: agencies ask, citizens decide, the broker signs and records.

States and transitions (docs/consent.md)::

    requested -> active | declined | expired      (citizen approves, declines; request lapses)
    (none)    -> active                            (citizen grants without a request)
    active    -> revoked | expired                 (citizen revokes; window ends)

Every transition is one conditional UPDATE (``WHERE status = <from>``), so two concurrent
changes of the same consent cannot both succeed on any database; the loser gets a conflict.
The same transaction writes the history row, the audit event and any notification, and
commits before the caller answers. Expiry needs no write to take effect: a consent counts
only while ``valid_from <= now < valid_until`` at decision time; ``sweep`` records it later.
"""

from __future__ import annotations

import hashlib
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from sqlalchemy import DateTime, Uuid, bindparam, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

import audit
from broker.models import Agency, DataCategory, Purpose
from broker.prepared import Fetched, Prepared
from consent import notifications
from consent.errors import (
    ConsentNotFound,
    InvalidTerms,
    PersonNotFound,
    RequestExpired,
    StateConflict,
)
from consent.models import Consent, ConsentEvent, PurposeConsentCategory
from consent.receipts import (
    CategoryTerm,
    Named,
    ReceiptFacts,
    receipt_claims,
    receipt_subject,
    sign_receipt,
)
from identity.keys import active_key
from identity.models import IdentityLink

MAX_CATEGORIES = 10
#: A window may start this much in the past, for clocks that differ a little.
START_SKEW = timedelta(minutes=5)
SWEEP_BATCH = 200


@dataclass(frozen=True)
class Actor:
    """Who changes a consent and through which channel (``portal``, ``api``, ``cli``,
    ``system``). ``label`` goes into the history; a citizen is ``citizen``, never their id."""

    label: str
    channel: str
    client: str | None = None
    agency_id: str | None = None
    officer: str | None = None

    @classmethod
    def citizen(cls, channel: str = "portal") -> Actor:
        return cls("citizen", channel)

    @classmethod
    def agency(cls, agency: str, client: str, officer: str | None = None) -> Actor:
        return cls(f"agency:{agency}", "api", client, agency, officer)

    @classmethod
    def system(cls) -> Actor:
        return cls("system", "system")

    @classmethod
    def operator(cls, name: str) -> Actor:
        return cls(f"operator:{name}"[:200], "cli")


@dataclass(frozen=True)
class Terms:
    """What a consent allows: the grantee may get these categories (and, if given, only these
    fields) from the provider (``None``: any agency) for the purpose."""

    grantee: str
    purpose: str
    categories: tuple[str, ...]
    provider: str | None = None
    fields: Mapping[str, Sequence[str]] | None = None

    def digest(self, person_id: uuid.UUID, duration: timedelta) -> str:
        canonical = audit.canonical_json(
            {
                "person": str(person_id),
                "grantee": self.grantee,
                "provider": self.provider,
                "purpose": self.purpose,
                "categories": sorted(self.categories),
                "fields": {k: sorted(v) for k, v in (self.fields or {}).items()},
                "seconds": int(duration.total_seconds()),
            }
        )
        return hashlib.sha256(canonical).hexdigest()


@dataclass(frozen=True)
class ConsentSettings:
    issuer: str
    kek: bytes
    jurisdiction: str
    request_ttl: timedelta
    default_max_days: int
    expiry_notice: timedelta

    @classmethod
    def from_config(cls, config: Mapping[str, Any]) -> ConsentSettings:
        return cls(
            issuer=config["ISSUER"],
            kek=config["KEY_ENCRYPTION_KEY_BYTES"],
            jurisdiction=config["CONSENT_JURISDICTION"],
            request_ttl=timedelta(days=int(config["CONSENT_REQUEST_TTL_DAYS"])),
            default_max_days=int(config["CONSENT_MAX_DAYS"]),
            expiry_notice=timedelta(days=int(config["CONSENT_EXPIRY_NOTICE_DAYS"])),
        )


def effective_status(consent: Consent, now: datetime) -> str:
    """The status as decisions see it: an active consent past its window is expired, and an
    unanswered request past its deadline has lapsed, whether or not the sweep has run."""
    if consent.status == "active" and _aware(consent.valid_until) <= now:
        return "expired"
    if (
        consent.status == "requested"
        and consent.request_expires_at is not None
        and _aware(consent.request_expires_at) <= now
    ):
        return "expired"
    return consent.status


def _aware(moment: datetime) -> datetime:
    """SQLite hands back naive datetimes; every time the broker stores is UTC."""
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


_consent = Consent.__table__.c
_now = bindparam("now", type_=DateTime(timezone=True))

#: Built once: it runs on every lookup.
_IN_FORCE = Prepared(
    select(_consent.id, _consent.provider_agency_id, _consent.categories, _consent.fields).where(
        _consent.person_id == bindparam("person", type_=Uuid),
        _consent.grantee_agency_id == bindparam("grantee"),
        _consent.purpose_id == bindparam("purpose"),
        _consent.status == "active",
        _consent.valid_from <= _now,
        _consent.valid_until > _now,
    )
)


def in_force(
    session: Session, person_id: uuid.UUID, grantee: str, purpose: str, now: datetime
) -> Sequence[Fetched]:
    """The consents that count for a decision now, active and inside their window: their
    ``id``, ``provider_agency_id``, ``categories`` and ``fields``.

    Read at decision time from the table itself: a revocation committed before this
    statement starts is seen by it, on every node; an expiry needs no write at all.
    """
    params = {"person": person_id, "grantee": grantee, "purpose": purpose, "now": now}
    return _IN_FORCE.rows(session, params)


@dataclass
class SweepReport:
    expired: int = 0
    lapsed_requests: int = 0
    expiring_notices: int = 0
    ids: list[uuid.UUID] = field(default_factory=list)


class ConsentService:
    """Decides and records consent changes; each public method commits or changes nothing."""

    def __init__(
        self,
        session: Session,
        settings: ConsentSettings,
        correlation_id: str | None = None,
        now: datetime | None = None,
    ) -> None:
        self.session = session
        self.settings = settings
        self.correlation_id = correlation_id
        self._now = now

    @property
    def now(self) -> datetime:
        return self._now or datetime.now(UTC)

    # --- agencies -----------------------------------------------------------------------

    def request(
        self,
        actor: Actor,
        scheme: str,
        value: str,
        terms: Terms,
        duration_days: int,
        justification: str | None = None,
    ) -> tuple[Consent, bool]:
        """An agency asks a person, named by its own identifier, for consent.

        Asking again for the same terms while a request is open returns the open request
        (``False``: nothing new), so a retried call neither duplicates it nor notifies twice.
        """
        now = self.now
        person_id = self.session.scalar(
            select(IdentityLink.person_id).where(
                IdentityLink.agency_id == terms.grantee,
                IdentityLink.scheme == scheme,
                IdentityLink.value == value,
            )
        )
        if person_id is None:
            self._audit_rejection(actor, terms, "person", "unknown identifier")
            raise PersonNotFound("Your agency has no person registered under this identifier.")
        max_days = self._check_terms(terms)
        if not 1 <= duration_days <= max_days:
            raise InvalidTerms(
                f"The duration must be between 1 and {max_days} days for purpose {terms.purpose}."
            )
        duration = timedelta(days=duration_days)
        digest = terms.digest(person_id, duration)
        existing = self._open_request(digest)
        if existing is not None:
            if effective_status(existing, now) == "requested":
                return existing, False
            self._transition(existing, ("requested",), "expired", Actor.system())
        consent = Consent(
            id=uuid.uuid4(),
            person_id=person_id,
            grantee_agency_id=terms.grantee,
            provider_agency_id=terms.provider,
            purpose_id=terms.purpose,
            categories=list(terms.categories),
            fields=_fields(terms),
            valid_from=now,
            valid_until=now + duration,
            status="requested",
            created_at=now,
            justification=justification,
            requested_by_client=actor.client,
            request_expires_at=now + self.settings.request_ttl,
            terms_digest=digest,
        )
        self.session.add(consent)
        try:
            self.session.flush()
        except IntegrityError:
            return self._concurrent_request(digest)
        self._history(consent, None, "requested", actor)
        self._audit(consent, None, "requested", actor)
        notifications.enqueue(
            self.session,
            person_id,
            "consent.requested",
            f"consent.requested:{consent.id}",
            {
                "consent": str(consent.id),
                "grantee": terms.grantee,
                "purpose": terms.purpose,
                "categories": list(terms.categories),
                "provider": terms.provider,
                "request_expires_at": consent.request_expires_at.isoformat(timespec="seconds"),
            },
        )
        self.session.commit()
        return consent, True

    def _concurrent_request(self, digest: str) -> tuple[Consent, bool]:
        """The same request was made at the same moment elsewhere; theirs stands."""
        self.session.rollback()
        existing = self._open_request(digest)
        if existing is None:
            raise StateConflict("The request changed meanwhile; send it again.")
        return existing, False

    def _open_request(self, digest: str) -> Consent | None:
        return self.session.scalar(
            select(Consent).where(Consent.terms_digest == digest, Consent.status == "requested")
        )

    def for_agency(self, agency: str, consent_id: uuid.UUID) -> Consent:
        consent = self.session.get(Consent, consent_id)
        if consent is None or consent.grantee_agency_id != agency:
            raise ConsentNotFound(f"Your agency holds no consent {consent_id}.")
        return consent

    # --- citizens -----------------------------------------------------------------------

    def for_citizen(self, person_id: uuid.UUID, consent_id: uuid.UUID) -> Consent:
        consent = self.session.get(Consent, consent_id)
        if consent is None or consent.person_id != person_id:
            raise ConsentNotFound(f"You have no consent {consent_id}.")
        return consent

    def approve(
        self, person_id: uuid.UUID, consent_id: uuid.UUID, actor: Actor | None = None
    ) -> Consent:
        """The citizen accepts a request: the window starts now and the receipt is signed."""
        actor = actor or Actor.citizen()
        key = self._signing_key()
        now = self.now
        consent = self.for_citizen(person_id, consent_id)
        self._expect_open_request(consent, now, "approve")
        terms = _terms_of(consent)
        self._check_terms(terms)
        duration = _aware(consent.valid_until) - _aware(consent.valid_from)
        max_days = self._max_days(self.session.get(Purpose, terms.purpose))
        if duration > timedelta(days=max_days):
            raise InvalidTerms(
                f"Purpose {terms.purpose} now allows at most {max_days} days; the agency must "
                "ask again."
            )
        valid_until = now + duration
        receipt = self._receipt(
            consent.id, person_id, terms, now, valid_until, now, "agency request", key
        )
        changed = self.session.execute(
            update(Consent)
            .where(
                Consent.id == consent.id,
                Consent.status == "requested",
                Consent.request_expires_at > now,
            )
            .values(
                status="active",
                valid_from=now,
                valid_until=valid_until,
                receipt_jws=receipt,
                granted_at=now,
            )
            .execution_options(synchronize_session=False)
        ).rowcount
        if not changed:
            self.session.rollback()
            raise StateConflict("The request was answered or lapsed meanwhile.")
        self.session.refresh(consent)
        self._history(consent, "requested", "active", actor)
        self._audit(consent, "requested", "active", actor)
        self.session.commit()
        return consent

    def decline(
        self, person_id: uuid.UUID, consent_id: uuid.UUID, actor: Actor | None = None
    ) -> Consent:
        actor = actor or Actor.citizen()
        consent = self.for_citizen(person_id, consent_id)
        self._expect_open_request(consent, self.now, "decline")
        self._transition(consent, ("requested",), "declined", actor)
        self.session.commit()
        return consent

    def grant(
        self,
        person_id: uuid.UUID,
        terms: Terms,
        valid_until: datetime,
        valid_from: datetime | None = None,
        actor: Actor | None = None,
    ) -> Consent:
        """The citizen grants consent without being asked."""
        actor = actor or Actor.citizen()
        key = self._signing_key()
        now = self.now
        valid_from = _aware(valid_from) if valid_from else now
        valid_until = _aware(valid_until)
        max_days = self._check_terms(terms)
        if valid_from < now - START_SKEW:
            raise InvalidTerms("The window cannot start in the past.")
        if valid_until <= valid_from:
            raise InvalidTerms("The window must end after it starts.")
        if valid_until - valid_from > timedelta(days=max_days):
            raise InvalidTerms(
                f"Purpose {terms.purpose} allows consent for at most {max_days} days."
            )
        consent_id = uuid.uuid4()
        consent = Consent(
            id=consent_id,
            person_id=person_id,
            grantee_agency_id=terms.grantee,
            provider_agency_id=terms.provider,
            purpose_id=terms.purpose,
            categories=list(terms.categories),
            fields=_fields(terms),
            valid_from=valid_from,
            valid_until=valid_until,
            status="active",
            created_at=now,
            granted_at=now,
            receipt_jws=self._receipt(
                consent_id, person_id, terms, valid_from, valid_until, now, "citizen grant", key
            ),
        )
        self.session.add(consent)
        self._history(consent, None, "active", actor)
        self._audit(consent, None, "active", actor)
        self.session.commit()
        return consent

    def revoke(
        self, consent_id: uuid.UUID, actor: Actor, person_id: uuid.UUID | None = None
    ) -> Consent:
        """End an active consent now. ``person_id`` confines it to the citizen's own; an
        operator (``cli``) may revoke any, for instance on a court order."""
        consent = (
            self.for_citizen(person_id, consent_id)
            if person_id is not None
            else self.session.get(Consent, consent_id)
        )
        if consent is None:
            raise ConsentNotFound(f"There is no consent {consent_id}.")
        now = self.now
        status = effective_status(consent, now)
        if status != "active":
            raise StateConflict(f"The consent is {status}; only an active consent is revoked.")
        self._transition(consent, ("active",), "revoked", actor, Consent.valid_until > now)
        self.session.commit()
        return consent

    # --- the sweep ----------------------------------------------------------------------

    def sweep(self) -> SweepReport:
        """Record as ``expired`` what time has already ended, and queue expiry notices.

        Decisions never wait for this: it only writes down what they already apply.
        """
        now = self.now
        report = SweepReport()
        for from_status, condition, counter in (
            ("active", Consent.valid_until <= now, "expired"),
            ("requested", Consent.request_expires_at <= now, "lapsed_requests"),
        ):
            while True:
                batch = list(
                    self.session.scalars(
                        select(Consent)
                        .where(Consent.status == from_status, condition)
                        .order_by(Consent.id)
                        .limit(SWEEP_BATCH)
                    )
                )
                done = 0
                for consent in batch:
                    if self._transition(
                        consent, (from_status,), "expired", Actor.system(), condition, quiet=True
                    ):
                        done += 1
                        report.ids.append(consent.id)
                self.session.commit()
                setattr(report, counter, getattr(report, counter) + done)
                if len(batch) < SWEEP_BATCH:
                    break
        report.expiring_notices = notifications.collect_expiring(
            self.session, now, self.settings.expiry_notice
        )
        self.session.commit()
        return report

    # --- shared steps -------------------------------------------------------------------

    def _expect_open_request(self, consent: Consent, now: datetime, verb: str) -> None:
        if consent.status != "requested":
            raise StateConflict(
                f"The consent is {consent.status}; only a pending request can be {verb}d."
            )
        if effective_status(consent, now) == "expired":
            raise RequestExpired(
                "The request has expired; the agency must ask again if it still needs consent."
            )

    def _max_days(self, purpose: Purpose | None) -> int:
        if purpose is None or purpose.max_consent_days is None:
            return self.settings.default_max_days
        return min(purpose.max_consent_days, self.settings.default_max_days)

    def _check_terms(self, terms: Terms) -> int:
        """Refuse terms the registry or the purpose's caps do not allow; return the purpose's
        longest validity in days."""
        session = self.session
        grantee = session.get(Agency, terms.grantee)
        if grantee is None or grantee.status != "active":
            raise InvalidTerms(f"Unknown or suspended agency {terms.grantee!r}.")
        if terms.provider is not None:
            if session.get(Agency, terms.provider) is None:
                raise InvalidTerms(f"Unknown provider agency {terms.provider!r}.")
            if terms.provider == terms.grantee:
                raise InvalidTerms("An agency needs no consent to read its own data.")
        purpose = session.get(Purpose, terms.purpose)
        if purpose is None:
            raise InvalidTerms(f"Unknown purpose {terms.purpose!r}.")
        if not terms.categories or len(terms.categories) > MAX_CATEGORIES:
            raise InvalidTerms(f"Name between 1 and {MAX_CATEGORIES} categories.")
        if len(set(terms.categories)) != len(terms.categories):
            raise InvalidTerms("Categories must not repeat.")
        found = {
            c.id: c
            for c in session.scalars(
                select(DataCategory).where(DataCategory.id.in_(terms.categories))
            )
        }
        unknown = [c for c in terms.categories if c not in found]
        if unknown:
            raise InvalidTerms(f"Unknown categories: {', '.join(unknown)}.")
        allowed = set(
            session.scalars(
                select(PurposeConsentCategory.category_id).where(
                    PurposeConsentCategory.purpose_id == purpose.id
                )
            )
        )
        if not allowed:
            raise InvalidTerms(f"Purpose {purpose.id} does not take consent.")
        beyond = [c for c in terms.categories if c not in allowed]
        if beyond:
            raise InvalidTerms(
                f"Purpose {purpose.id} does not allow consent for: {', '.join(beyond)}."
            )
        for category, names in (terms.fields or {}).items():
            if category not in found:
                raise InvalidTerms(f"Fields are given for {category!r}, which is not asked for.")
            names = list(names)
            if not names or len(set(names)) != len(names):
                raise InvalidTerms(f"List each field of {category} once, at least one.")
            extra = [n for n in names if n not in found[category].fields]
            if extra:
                raise InvalidTerms(f"Category {category} has no fields: {', '.join(extra)}.")
        return self._max_days(purpose)

    def _signing_key(self) -> Any:
        """Fetched before any change: making the first key commits the session on its own."""
        return active_key(self.session, self.settings.kek)

    def _receipt(
        self,
        consent_id: uuid.UUID,
        person_id: uuid.UUID,
        terms: Terms,
        valid_from: datetime,
        valid_until: datetime,
        granted_at: datetime,
        method: str,
        key: Any,
    ) -> str:
        session = self.session
        grantee = session.get(Agency, terms.grantee)
        provider = session.get(Agency, terms.provider) if terms.provider else None
        purpose = session.get(Purpose, terms.purpose)
        assert grantee is not None and purpose is not None
        categories = {
            c.id: c
            for c in session.scalars(
                select(DataCategory).where(DataCategory.id.in_(terms.categories))
            )
        }
        facts = ReceiptFacts(
            consent_id=str(consent_id),
            issuer=self.settings.issuer,
            jurisdiction=self.settings.jurisdiction,
            granted_at=granted_at,
            collection_method=method,
            subject=receipt_subject(_subject_key(self.settings.kek), str(person_id), grantee.id),
            grantee=Named(grantee.id, grantee.name),
            provider=Named(provider.id, provider.name) if provider else None,
            purpose=Named(purpose.id, purpose.name),
            purpose_description=purpose.description,
            categories=tuple(
                CategoryTerm(c, categories[c].name, categories[c].sensitivity)
                for c in terms.categories
            ),
            fields=terms.fields,
            valid_from=valid_from,
            valid_until=valid_until,
        )
        return sign_receipt(receipt_claims(facts), key.kid, key.alg, key.key)

    def _transition(
        self,
        consent: Consent,
        expected: tuple[str, ...],
        to_status: str,
        actor: Actor,
        *conditions: Any,
        quiet: bool = False,
    ) -> bool:
        """One compare-and-set of the status plus its history and audit event (uncommitted)."""
        changed = self.session.execute(
            update(Consent)
            .where(Consent.id == consent.id, Consent.status.in_(expected), *conditions)
            .values(status=to_status)
            .execution_options(synchronize_session=False)
        ).rowcount
        if not changed:
            if quiet:
                return False
            self.session.rollback()
            raise StateConflict("The consent changed meanwhile; reload it and try again.")
        from_status = consent.status
        self.session.refresh(consent)
        self._history(consent, from_status, to_status, actor)
        self._audit(consent, from_status, to_status, actor)
        return True

    def _history(
        self, consent: Consent, from_status: str | None, to_status: str, actor: Actor
    ) -> None:
        consent.history.append(
            ConsentEvent(
                from_status=from_status,
                to_status=to_status,
                actor=actor.label,
                channel=actor.channel,
                at=self.now,
            )
        )

    def _audit(
        self, consent: Consent, from_status: str | None, to_status: str, actor: Actor
    ) -> None:
        kind = {
            "requested": "consent.requested",
            "active": "consent.granted",
            "declined": "consent.declined",
            "revoked": "consent.revoked",
            "expired": "consent.expired",
        }[to_status]
        audit.append(
            self.session,
            [
                audit.make_record(
                    kind,
                    self.correlation_id,
                    audit.event_time(self.now),
                    consent=str(consent.id),
                    person=str(consent.person_id),
                    requester=consent.grantee_agency_id,
                    provider=consent.provider_agency_id,
                    purpose=consent.purpose_id,
                    categories=list(consent.categories),
                    client=actor.client,
                    officer=actor.officer,
                    actor=actor.label,
                    channel=actor.channel,
                    from_status=from_status,
                    to_status=to_status,
                    valid_from=audit.event_time(_aware(consent.valid_from)),
                    valid_until=audit.event_time(_aware(consent.valid_until)),
                )
            ],
        )

    def _audit_rejection(self, actor: Actor, terms: Terms, stage: str, reason: str) -> None:
        """Refused requests are recorded: probing identifiers is worth an auditor's look."""
        audit.append(
            self.session,
            [
                audit.make_record(
                    "consent.rejected",
                    self.correlation_id,
                    audit.event_time(self.now),
                    requester=terms.grantee,
                    client=actor.client,
                    officer=actor.officer,
                    purpose=terms.purpose,
                    categories=list(terms.categories),
                    stage=stage,
                    reason=reason,
                )
            ],
        )
        self.session.commit()


def _fields(terms: Terms) -> dict[str, list[str]] | None:
    return {k: list(v) for k, v in terms.fields.items()} if terms.fields else None


def _terms_of(consent: Consent) -> Terms:
    return Terms(
        grantee=consent.grantee_agency_id,
        purpose=consent.purpose_id,
        categories=tuple(consent.categories),
        provider=consent.provider_agency_id,
        fields=consent.fields,
    )


def _subject_key(kek: bytes) -> bytes:
    """A key of its own for receipt subjects, derived from the KEK (HKDF, RFC 5869), so the
    KEK itself never keys anything but key sealing."""
    return HKDF(
        algorithm=hashes.SHA256(), length=32, salt=None, info=b"casebroker consent subject"
    ).derive(kek)


def set_purpose_categories(session: Session, purpose_id: str, categories: Sequence[str]) -> None:
    """Set the categories a consent under ``purpose_id`` may cover; the caller commits."""
    if session.get(Purpose, purpose_id) is None:
        raise InvalidTerms(f"Unknown purpose {purpose_id!r}.")
    known = set(session.scalars(select(DataCategory.id).where(DataCategory.id.in_(categories))))
    unknown = [c for c in categories if c not in known]
    if unknown:
        raise InvalidTerms(f"Unknown categories: {', '.join(unknown)}.")
    for row in session.scalars(
        select(PurposeConsentCategory).where(PurposeConsentCategory.purpose_id == purpose_id)
    ):
        if row.category_id not in categories:
            session.delete(row)
    existing = set(
        session.scalars(
            select(PurposeConsentCategory.category_id).where(
                PurposeConsentCategory.purpose_id == purpose_id
            )
        )
    )
    for category in dict.fromkeys(categories):
        if category not in existing:
            session.add(PurposeConsentCategory(purpose_id=purpose_id, category_id=category))
    session.flush()


def purpose_categories(session: Session, purpose_id: str) -> list[str]:
    return sorted(
        session.scalars(
            select(PurposeConsentCategory.category_id).where(
                PurposeConsentCategory.purpose_id == purpose_id
            )
        )
    )
