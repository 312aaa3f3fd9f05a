"""The citizen portal: sign-in through the broker's own provider, the pages, and the rule that a
citizen reaches only their own consents, requests, receipts, messages and history."""

from __future__ import annotations

import csv
import io
import json
import time
import uuid
from datetime import UTC, datetime, timedelta

import pytest
from jose import jwt as jose_jwt
from oidc_helpers import csrf_of
from portal_world import PortalWorld, make_portal_world, portal_login
from sqlalchemy import select, update

from audit.models import AuditEvent
from broker.portal import oidc, service
from consent.models import Consent, Notification
from identity.models import Client
from identity.oidc_models import WebSession

PAGES = (
    "/portal/",
    "/portal/agencies",
    "/portal/requests",
    "/portal/consents",
    "/portal/history",
    "/portal/notifications",
)


@pytest.fixture
def pw(app) -> PortalWorld:
    return make_portal_world(app)


def logged_in(pw: PortalWorld, username: str = "alice"):
    http = pw.app.test_client()
    response = portal_login(http, username)
    assert response.status_code == 303, response.get_data(as_text=True)[:400]
    assert response.location == "/portal/"
    return http


def post_form(http, path: str, **form: str):
    page = http.get(path)
    assert page.status_code == 200, page.get_data(as_text=True)[:400]
    return http.post(path, data={"csrf_token": csrf_of(page.get_data(as_text=True)), **form})


def vehicle_lookup(pw: PortalWorld, username: str) -> str:
    ref, _ = pw.people[username]
    body = {"person": ref, "categories": ["vehicle"], "purpose": "benefit-eligibility"}
    response = pw.cw.lookup(body)
    assert response.status_code == 200, response.json
    statuses = {(r["provider"], r["category"]): r["status"] for r in response.json["results"]}
    return statuses[("vehicle-registry", "vehicle")]


def consent_status(pw: PortalWorld, consent_id: str) -> str:
    with pw.cw.sessionmaker()() as session:
        return session.get(Consent, uuid.UUID(consent_id)).status


# --- sign-in --------------------------------------------------------------------------------


def test_pages_ask_for_login_and_the_welcome_page_is_public(pw):
    http = pw.app.test_client()
    assert http.get("/portal/").status_code == 200
    for path in PAGES[1:]:
        response = http.get(path)
        assert response.status_code == 303
        assert response.location.startswith("/portal/login?next=")
    assert http.get("/consent/v1/me/consents").status_code == 401


def test_login_runs_the_code_flow_and_every_page_renders(pw):
    http = pw.app.test_client()
    start = http.get("/portal/login")
    query = start.location.split("?", 1)[1]
    assert "code_challenge_method=S256" in query and "nonce=" in query and "state=" in query
    cookie = start.headers["Set-Cookie"]
    assert "HttpOnly" in cookie and "Secure" in cookie and "SameSite=Lax" in cookie
    assert cookie.startswith("__Host-casebroker-portal-login=")
    http = logged_in(pw)
    _, person_id = pw.people["alice"]
    for path in PAGES:
        response = http.get(path)
        assert response.status_code == 200, path
        html = response.get_data(as_text=True)
        assert str(person_id) not in html, "the internal person id never reaches a page"
        assert "default-src 'none'" in response.headers["Content-Security-Policy"]
        assert response.headers["Cache-Control"] == "no-store"
    agencies = http.get("/portal/agencies").get_data(as_text=True)
    assert "Social Services" in agencies or "social" in agencies.lower()
    # The consent API's citizen endpoints answer for the portal's citizen.
    assert http.get("/consent/v1/me/consents").status_code == 200


def test_login_without_or_with_a_forged_state_fails(pw):
    http = pw.app.test_client()
    assert http.get("/portal/callback?code=x&state=y&iss=https://broker.test").status_code == 400
    http.get("/portal/login")
    assert http.get("/portal/callback?code=x&state=y&iss=https://broker.test").status_code == 400
    http.set_cookie("__Host-casebroker-portal-login", "AAAA" * 20, domain="localhost")
    assert http.get("/portal/callback?code=x&state=y&iss=https://broker.test").status_code == 400
    assert http.get("/portal/requests").status_code == 303


def test_a_replayed_or_foreign_callback_does_not_log_in(pw):
    http = pw.app.test_client()
    callback_of_alice = portal_login(http, "alice", follow=False)
    assert http.get(callback_of_alice).status_code == 303
    # The login cookie is gone: the same callback again is refused.
    assert http.get(callback_of_alice).status_code == 400
    # Another browser, with its own login started, cannot use alice's callback.
    other = pw.app.test_client()
    other.get("/portal/login")
    assert other.get(callback_of_alice).status_code == 400
    assert other.get("/portal/requests").status_code == 303


def test_a_wrong_issuer_in_the_callback_is_refused(pw):
    http = pw.app.test_client()
    start = http.get("/portal/login")
    state = start.location.split("state=")[1].split("&")[0]
    response = http.get(f"/portal/callback?code=abc&state={state}&iss=https://evil.example")
    assert response.status_code == 400


def test_the_id_token_check_refuses_bad_tokens(pw):
    jwks = {"keys": [{"kty": "oct", "kid": "k1", "k": "c2VjcmV0"}]}
    forged = jose_jwt.encode(
        {"iss": "https://broker.test", "aud": oidc.CLIENT_ID, "sub": "x", "nonce": "n"},
        "secret",
        algorithm="HS256",
        headers={"kid": "k1"},
    )
    with pytest.raises(oidc.LoginFailed):
        oidc.verify_id_token(forged, jwks, "https://broker.test", "n", {})
    unsigned = forged.rsplit(".", 1)[0] + "."
    with pytest.raises(oidc.LoginFailed):
        oidc.verify_id_token(unsigned, jwks, "https://broker.test", "n", {})
    with pytest.raises(oidc.LoginFailed):
        oidc.verify_id_token("not a token", jwks, "https://broker.test", "n", {})


def test_logout_ends_the_portal_and_the_provider_session(pw):
    http = logged_in(pw)
    home = http.get("/portal/").get_data(as_text=True)
    response = http.post("/portal/logout", data={"csrf_token": csrf_of(home)})
    assert response.status_code == 303
    assert http.get("/portal/consents").status_code == 303
    assert http.get("/consent/v1/me/consents").status_code == 401


def test_idle_sessions_expire(make_app):
    app = make_app(SESSION_IDLE_TIMEOUT=60)
    pw = make_portal_world(app)
    http = logged_in(pw)
    assert http.get("/portal/consents").status_code == 200
    # Idle for a minute and a second, by the session's own clock rather than a sleep.
    with app.extensions["casebroker.db"].session() as session:
        session.execute(
            update(WebSession).values(last_seen_at=datetime.now(UTC) - timedelta(seconds=61))
        )
    assert http.get("/portal/consents").status_code == 303


def test_posts_need_the_csrf_token(pw):
    consent_id = pw.request_consent("alice")
    http = logged_in(pw)
    path = f"/portal/requests/{consent_id}/approve"
    assert http.post(path, data={}).status_code == 400
    assert http.post(path, data={"csrf_token": "forged"}).status_code == 400
    assert http.post("/portal/logout", data={}).status_code == 400
    assert consent_status(pw, consent_id) == "requested"


def test_the_portal_client_registration_is_idempotent(app):
    kek = app.config["KEY_ENCRYPTION_KEY_BYTES"]
    with app.extensions["casebroker.db"].session() as session:
        oidc.ensure_portal_client(session, "https://broker.test", kek)
    with app.extensions["casebroker.db"].session() as session:
        client = oidc.ensure_portal_client(session, "http://127.0.0.1:8123", kek)
        assert client.redirect_uris == ["http://127.0.0.1:8123/portal/callback"]
        assert [k.kid for k in client.keys] == [oidc.public_jwk(kek)["kid"]]
    with app.extensions["casebroker.db"].session() as session:
        client = session.get(Client, oidc.CLIENT_ID)
        assert client.is_fapi is False and client.grant_types == ["authorization_code"]
        assert len(client.keys) == 1


# --- the main flow --------------------------------------------------------------------------


def test_approve_then_revoke_and_both_lookups_show_in_the_history(pw):
    consent_id = pw.request_consent("alice")
    http = logged_in(pw)
    assert vehicle_lookup(pw, "alice") == "denied"
    listing = http.get("/portal/requests").get_data(as_text=True)
    assert "To check your benefit claim." in listing and "30 days" in listing
    confirm = f"/portal/requests/{consent_id}/approve"
    assert f'href="{confirm}"' in listing
    response = post_form(http, confirm)
    assert response.status_code == 303
    assert response.location == f"/portal/consents/{consent_id}?done=approved"
    assert consent_status(pw, consent_id) == "active"
    assert vehicle_lookup(pw, "alice") in ("ok", "not_found")

    detail = http.get(f"/portal/consents/{consent_id}").get_data(as_text=True)
    assert f"/consent/v1/me/consents/{consent_id}/receipt" in detail
    receipt = http.get(f"/consent/v1/me/consents/{consent_id}/receipt")
    assert receipt.status_code == 200 and receipt.mimetype == "application/jose"
    assert http.get(f"/consent/v1/me/consents/{consent_id}/receipt.html").status_code == 200

    response = post_form(http, f"/portal/consents/{consent_id}/revoke")
    assert response.status_code == 303
    assert consent_status(pw, consent_id) == "revoked"
    assert vehicle_lookup(pw, "alice") == "denied"
    assert http.get(f"/portal/consents/{consent_id}/revoke").status_code == 404

    history = http.get("/portal/history?agency=social-services").get_data(as_text=True)
    assert "Allowed" in history and "Refused" in history
    only_allowed = http.get("/portal/history?outcome=permit&agency=social-services")
    rows = only_allowed.get_data(as_text=True).split("<tbody>")[1]
    assert "Allowed" in rows and "Refused" not in rows

    exported = http.get("/portal/history.csv?agency=social-services")
    assert exported.mimetype == "text/csv"
    assert "attachment" in exported.headers["Content-Disposition"]
    table = list(csv.DictReader(io.StringIO(exported.get_data(as_text=True))))
    vehicle = [r for r in table if r["category"].lower().startswith("vehicle")]
    assert {r["outcome"] for r in vehicle} == {"permit", "deny"}
    data = http.get("/portal/history.json?outcome=deny").get_json()
    assert data["filters"] == {"outcome": "deny"}
    assert data["accesses"] and {a["outcome"] for a in data["accesses"]} == {"deny"}
    assert all("person" not in json.dumps(a) for a in data["accesses"])


def test_decline_from_its_own_page(pw):
    consent_id = pw.request_consent("alice")
    http = logged_in(pw)
    response = post_form(http, f"/portal/requests/{consent_id}/decline")
    assert response.status_code == 303
    assert consent_status(pw, consent_id) == "declined"
    assert http.get(f"/portal/requests/{consent_id}/approve").status_code == 404


def test_notifications_list_and_mark_read(pw):
    pw.request_consent("alice")
    http = logged_in(pw)
    page = http.get("/portal/notifications").get_data(as_text=True)
    with pw.cw.sessionmaker()() as session:
        _, person = pw.people["alice"]
        note = session.scalar(select(Notification).where(Notification.person_id == person))
    assert note is not None, "a request notifies the citizen"
    response = http.post(
        f"/portal/notifications/{note.id}/read", data={"csrf_token": csrf_of(page)}
    )
    assert response.status_code == 303
    with pw.cw.sessionmaker()() as session:
        assert session.get(Notification, note.id).read_at is not None


# --- one citizen, one citizen's data ---------------------------------------------------------


def test_a_citizen_never_reaches_another_citizens_data(pw):
    bob_request = pw.request_consent("bob")
    bob_granted = pw.request_consent("bob", days=20)
    bob_http = logged_in(pw, "bob")
    assert post_form(bob_http, f"/portal/requests/{bob_granted}/approve").status_code == 303
    vehicle_lookup(pw, "bob")
    with pw.cw.sessionmaker()() as session:
        _, bob = pw.people["bob"]
        bob_note = session.scalar(select(Notification.id).where(Notification.person_id == bob))

    http = logged_in(pw, "alice")
    csrf = csrf_of(http.get("/portal/").get_data(as_text=True))
    for path in (
        f"/portal/requests/{bob_request}/approve",
        f"/portal/requests/{bob_request}/decline",
        f"/portal/consents/{bob_granted}",
        f"/portal/consents/{bob_granted}/revoke",
        f"/consent/v1/me/consents/{bob_granted}/receipt",
        f"/consent/v1/me/consents/{bob_granted}/receipt.html",
        "/portal/consents/not-a-uuid",
        "/portal/requests/../../etc/approve",
    ):
        response = http.get(path)
        assert response.status_code == 404, path
        assert "bob" not in response.get_data(as_text=True).lower()
    for path in (
        f"/portal/requests/{bob_request}/approve",
        f"/portal/requests/{bob_request}/decline",
        f"/portal/consents/{bob_granted}/revoke",
        f"/portal/notifications/{bob_note}/read",
    ):
        assert http.post(path, data={"csrf_token": csrf}).status_code == 404, path
    assert consent_status(pw, bob_request) == "requested"
    assert consent_status(pw, bob_granted) == "active"
    for path in ("/portal/requests", "/portal/consents", "/portal/history"):
        html = http.get(path).get_data(as_text=True)
        assert bob_request not in html and bob_granted not in html
    assert http.get("/portal/history.json").get_json()["accesses"] == []
    with pw.cw.sessionmaker()() as session:
        assert session.get(Notification, bob_note).read_at is None
        _, bob = pw.people["bob"]
        assert session.scalar(select(AuditEvent).where(AuditEvent.person_id == bob)) is not None


# --- the history's filters --------------------------------------------------------------------


@pytest.mark.parametrize(
    "query",
    [
        "from=2026-13-01",
        "from=yesterday",
        "to=2026-01-01&from=2026-02-01",
        "outcome=maybe",
        "agency=nobody",
        "agency=%27%20OR%201%3D1%20--",
        "from=" + "9" * 5000,
    ],
)
def test_bad_filters_get_a_clear_answer(pw, query):
    http = logged_in(pw)
    page = http.get(f"/portal/history?{query}")
    assert page.status_code == 400
    assert 'role="alert"' in page.get_data(as_text=True)
    exported = http.get(f"/portal/history.csv?{query}")
    assert exported.status_code == 400
    assert exported.mimetype == "application/problem+json"


def test_date_filters_are_inclusive_days(pw):
    http = logged_in(pw)
    vehicle_lookup(pw, "alice")
    today = time.strftime("%Y-%m-%d", time.gmtime())
    assert http.get(f"/portal/history.json?from={today}&to={today}").get_json()["accesses"]
    assert http.get("/portal/history.json?to=2000-01-01").get_json()["accesses"] == []


def test_csv_cells_cannot_run_as_spreadsheet_formulas():
    view = service.AccessView(
        time=__import__("datetime").datetime(2026, 1, 1, tzinfo=__import__("datetime").UTC),
        agency_id="x",
        agency='=HYPERLINK("http://evil")',
        officer="+1",
        system=None,
        purpose="@sum",
        category="-2",
        outcome="permit",
        capacities=["guardian"],
        break_glass=False,
        reason=None,
    )
    row = list(csv.reader(io.StringIO(service.history_csv([view]))))[1]
    assert row[1].startswith("'=") and row[2] == "'+1" and row[4] == "'@sum"


def test_pages_speak_french(pw):
    http = logged_in(pw)
    for path in PAGES:
        html = http.get(path + "?lang=fr").get_data(as_text=True)
        assert '<html lang="fr">' in html
    assert "Qui a consulté mes données" in http.get("/portal/history?lang=fr").get_data(
        as_text=True
    )


def test_registry_names_follow_the_page_language(pw):
    pw.request_consent("alice")
    http = logged_in(pw)
    english = http.get("/portal/requests?lang=en").get_data(as_text=True)
    assert "Social Services asks for your consent" in english and "Vehicles" in english
    french = http.get("/portal/requests?lang=fr").get_data(as_text=True)
    assert "Services sociaux" in french and "Véhicules" in french
    assert "Social Services" not in french and "Droit aux prestations" in french
    agencies = http.get("/portal/agencies?lang=fr").get_data(as_text=True)
    assert "Services sociaux" in agencies
    vehicle_lookup(pw, "alice")
    history = http.get("/portal/history?lang=fr").get_data(as_text=True)
    assert "Demandeur" in history and "applicant" not in history
    assert "Applicant" in http.get("/portal/history?lang=en").get_data(as_text=True)
