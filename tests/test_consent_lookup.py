"""Consent facts reach the policy engine at decision time: a consent permits, and a revoked or
expired one denies the very next lookup on every node, even under concurrent lookups."""

from __future__ import annotations

import threading
import time
import uuid
from datetime import UTC, datetime, timedelta

import pytest
from consent_world import ConsentWorld, make_consent_world
from lookup_world import by_provider
from sqlalchemy import update

from consent import Actor, ConsentService, ConsentSettings, Terms
from consent.models import Consent

VEHICLE = ("vehicle-registry", "vehicle")


@pytest.fixture
def cw(app):
    return make_consent_world(app)


def vehicle_lookup(cw: ConsentWorld, ref: dict, token: str | None = None, client=None) -> str:
    body = {"person": ref, "categories": ["vehicle"], "purpose": "benefit-eligibility"}
    headers = {"Authorization": f"Bearer {token or cw.token(scope='lookup')}"}
    response = (client or cw.app.test_client()).post(
        "/exchange/v1/lookups", json=body, headers=headers
    )
    assert response.status_code == 200, response.json
    return by_provider(response.json)[VEHICLE]["status"]


def approved_consent(cw: ConsentWorld, index: int = 0, **terms) -> tuple[dict, uuid.UUID, str]:
    ref, person_id = cw.person(index=index)
    body = {
        "person": ref,
        "purpose": "benefit-eligibility",
        "categories": ["vehicle"],
        "duration_days": 30,
        **terms,
    }
    created = cw.agency("POST", "/consent/v1/requests", json=body)
    assert created.status_code == 201, created.json
    consent_id = created.json["id"]
    approved = cw.citizen(
        "POST", f"/consent/v1/me/consents/{consent_id}/approve", person_id, json={}
    )
    assert approved.status_code == 200, approved.json
    return ref, person_id, consent_id


def test_no_consent_denies_and_an_approved_request_permits(cw):
    ref, person_id = cw.person()
    assert vehicle_lookup(cw, ref) == "denied"
    body = {
        "person": ref,
        "purpose": "benefit-eligibility",
        "categories": ["vehicle"],
        "duration_days": 30,
    }
    consent_id = cw.agency("POST", "/consent/v1/requests", json=body).json["id"]
    assert vehicle_lookup(cw, ref) == "denied", "a request is not a consent"
    cw.citizen("POST", f"/consent/v1/me/consents/{consent_id}/approve", person_id, json={})
    assert vehicle_lookup(cw, ref) in ("ok", "not_found")


def test_a_consent_for_another_provider_does_not_count(cw):
    ref, _, _ = approved_consent(cw, provider="tax", categories=["vehicle"])
    assert vehicle_lookup(cw, ref) == "denied"


def test_revocation_on_another_node_denies_the_next_lookup(cw, make_app):
    ref, person_id, consent_id = approved_consent(cw)
    assert vehicle_lookup(cw, ref) in ("ok", "not_found")
    other = make_app()
    other.extensions["casebroker.citizen"] = lambda: person_id
    revoked = other.test_client().post(f"/consent/v1/me/consents/{consent_id}/revoke", json={})
    assert revoked.status_code == 200 and revoked.json["status"] == "revoked"
    assert vehicle_lookup(cw, ref) == "denied"


def test_expiry_denies_at_decision_time_without_any_sweep(cw):
    ref, _, consent_id = approved_consent(cw)
    assert vehicle_lookup(cw, ref) in ("ok", "not_found")
    with cw.sessionmaker()() as session:
        session.execute(
            update(Consent)
            .where(Consent.id == uuid.UUID(consent_id))
            .values(
                valid_from=datetime.now(UTC) - timedelta(days=2),
                valid_until=datetime.now(UTC) - timedelta(seconds=1),
            )
        )
        session.commit()
    assert vehicle_lookup(cw, ref) == "denied"
    status = cw.agency("GET", f"/consent/v1/consents/{consent_id}").json
    assert status["status"] == "expired" and status["recorded_status"] == "active"


def test_no_lookup_starting_after_the_revocation_commits_is_permitted(cw, make_app):
    """Lookups run on one node in two threads while another node revokes; every lookup that
    started after the revocation's commit returned must be denied."""
    ref, person_id, consent_id = approved_consent(cw)
    tokens = [cw.token(scope="lookup") for _ in range(2)]
    outcomes: list[tuple[float, str]] = []
    progress = threading.Condition()
    stop = threading.Event()
    revoked_at: list[float] = []
    errors: list[BaseException] = []

    def looker(token: str) -> None:
        client = cw.app.test_client()
        try:
            while not stop.is_set():
                started = time.monotonic()
                status = vehicle_lookup(cw, ref, token, client)
                with progress:
                    outcomes.append((started, status))
                    progress.notify_all()
        except BaseException as exc:  # reported by the main thread
            errors.append(exc)
            with progress:
                progress.notify_all()

    def wait_for(enough) -> None:
        """Wait for the lookups to get there, however slow the machine; a dead looker or a
        10-minute hang ends the wait."""
        with progress:
            assert progress.wait_for(lambda: errors or enough(), timeout=600), "lookups hung"
        assert not errors, errors

    threads = [threading.Thread(target=looker, args=(t,)) for t in tokens]
    for thread in threads:
        thread.start()
    try:
        wait_for(lambda: len(outcomes) >= 6)

        other = make_app()
        with other.app_context():
            sessions = other.extensions["casebroker.db"].sessionmaker
            with sessions() as session:
                service = ConsentService(session, ConsentSettings.from_config(other.config))
                service.revoke(uuid.UUID(consent_id), Actor.citizen(), person_id=person_id)
                revoked_at.append(time.monotonic())

        wait_for(lambda: sum(1 for s, _ in outcomes if s > revoked_at[0]) >= 6)
    finally:
        stop.set()
        for thread in threads:
            thread.join()
    assert not errors, errors
    before = [status for started, status in outcomes if started < revoked_at[0]]
    after = [status for started, status in outcomes if started > revoked_at[0]]
    assert before and after, (len(before), len(after))
    assert any(status != "denied" for status in before), "the consent permitted before"
    assert all(status == "denied" for status in after), after


def test_fields_of_a_grant_are_kept_with_the_consent(cw):
    _, person_id = cw.person()
    with cw.sessionmaker()() as session:
        service = cw.service(session)
        consent = service.grant(
            person_id,
            Terms(
                "social-services",
                "benefit-eligibility",
                ("vehicle",),
                "vehicle-registry",
                {"vehicle": ["make"]},
            ),
            service.now + timedelta(days=3),
        )
        assert consent.fields == {"vehicle": ["make"]}
