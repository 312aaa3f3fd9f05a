"""Login, second factor, throttling and browser sessions."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pyotp
import pytest
from babel.messages.mofile import read_mo
from babel.messages.pofile import read_po
from jose import jwt as jose_jwt
from oidc_helpers import (
    CITIZEN_PASSWORD,
    RelyingParty,
    csrf_of,
    login,
    run_code_flow,
    seed,
)
from sqlalchemy import select, update

import identity
from audit.models import AuditEvent
from identity.accounts import totp_matches
from identity.models import Account
from identity.oidc_models import LoginThrottle, WebSession


@pytest.fixture
def world(app):
    return seed(app)


def kinds(db_session) -> list[str]:
    return list(db_session.scalars(select(AuditEvent.kind).order_by(AuditEvent.seq)))


def test_password_login_rotates_the_session_and_sets_safe_cookies(client, world):
    client.get("/login")
    before = client.get_cookie("__Host-casebroker")
    response = login(client)
    assert response.status_code == 303 and response.location == "/account"
    cookie = response.headers["Set-Cookie"]
    assert cookie.startswith("__Host-casebroker=")
    assert "Secure" in cookie and "HttpOnly" in cookie and "SameSite=Lax" in cookie
    assert "Path=/" in cookie and "Domain" not in cookie
    after = client.get_cookie("__Host-casebroker")
    assert before is None or before.value != after.value
    page = client.get("/account")
    assert page.status_code == 200 and "Ada Lovelace" in page.get_data(as_text=True)
    csp = page.headers["Content-Security-Policy"]
    assert "default-src 'none'" in csp and "script-src" not in csp
    assert "frame-ancestors 'none'" in csp and page.headers["Cache-Control"] == "no-store"


def test_wrong_password_is_refused_and_audited(client, world, db_session):
    response = login(client, password="wrong")
    assert response.status_code == 401
    assert "not right" in response.get_data(as_text=True)
    unknown = login(client, username="nobody", password="wrong")
    assert unknown.status_code == 401
    assert kinds(db_session).count("login.failed") == 2
    records = list(db_session.scalars(select(AuditEvent.record)))
    assert not any("wrong" in r for r in records)  # never the password


def test_forms_need_the_csrf_token(client, world):
    response = client.post("/login", data={"username": "citizen", "password": CITIZEN_PASSWORD})
    assert response.status_code == 400 and response.mimetype == "text/html"
    assert "did not come from this site" in response.get_data(as_text=True)
    assert client.get("/account").status_code == 303  # not logged in


def test_next_cannot_redirect_off_site(client, world):
    for target in ("//evil.example/", "https://evil.example/", "/\\evil.example"):
        response = login(client, next_url=target)
        assert response.location == "/account", target
        client.post("/logout/local", data={"csrf_token": csrf_of(client.get("/account").text)})


def test_guessing_is_slowed_per_account_across_processes(make_app, world, db_session):
    first, second = make_app().test_client(), make_app().test_client()
    for attempt in range(5):
        http = first if attempt % 2 else second
        assert login(http, password=f"guess-{attempt}").status_code == 401
    blocked = login(first, password=CITIZEN_PASSWORD)
    assert blocked.status_code == 429
    wait = int(blocked.headers["Retry-After"])
    assert 0 < wait <= 60  # a citizen is never kept out for long
    assert login(second, password=CITIZEN_PASSWORD).status_code == 429
    assert "login.throttled" in kinds(db_session)
    db_session.execute(update(LoginThrottle).values(blocked_until=datetime.now(UTC)))
    db_session.commit()
    assert login(first, password=CITIZEN_PASSWORD).status_code == 303


def test_per_account_delay_is_capped(client, world, db_session):
    for attempt in range(12):
        db_session.execute(update(LoginThrottle).values(blocked_until=datetime.now(UTC)))
        db_session.commit()
        login(client, password=f"guess-{attempt}")
    row = db_session.get(LoginThrottle, f"account:{world.citizen_id}")
    db_session.refresh(row)
    until = row.blocked_until if row.blocked_until.tzinfo else row.blocked_until.replace(tzinfo=UTC)
    assert until - datetime.now(UTC) <= timedelta(seconds=61)


def test_guessing_is_slowed_per_source_address(client, world, db_session):
    for attempt in range(31):
        login(client, username=f"user{attempt}", password="x")
    row = db_session.get(LoginThrottle, "address:127.0.0.1")
    assert row is not None and row.failures == 31
    assert login(client).status_code == 429


def _enrol(client) -> tuple[str, list[str]]:
    page = client.get("/account/mfa").get_data(as_text=True)
    secret = re.search(r'id="secret">([A-Z2-7]+)<', page).group(1)
    code = pyotp.TOTP(secret).at(datetime.now(UTC) - timedelta(seconds=30))
    done = client.post("/account/mfa", data={"csrf_token": csrf_of(page), "code": code})
    assert done.status_code == 200, done.get_data(as_text=True)
    codes = re.findall(r"<li>([0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4})</li>", done.get_data(True))
    assert len(codes) == 10
    return secret, codes


def _logout(client):
    client.post("/logout/local", data={"csrf_token": csrf_of(client.get("/account").text)})


def test_totp_enrolment_login_and_replay(app, client, world, db_session):
    login(client)
    secret, codes = _enrol(client)
    assert "mfa.enabled" in kinds(db_session)
    account = db_session.get(Account, world.citizen_id)
    assert secret.encode() not in account.totp_secret_encrypted  # sealed at rest
    _logout(client)
    step_one = login(client)
    assert step_one.status_code == 303 and "/login/mfa" in step_one.location
    assert client.get("/account").status_code == 303  # not logged in yet
    page = client.get(step_one.location).get_data(as_text=True)
    bad = client.post("/login/mfa", data={"csrf_token": csrf_of(page), "code": "000000"})
    assert bad.status_code == 401
    code = pyotp.TOTP(secret).now()
    ok = client.post("/login/mfa", data={"csrf_token": csrf_of(page), "code": code})
    assert ok.status_code == 303
    assert client.get("/account").status_code == 200
    _logout(client)
    login(client)
    page = client.get("/login/mfa").get_data(as_text=True)
    replay = client.post("/login/mfa", data={"csrf_token": csrf_of(page), "code": code})
    assert replay.status_code == 401  # a TOTP code works once (RFC 6238 5.2)
    recovery = client.post(
        "/login/mfa", data={"csrf_token": csrf_of(page), "recovery_code": codes[0].upper()}
    )
    assert recovery.status_code == 303
    _logout(client)
    login(client)
    page = client.get("/login/mfa").get_data(as_text=True)
    again = client.post("/login/mfa", data={"csrf_token": csrf_of(page), "recovery_code": codes[0]})
    assert again.status_code == 401
    assert "mfa.recovery_code_used" in kinds(db_session)


def test_acr_and_amr_reflect_the_second_factor(app, client, world):
    login(client)
    secret, _codes = _enrol(client)
    _logout(client)
    rp = RelyingParty(client, "rp", world.keys["rp"])
    pushed = rp.push(rp.authorization_params(acr_values="urn:casebroker:acr:mfa")).get_json()
    response = client.get(rp.authorize_url(pushed["request_uri"]))
    from oidc_helpers import _next_of

    next_url = _next_of(response.location)
    to_mfa = login(client, next_url=next_url)
    page = client.get(to_mfa.location).get_data(as_text=True)
    done = client.post(
        "/login/mfa",
        data={"csrf_token": csrf_of(page), "code": pyotp.TOTP(secret).now(), "next": next_url},
    )
    consent = client.get(done.location)
    html = consent.get_data(as_text=True)
    action = html.split('action="')[-1].split('"')[0]
    callback = client.post(action, data={"csrf_token": csrf_of(html), "decision": "allow"})
    code = rp.parse_callback(callback.location)["code"]
    id_token = rp.token(code).get_json()["id_token"]
    claims = jose_jwt.get_unverified_claims(id_token)
    assert claims["acr"] == "urn:casebroker:acr:mfa" and claims["amr"] == ["pwd", "otp"]


def test_disabling_mfa_needs_a_code(client, world, db_session):
    login(client)
    secret, _codes = _enrol(client)
    page = client.get("/account").get_data(as_text=True)
    client.post("/account/mfa/disable", data={"csrf_token": csrf_of(page), "code": "123456"})
    assert db_session.get(Account, world.citizen_id).totp_enabled_at is not None
    code = pyotp.TOTP(secret).now()
    client.post("/account/mfa/disable", data={"csrf_token": csrf_of(page), "code": code})
    db_session.expire_all()
    assert db_session.get(Account, world.citizen_id).totp_enabled_at is None
    assert "mfa.disabled" in kinds(db_session)


def test_totp_window_is_one_step_either_side():
    secret = pyotp.random_base32()
    now = datetime.now(UTC).timestamp()
    assert totp_matches(secret, pyotp.TOTP(secret).at(now - 30), now) is not None
    assert totp_matches(secret, pyotp.TOTP(secret).at(now - 90), now) is None
    assert totp_matches(secret, "12345", now) is None
    assert totp_matches(secret, "abcdef", now) is None


def test_idle_sessions_expire_in_every_process(make_app, world, db_session):
    first, second = make_app(), make_app()
    http = first.test_client()
    login(http)
    other = second.test_client()
    other.set_cookie("__Host-casebroker", http.get_cookie("__Host-casebroker").value)
    assert other.get("/account").status_code == 200  # the session is in the database
    db_session.execute(
        update(WebSession).values(last_seen_at=datetime.now(UTC) - timedelta(seconds=901))
    )
    db_session.commit()
    response = http.get("/account")
    assert response.status_code == 303 and "/login" in response.location
    page = http.get(response.location).get_data(as_text=True)
    assert "inactive" in page
    assert (
        db_session.scalar(select(WebSession.id).where(WebSession.account_id.is_not(None))) is None
    )


def test_disabled_account_cannot_log_in_or_continue(client, world, db_session):
    login(client)
    db_session.execute(update(Account).values(status="disabled"))
    db_session.commit()
    assert client.get("/account").status_code == 303
    assert login(client).status_code == 401


def test_oversized_and_odd_input_never_500(client, world):
    page = client.get("/login").get_data(as_text=True)
    for username, password in (("x" * 5000, "y"), ("' OR 1=1 --", "x" * 5000), ("\x00", "\x00")):
        response = client.post(
            "/login",
            data={"csrf_token": csrf_of(page), "username": username, "password": password},
        )
        assert response.status_code in (400, 401, 429)


def test_french_catalogue_is_complete_and_compiled():
    folder = Path(identity.__file__).parent / "translations" / "fr" / "LC_MESSAGES"
    with open(folder / "messages.po", "rb") as handle:
        po = read_po(handle)
    with open(folder / "messages.mo", "rb") as handle:
        mo = read_mo(handle)
    assert all(m.string for m in po if m.id), "untranslated messages"
    assert {m.id: m.string for m in po if m.id} == {m.id: m.string for m in mo if m.id}


def test_pages_speak_french(client, world):
    login(client)
    page = client.get("/account?lang=fr").get_data(as_text=True)
    assert "Votre compte" in page and "Validation en deux étapes" in page


def test_code_flow_after_login_keeps_the_flow(client, world):
    rp = RelyingParty(client, "rp", world.keys["rp"])
    callback = run_code_flow(client, rp)
    assert "code" in callback
