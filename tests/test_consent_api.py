"""The consent API: agencies ask and read, citizens decide; every refusal is a problem."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from consent_world import make_consent_world
from sqlalchemy import func, select

from consent.models import Consent, Notification


@pytest.fixture
def cw(app):
    return make_consent_world(app)


def request_body(ref, **extra):
    body = {
        "person": ref,
        "purpose": "benefit-eligibility",
        "categories": ["vehicle"],
        "provider": "vehicle-registry",
        "duration_days": 120,
        "justification": "To assess your claim.",
    }
    body.update(extra)
    return body


def assert_problem(response, status, slug=None):
    assert response.status_code == status, response.get_data(as_text=True)
    assert response.mimetype == "application/problem+json"
    body = response.json
    assert body["status"] == status and body["title"] and body["correlation_id"]
    if slug:
        assert body["type"].endswith("/" + slug), body["type"]
    return body


def count(cw, model=Consent):
    with cw.sessionmaker()() as session:
        return session.scalar(select(func.count()).select_from(model))


def test_agency_asks_citizen_approves_agency_reads(cw):
    ref, person_id = cw.person()
    created = cw.agency("POST", "/consent/v1/requests", json=request_body(ref))
    assert created.status_code == 201, created.json
    body = created.json
    assert body["status"] == "requested" and body["person"] == ref
    assert body["duration_days"] == 120 and body["valid_from"] is None
    assert created.headers["Location"] == f"/consent/v1/consents/{body['id']}"

    again = cw.agency("POST", "/consent/v1/requests", json=request_body(ref))
    assert again.status_code == 200 and again.json["id"] == body["id"]

    mine = cw.citizen("GET", "/consent/v1/me/consents?status=requested", person_id)
    assert [c["id"] for c in mine.json["consents"]] == [body["id"]]
    approved = cw.citizen(
        "POST", f"/consent/v1/me/consents/{body['id']}/approve", person_id, json={}
    )
    assert approved.status_code == 200 and approved.json["status"] == "active"
    assert approved.json["receipt_available"]
    assert [h["to"] for h in approved.json["history"]] == ["requested", "active"]

    read = cw.agency("GET", f"/consent/v1/consents/{body['id']}")
    assert read.status_code == 200
    assert read.json["status"] == "active" and read.json["person"] == ref
    assert [h["to"] for h in read.json["history"]] == ["requested", "active"]
    assert "receipt" not in read.json and "person_id" not in read.json
    assert str(person_id) not in read.get_data(as_text=True)


def test_other_agencies_cannot_read_a_consent(cw):
    ref, _ = cw.person()
    created = cw.agency("POST", "/consent/v1/requests", json=request_body(ref)).json
    other = cw.agency("GET", f"/consent/v1/consents/{created['id']}", agency="tax")
    assert_problem(other, 404, "consent-not-found")
    listed = cw.agency("GET", "/consent/v1/consents", agency="tax")
    assert listed.json["consents"] == []


def test_listing_pages_through_an_agencys_consents(cw):
    ids = []
    for index in range(5):
        ref, _ = cw.person(index=index)
        ids.append(cw.agency("POST", "/consent/v1/requests", json=request_body(ref)).json["id"])
    seen, cursor = [], None
    while True:
        query = "?limit=2" + (f"&cursor={cursor}" if cursor else "")
        page = cw.agency("GET", "/consent/v1/consents" + query)
        assert page.status_code == 200
        seen += [c["id"] for c in page.json["consents"]]
        cursor = page.json["next_cursor"]
        if not cursor:
            break
    assert sorted(seen) == sorted(ids) and len(seen) == 5
    for consent in page.json["consents"]:
        assert consent["person"]["scheme"] == "client-no"
    bad = cw.agency("GET", "/consent/v1/consents?cursor=bm90LWEtY3Vyc29y")
    assert_problem(bad, 422, "validation-error")
    unknown = cw.agency("GET", "/consent/v1/consents?colour=red")
    assert_problem(unknown, 422)


@pytest.mark.parametrize(
    ("change", "status", "slug"),
    [
        ({"categories": ["health.summary"]}, 422, "invalid-consent-terms"),
        ({"categories": ["unknown"]}, 422, "invalid-consent-terms"),
        ({"duration_days": 4000}, 422, "validation-error"),
        ({"duration_days": 366}, 422, "invalid-consent-terms"),
        ({"duration_days": "30"}, 422, "validation-error"),
        ({"categories": ["vehicle", "vehicle"]}, 422, "validation-error"),
        ({"categories": ["x' OR '1'='1"]}, 422, "validation-error"),
        ({"purpose": "emergency-care"}, 422, "invalid-consent-terms"),
        ({"fields": {"vehicle": ["make", "make"]}}, 422, "validation-error"),
        ({"person": {"scheme": "client-no", "value": "nobody-known"}}, 404, "person-not-found"),
        ({"extra": True}, 422, "validation-error"),
        ({"justification": "x" * 1001}, 422, "validation-error"),
    ],
)
def test_bad_requests_are_problems_that_change_nothing(cw, change, status, slug):
    ref, _ = cw.person()
    response = cw.agency("POST", "/consent/v1/requests", json=request_body(ref, **change))
    assert_problem(response, status, slug)
    assert count(cw) == 0 and count(cw, Notification) == 0


def test_malformed_bodies_and_tokens(cw):
    malformed = cw.agency(
        "POST", "/consent/v1/requests", data="{not json", content_type="application/json"
    )
    assert_problem(malformed, 400)
    wrong_type = cw.agency("POST", "/consent/v1/requests", data="a=b")
    assert_problem(wrong_type, 415)
    huge = cw.agency(
        "POST",
        "/consent/v1/requests",
        data='{"x": "' + "a" * 100_000 + '"}',
        content_type="application/json",
    )
    assert_problem(huge, 413)
    ref, _ = cw.person()
    anonymous = cw.app.test_client().post("/consent/v1/requests", json=request_body(ref))
    assert_problem(anonymous, 401)
    assert "Bearer" in anonymous.headers["WWW-Authenticate"]
    forged = cw.app.test_client().post(
        "/consent/v1/requests",
        json=request_body(ref),
        headers={"Authorization": "Bearer eyJhbGciOiJub25lIn0.e30."},
    )
    assert_problem(forged, 401)
    lookup_only = cw.app.test_client().post(
        "/consent/v1/requests",
        json=request_body(ref),
        headers={"Authorization": f"Bearer {cw.token(scope='lookup')}"},
    )
    assert_problem(lookup_only, 403, "insufficient-scope")
    assert count(cw) == 0


def test_citizen_endpoints_need_a_login_and_stay_with_their_citizen(cw):
    ref, person_id = cw.person()
    _, stranger = cw.person(index=4)
    consent_id = cw.agency("POST", "/consent/v1/requests", json=request_body(ref)).json["id"]
    assert_problem(cw.citizen("GET", "/consent/v1/me/consents", None), 401)
    for verb in ("approve", "decline", "revoke"):
        response = cw.citizen(
            "POST", f"/consent/v1/me/consents/{consent_id}/{verb}", stranger, json={}
        )
        assert_problem(response, 404, "consent-not-found")
    assert_problem(cw.citizen("GET", f"/consent/v1/me/consents/{consent_id}", stranger), 404)
    assert_problem(cw.citizen("GET", "/consent/v1/me/consents/not-a-uuid", person_id), 404)
    assert cw.citizen("GET", "/consent/v1/me/consents", stranger).json["consents"] == []
    no_body = cw.citizen("POST", f"/consent/v1/me/consents/{consent_id}/approve", person_id)
    assert_problem(no_body, 415)
    form = cw.citizen(
        "POST", f"/consent/v1/me/consents/{consent_id}/approve", person_id, data={"a": "b"}
    )
    assert_problem(form, 415)
    assert count(cw) == 1


def test_citizen_state_conflicts_are_problems(cw):
    ref, person_id = cw.person()
    consent_id = cw.agency("POST", "/consent/v1/requests", json=request_body(ref)).json["id"]
    base = f"/consent/v1/me/consents/{consent_id}"
    assert_problem(
        cw.citizen("POST", base + "/revoke", person_id, json={}), 409, "consent-state-conflict"
    )
    assert_problem(cw.citizen("GET", base + "/receipt", person_id), 404)
    assert cw.citizen("POST", base + "/decline", person_id, json={}).json["status"] == "declined"
    assert_problem(cw.citizen("POST", base + "/approve", person_id, json={}), 409)
    assert_problem(cw.citizen("POST", base + "/decline", person_id, json={}), 409)


def test_citizen_grants_revokes_and_revoking_twice_is_a_conflict(cw):
    _, person_id = cw.person()
    until = (datetime.now(UTC) + timedelta(days=30)).isoformat()
    grant = {
        "grantee": "social-services",
        "purpose": "benefit-eligibility",
        "categories": ["vehicle"],
        "fields": {"vehicle": ["make", "model"]},
        "valid_until": until,
    }
    created = cw.citizen("POST", "/consent/v1/me/consents", person_id, json=grant)
    assert created.status_code == 201, created.json
    assert created.json["fields"] == {"vehicle": ["make", "model"]}
    revoke = f"/consent/v1/me/consents/{created.json['id']}/revoke"
    assert cw.citizen("POST", revoke, person_id, json={}).json["status"] == "revoked"
    twice = cw.citizen("POST", revoke, person_id, json={})
    body = assert_problem(twice, 409, "consent-state-conflict")
    assert "revoked" in body["detail"]


@pytest.mark.parametrize(
    ("change", "slug"),
    [
        ({"valid_until": "2001-01-01T00:00:00+00:00"}, "invalid-consent-terms"),
        (
            {"valid_from": "2001-01-01T00:00:00+00:00", "valid_until": None, "duration_days": 3},
            "invalid-consent-terms",
        ),
        ({"valid_until": "not a date"}, "validation-error"),
        ({"valid_until": None, "duration_days": 500}, "invalid-consent-terms"),
        ({"valid_until": None}, "validation-error"),
        ({"grantee": "nobody"}, "invalid-consent-terms"),
        ({"fields": {"vehicle": ["engine_number"]}}, "invalid-consent-terms"),
    ],
)
def test_bad_grants_are_problems(cw, change, slug):
    _, person_id = cw.person()
    grant = {
        "grantee": "social-services",
        "purpose": "benefit-eligibility",
        "categories": ["vehicle"],
        "valid_until": (datetime.now(UTC) + timedelta(days=30)).isoformat(),
    }
    grant.update(change)
    grant = {k: v for k, v in grant.items() if v is not None}
    response = cw.citizen("POST", "/consent/v1/me/consents", person_id, json=grant)
    assert_problem(response, 422, slug)
    assert count(cw) == 0


def test_purpose_notice_is_public(cw):
    response = cw.app.test_client().get("/consent/v1/purposes/benefit-eligibility")
    assert response.status_code == 200
    assert response.json["max_consent_days"] == 365
    assert "vehicle" in response.json["consent_categories"]
    assert_problem(cw.app.test_client().get("/consent/v1/purposes/nope"), 404)


def test_contact_and_notifications_for_the_portal(cw):
    ref, person_id = cw.person()
    cw.agency("POST", "/consent/v1/requests", json=request_body(ref))
    listed = cw.citizen("GET", "/consent/v1/me/notifications", person_id)
    (note,) = listed.json["notifications"]
    assert note["kind"] == "consent.requested" and not note["read"]
    assert "Social Services" in note["subject"] and "Vehicle" in note["text"]
    read = cw.citizen("POST", f"/consent/v1/me/notifications/{note['id']}/read", person_id, json={})
    assert read.status_code == 204
    unread = cw.citizen("GET", "/consent/v1/me/notifications?unread=true", person_id)
    assert unread.json["notifications"] == []
    _, stranger = cw.person(index=5)
    other = cw.citizen("POST", f"/consent/v1/me/notifications/{note['id']}/read", stranger, json={})
    assert_problem(other, 404, "notification-not-found")
    bad = cw.citizen("PUT", "/consent/v1/me/contact", person_id, json={"email": "not-an-email"})
    assert_problem(bad, 422)
    ok = cw.citizen("PUT", "/consent/v1/me/contact", person_id, json={"email": "a@example.org"})
    assert ok.status_code == 200 and ok.json == {"email": "a@example.org"}
