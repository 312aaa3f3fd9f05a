"""The consent lifecycle in the service: requests, decisions, grants, revocation, expiry."""

from __future__ import annotations

import json
import threading
from datetime import UTC, datetime, timedelta

import pytest
from audit_helpers import field_values
from consent_world import make_consent_world
from sqlalchemy import func, select, update

from audit.models import AuditEvent
from consent import (
    Actor,
    ConsentNotFound,
    InvalidTerms,
    PersonNotFound,
    RequestExpired,
    StateConflict,
    Terms,
    effective_status,
    in_force,
)
from consent.models import Consent, ConsentEvent, ImmutableConsent, Notification

SOCIAL = Actor.agency("social-services", "social-services-cms")
VEHICLE = Terms("social-services", "benefit-eligibility", ("vehicle",), "vehicle-registry")


@pytest.fixture
def cw(app):
    return make_consent_world(app)


def ask(cw, session, index=0, terms=VEHICLE, days=90, **kwargs):
    ref, person_id = cw.person("social-services", index)
    consent, created = cw.service(session, **kwargs).request(
        SOCIAL, ref["scheme"], ref["value"], terms, days, "For your benefit claim."
    )
    return consent, created, person_id


def audit_records(session, kind=None):
    query = select(AuditEvent.record).where(AuditEvent.kind.like("consent.%"))
    query = query.order_by(AuditEvent.seq)
    if kind:
        query = query.where(AuditEvent.kind == kind)
    return [json.loads(r) for r in session.scalars(query)]


def test_request_then_approve_signs_and_records_everything(cw):
    with cw.sessionmaker()() as session:
        consent, created, person_id = ask(cw, session)
        assert created and consent.status == "requested" and consent.receipt_jws is None
        approved = cw.service(session).approve(person_id, consent.id)
        assert approved.status == "active" and approved.receipt_jws.count(".") == 2
        assert approved.granted_at is not None
        window = approved.valid_until - approved.valid_from
        assert window == timedelta(days=90)
        history = session.scalars(
            select(ConsentEvent).where(ConsentEvent.consent_id == consent.id)
        ).all()
        assert [(e.from_status, e.to_status, e.actor, e.channel) for e in history] == [
            (None, "requested", "agency:social-services", "api"),
            ("requested", "active", "citizen", "portal"),
        ]
        records = audit_records(session)
        kinds = [r["kind"] for r in records]
        assert kinds == ["consent.requested", "consent.granted"]
        assert records[0]["client"] == "social-services-cms"
        assert records[1]["person"] == str(person_id) and records[1]["consent"] == str(consent.id)
        notes = session.scalars(select(Notification)).all()
        assert [(n.kind, n.person_id) for n in notes] == [("consent.requested", person_id)]


def test_asking_again_for_the_same_terms_returns_the_open_request(cw):
    with cw.sessionmaker()() as session:
        first, created, _ = ask(cw, session)
        again, created_again, _ = ask(cw, session)
        assert created and not created_again and again.id == first.id
        assert session.scalar(select(func.count()).select_from(Notification)) == 1
        other, created_other, _ = ask(cw, session, days=30)
        assert created_other and other.id != first.id


def test_a_lapsed_request_is_closed_and_asked_anew(cw):
    with cw.sessionmaker()() as session:
        old, _, _ = ask(cw, session)
        later = datetime.now(UTC) + timedelta(days=31)
        new, created, _ = ask(cw, session, now=later)
        assert created and new.id != old.id
        session.expire_all()
        assert session.get(Consent, old.id).status == "expired"


def test_citizen_grant_and_revoke(cw):
    _, person_id = cw.person()
    with cw.sessionmaker()() as session:
        svc = cw.service(session)
        consent = svc.grant(person_id, VEHICLE, datetime.now(UTC) + timedelta(days=30))
        assert consent.status == "active"
        assert in_force(session, person_id, "social-services", "benefit-eligibility", svc.now)
        svc.revoke(consent.id, Actor.citizen(), person_id=person_id)
        assert session.get(Consent, consent.id).status == "revoked"
        with pytest.raises(StateConflict, match="revoked"):
            svc.revoke(consent.id, Actor.citizen(), person_id=person_id)
        kinds = [r["kind"] for r in audit_records(session)]
        assert kinds == ["consent.granted", "consent.revoked"]
        events = session.scalar(select(func.count()).where(ConsentEvent.consent_id == consent.id))
        assert events == 2


@pytest.mark.parametrize(
    ("terms", "days", "message"),
    [
        (
            Terms("social-services", "benefit-eligibility", ("health.summary",)),
            30,
            "does not allow",
        ),
        (Terms("social-services", "benefit-eligibility", ("nope",)), 30, "Unknown categories"),
        (Terms("social-services", "emergency-care", ("address",)), 10, "does not take consent"),
        (Terms("social-services", "no-such-purpose", ("vehicle",)), 10, "Unknown purpose"),
        (Terms("social-services", "benefit-eligibility", ("vehicle",), "mars"), 10, "provider"),
        (
            Terms("social-services", "benefit-eligibility", ("vehicle",), "social-services"),
            10,
            "its own data",
        ),
        (
            Terms(
                "social-services",
                "benefit-eligibility",
                ("vehicle",),
                fields={"vehicle": ["colour"]},
            ),
            10,
            "has no fields",
        ),
        (
            Terms("social-services", "benefit-eligibility", ("vehicle",), fields={"income": ["x"]}),
            10,
            "not asked for",
        ),
        (VEHICLE, 366, "between 1 and 365 days"),
        (VEHICLE, 0, "between 1 and 365 days"),
    ],
)
def test_requests_beyond_the_caps_are_refused_and_change_nothing(cw, terms, days, message):
    ref, _ = cw.person()
    with cw.sessionmaker()() as session:
        with pytest.raises(InvalidTerms, match=message):
            cw.service(session).request(SOCIAL, ref["scheme"], ref["value"], terms, days)
        assert session.scalar(select(func.count()).select_from(Consent)) == 0
        assert session.scalar(select(func.count()).select_from(Notification)) == 0


def test_grants_in_the_past_or_too_long_are_refused(cw):
    _, person_id = cw.person()
    now = datetime.now(UTC)
    with cw.sessionmaker()() as session:
        svc = cw.service(session)
        with pytest.raises(InvalidTerms, match="past"):
            svc.grant(person_id, VEHICLE, now + timedelta(days=1), now - timedelta(days=2))
        with pytest.raises(InvalidTerms, match="end after"):
            svc.grant(person_id, VEHICLE, now - timedelta(days=1))
        with pytest.raises(InvalidTerms, match="at most 365 days"):
            svc.grant(person_id, VEHICLE, now + timedelta(days=400))
        with pytest.raises(InvalidTerms, match="Unknown or suspended agency"):
            svc.grant(
                person_id,
                Terms("nobody", "benefit-eligibility", ("vehicle",)),
                now + timedelta(days=4),
            )
        assert session.scalar(select(func.count()).select_from(Consent)) == 0
        assert audit_records(session) == []


def test_unknown_person_is_refused_and_audited(cw):
    with cw.sessionmaker()() as session:
        with pytest.raises(PersonNotFound):
            cw.service(session).request(SOCIAL, "client-no", "does-not-exist", VEHICLE, 30)
        (record,) = audit_records(session)
        assert record["kind"] == "consent.rejected" and record["stage"] == "person"
        assert "does-not-exist" not in field_values(record)


def test_someone_elses_request_cannot_be_answered(cw):
    _, other = cw.person("social-services", 3)
    with cw.sessionmaker()() as session:
        consent, _, _ = ask(cw, session)
        svc = cw.service(session)
        for action in (svc.approve, svc.decline):
            with pytest.raises(ConsentNotFound):
                action(other, consent.id)
        with pytest.raises(ConsentNotFound):
            svc.revoke(consent.id, Actor.citizen(), person_id=other)
        assert session.get(Consent, consent.id).status == "requested"


def test_an_expired_request_cannot_be_approved_or_declined(cw):
    with cw.sessionmaker()() as session:
        consent, _, person_id = ask(cw, session)
        later = cw.service(session, now=datetime.now(UTC) + timedelta(days=31))
        with pytest.raises(RequestExpired):
            later.approve(person_id, consent.id)
        with pytest.raises(RequestExpired):
            later.decline(person_id, consent.id)
        session.expire_all()
        assert session.get(Consent, consent.id).status == "requested"
        assert [r["kind"] for r in audit_records(session)] == ["consent.requested"]


def test_decline_then_approve_is_a_conflict(cw):
    with cw.sessionmaker()() as session:
        consent, _, person_id = ask(cw, session)
        svc = cw.service(session)
        assert svc.decline(person_id, consent.id).status == "declined"
        with pytest.raises(StateConflict, match="declined"):
            svc.approve(person_id, consent.id)
        with pytest.raises(StateConflict):
            svc.revoke(consent.id, Actor.citizen(), person_id=person_id)


def test_caps_lowered_after_the_request_refuse_the_approval(cw):
    from broker.models import Purpose

    with cw.sessionmaker()() as session:
        consent, _, person_id = ask(cw, session, days=200)
        session.execute(
            update(Purpose).where(Purpose.id == "benefit-eligibility").values(max_consent_days=100)
        )
        session.commit()
        with pytest.raises(InvalidTerms, match="at most 100 days"):
            cw.service(session).approve(person_id, consent.id)
        assert session.get(Consent, consent.id).status == "requested"


def test_the_terms_of_a_granted_consent_cannot_be_edited(cw):
    _, person_id = cw.person()
    with cw.sessionmaker()() as session:
        consent = cw.service(session).grant(
            person_id, VEHICLE, datetime.now(UTC) + timedelta(days=10)
        )
        consent.categories = ["vehicle", "income"]
        with pytest.raises(ImmutableConsent, match="categories"):
            session.commit()
        session.rollback()
        assert session.get(Consent, consent.id).categories == ["vehicle"]


def test_expiry_counts_at_decision_time_and_the_sweep_records_it(cw):
    _, person_id = cw.person()
    with cw.sessionmaker()() as session:
        svc = cw.service(session)
        consent = svc.grant(person_id, VEHICLE, svc.now + timedelta(days=1))
        pending, _, _ = ask(cw, session, index=2)
        later = svc.now + timedelta(days=40)
        assert not in_force(session, person_id, "social-services", "benefit-eligibility", later)
        assert effective_status(consent, later) == "expired"
        assert consent.status == "active"
        with pytest.raises(StateConflict, match="expired"):
            cw.service(session, now=later).revoke(consent.id, Actor.citizen(), person_id=person_id)

        report = cw.service(session, now=later).sweep()
        assert (report.expired, report.lapsed_requests) == (1, 1)
        session.expire_all()
        assert session.get(Consent, consent.id).status == "expired"
        assert session.get(Consent, pending.id).status == "expired"
        kinds = [r["kind"] for r in audit_records(session)]
        assert kinds.count("consent.expired") == 2
        history = session.scalars(
            select(ConsentEvent).where(ConsentEvent.consent_id == consent.id)
        ).all()
        assert history[-1].actor == "system" and history[-1].channel == "system"
        again = cw.service(session, now=later).sweep()
        assert (again.expired, again.lapsed_requests) == (0, 0)


def test_the_sweep_queues_one_expiry_notice(cw):
    _, person_id = cw.person()
    with cw.sessionmaker()() as session:
        svc = cw.service(session)
        svc.grant(person_id, VEHICLE, svc.now + timedelta(days=5))
        svc.grant(person_id, VEHICLE, svc.now + timedelta(days=60))
        assert svc.sweep().expiring_notices == 1
        assert svc.sweep().expiring_notices == 0
        (note,) = session.scalars(select(Notification)).all()
        assert note.kind == "consent.expiring" and note.person_id == person_id


def test_operator_revocation_is_recorded_with_the_operator(cw):
    _, person_id = cw.person()
    with cw.sessionmaker()() as session:
        svc = cw.service(session)
        consent = svc.grant(person_id, VEHICLE, svc.now + timedelta(days=5))
        svc.revoke(consent.id, Actor.operator("j.doe"))
        record = audit_records(session, "consent.revoked")[0]
        assert record["actor"] == "operator:j.doe" and record["channel"] == "cli"


def _race(cw, count, action):
    barrier = threading.Barrier(count)
    outcomes: list[str] = []

    def run() -> None:
        with cw.sessionmaker()() as session:
            barrier.wait()
            try:
                action(cw.service(session))
                outcomes.append("ok")
            except (StateConflict, ConsentNotFound) as exc:
                outcomes.append(type(exc).__name__)

    threads = [threading.Thread(target=run) for _ in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    return outcomes


def test_concurrent_revocations_let_exactly_one_win(cw):
    _, person_id = cw.person()
    with cw.sessionmaker()() as session:
        svc = cw.service(session)
        consent = svc.grant(person_id, VEHICLE, svc.now + timedelta(days=5))
    outcomes = _race(
        cw, 3, lambda svc: svc.revoke(consent.id, Actor.citizen(), person_id=person_id)
    )
    assert sorted(outcomes) == ["StateConflict", "StateConflict", "ok"]
    with cw.sessionmaker()() as session:
        assert [r["kind"] for r in audit_records(session)].count("consent.revoked") == 1


def test_concurrent_identical_requests_make_one_request(cw):
    ref, _ = cw.person()
    results = []

    def request(svc):
        consent, created = svc.request(SOCIAL, ref["scheme"], ref["value"], VEHICLE, 30)
        results.append((consent.id, created))

    outcomes = _race(cw, 3, request)
    assert outcomes == ["ok", "ok", "ok"]
    assert len({consent_id for consent_id, _ in results}) == 1
    assert sum(created for _, created in results) == 1
    with cw.sessionmaker()() as session:
        assert session.scalar(select(func.count()).select_from(Notification)) == 1
