"""The code flow end to end with an independent RP (oauthlib + python-jose)."""

from __future__ import annotations

import pytest
from jose import jwt as jose_jwt
from oidc_helpers import (
    ISSUER,
    OFFICER_PASSWORD,
    REDIRECT,
    RelyingParty,
    add_rp,
    run_code_flow,
    seed,
    verify_signature_with_cryptography,
)
from sqlalchemy import select

from audit.models import AuditEvent


@pytest.fixture
def world(app):
    return seed(app)


@pytest.fixture
def rp(client, world):
    return RelyingParty(client, "rp", world.keys["rp"])


def test_discovery_advertises_what_is_supported(client):
    doc = client.get("/.well-known/openid-configuration").get_json()
    assert doc["issuer"] == ISSUER
    assert doc["code_challenge_methods_supported"] == ["S256"]
    assert doc["authorization_response_iss_parameter_supported"] is True
    assert "none" not in doc["id_token_signing_alg_values_supported"]
    assert doc["dpop_signing_alg_values_supported"] == ["ES256", "PS256", "EdDSA"]
    assert doc["response_types_supported"] == ["code"]


def test_citizen_code_flow_gives_verified_tokens(app, client, world, rp):
    callback = run_code_flow(client, rp)
    assert "code" in callback and callback["state"] == rp.state
    response = rp.token(callback["code"])
    assert response.status_code == 200, response.get_json()
    body = response.get_json()
    assert body["token_type"] == "DPoP"
    jwks = client.get("/jwks.json").get_json()
    claims = rp.verify_id_token(body["id_token"], jwks)
    assert claims["sub"] == str(world.citizen_id)
    assert claims["name"] == "Ada Lovelace"
    assert claims["acr"] == "urn:casebroker:acr:password" and claims["amr"] == ["pwd"]
    assert "auth_time" in claims and "sid" in claims
    access = jose_jwt.decode(
        body["access_token"], jwks, algorithms=["ES256"], audience=ISSUER + "/exchange/v1"
    )
    assert jose_jwt.get_unverified_header(body["access_token"])["typ"] == "at+jwt"
    assert access["cnf"]["jkt"] == rp.dpop.thumbprint()
    assert "lookup" not in access["scope"].split()  # officer-only scope dropped for citizens
    assert "officer" not in access


def test_officer_access_token_names_officer_agency_and_roles(client, world, rp):
    callback = run_code_flow(client, rp, "officer", OFFICER_PASSWORD, scope="openid profile lookup")
    body = rp.token(callback["code"]).get_json()
    access = jose_jwt.get_unverified_claims(body["access_token"])
    assert access["officer"] == str(world.officer_id)
    assert access["agency"] == "social"
    assert access["roles"] == ["auditor", "caseworker"]
    assert "lookup" in access["scope"].split()


def test_userinfo_get_and_post_need_the_dpop_key(client, rp):
    body = rp.token(run_code_flow(client, rp)["code"]).get_json()
    token = body["access_token"]
    for method in ("GET", "POST"):
        proof = rp.dpop.proof(method, ISSUER + "/userinfo", access_token=token)
        response = client.open(
            "/userinfo", method=method, headers={"Authorization": f"DPoP {token}", "DPoP": proof}
        )
        assert response.status_code == 200, response.get_json()
        assert response.get_json()["given_name"] == "Ada"
    bearer = client.get("/userinfo", headers={"Authorization": f"Bearer {token}"})
    assert bearer.status_code == 401
    other = RelyingParty(client, "rp", None).dpop
    stolen = client.get(
        "/userinfo",
        headers={
            "Authorization": f"DPoP {token}",
            "DPoP": other.proof("GET", ISSUER + "/userinfo", access_token=token),
        },
    )
    assert stolen.status_code == 401
    assert stolen.get_json()["error"] == "invalid_dpop_proof"


def test_refresh_rotates_and_reuse_revokes_the_family(client, rp):
    body = rp.token(run_code_flow(client, rp)["code"]).get_json()
    first = body["refresh_token"]
    second = rp.refresh(first)
    assert second.status_code == 200, second.get_json()
    new = second.get_json()
    assert new["refresh_token"] != first
    reuse = rp.refresh(first)
    assert reuse.status_code == 400 and reuse.get_json()["error"] == "invalid_grant"
    after = rp.refresh(new["refresh_token"])
    assert after.get_json()["error"] == "invalid_grant"
    token = new["access_token"]
    userinfo = client.get(
        "/userinfo",
        headers={
            "Authorization": f"DPoP {token}",
            "DPoP": rp.dpop.proof("GET", ISSUER + "/userinfo", access_token=token),
        },
    )
    assert userinfo.status_code == 401


def test_consent_is_remembered_and_can_be_withdrawn(client, rp):
    run_code_flow(client, rp)
    pushed = rp.push(rp.authorization_params()).get_json()
    again = client.get(rp.authorize_url(pushed["request_uri"]))
    assert again.status_code == 303 and again.location.startswith(REDIRECT)
    account = client.get("/account").get_data(as_text=True)
    assert "Social Case System" in account
    from oidc_helpers import csrf_of

    withdrawn = client.post("/account/apps/rp/withdraw", data={"csrf_token": csrf_of(account)})
    assert withdrawn.status_code == 303
    pushed = rp.push(rp.authorization_params(prompt="none")).get_json()
    denied = client.get(rp.authorize_url(pushed["request_uri"]))
    assert rp.parse_callback(denied.location)["error"] == "consent_required"


def test_prompt_none_without_login_is_login_required(client, rp):
    pushed = rp.push(rp.authorization_params(prompt="none")).get_json()
    response = client.get(rp.authorize_url(pushed["request_uri"]))
    query = rp.parse_callback(response.location)
    assert query["error"] == "login_required" and query["state"] == rp.state


def test_prompt_login_and_max_age_force_a_new_login(client, rp):
    run_code_flow(client, rp)
    for extra in ({"prompt": "login"}, {"max_age": "0"}):
        pushed = rp.push(rp.authorization_params(**extra)).get_json()
        response = client.get(rp.authorize_url(pushed["request_uri"]))
        assert response.status_code == 303 and "/login" in response.location, extra


def test_pairwise_subjects_differ_per_sector(app, client, world):
    key_a = add_rp(app, "tax-a", agency="tax", subject_type="pairwise", sector_identifier="tax")
    key_b = add_rp(app, "tax-b", agency="tax", subject_type="pairwise", sector_identifier="tax")
    key_c = add_rp(app, "other", agency="tax", subject_type="pairwise", sector_identifier="x")
    subs = []
    for client_id, key in (("tax-a", key_a), ("tax-b", key_b), ("other", key_c)):
        rp = RelyingParty(client, client_id, key)
        body = rp.token(run_code_flow(client, rp)["code"]).get_json()
        subs.append(jose_jwt.get_unverified_claims(body["id_token"])["sub"])
    assert subs[0] == subs[1] != subs[2]
    assert str(world.citizen_id) not in subs


@pytest.mark.parametrize("alg", ["PS256", "EdDSA"])
def test_id_token_algorithm_per_client(app, client, world, alg):
    key = add_rp(app, f"rp-{alg.lower()}", id_token_alg=alg)
    rp = RelyingParty(client, f"rp-{alg.lower()}", key)
    body = rp.token(run_code_flow(client, rp)["code"]).get_json()
    header = jose_jwt.get_unverified_header(body["id_token"])
    assert header["alg"] == alg
    jwks = client.get("/jwks.json").get_json()
    jwk = next(k for k in jwks["keys"] if k["kid"] == header["kid"])
    claims = verify_signature_with_cryptography(body["id_token"], jwk)
    assert claims["aud"] == rp.client_id and claims["nonce"] == rp.nonce


def test_login_consent_and_code_are_audited(app, client, rp, db_session):
    run_code_flow(client, rp)
    kinds = list(db_session.scalars(select(AuditEvent.kind).order_by(AuditEvent.seq)))
    assert "login.succeeded" in kinds and "oidc.consent_granted" in kinds


def test_revocation_and_introspection(client, rp):
    body = rp.token(run_code_flow(client, rp)["code"]).get_json()
    seen = client.post("/introspect", data={"token": body["access_token"], **rp.client_assertion()})
    assert seen.get_json()["active"] is True and seen.get_json()["token_type"] == "DPoP"
    revoked = client.post("/revoke", data={"token": body["refresh_token"], **rp.client_assertion()})
    assert revoked.status_code == 200
    seen = client.post("/introspect", data={"token": body["access_token"], **rp.client_assertion()})
    assert seen.get_json() == {"active": False}
    unauthenticated = client.post("/introspect", data={"token": body["access_token"]})
    assert unauthenticated.get_json()["error"] == "invalid_client"


def test_rp_initiated_logout(client, rp):
    body = rp.token(run_code_flow(client, rp)["code"]).get_json()
    page = client.get(
        "/logout",
        query_string={
            "id_token_hint": body["id_token"],
            "post_logout_redirect_uri": "https://rp.example/bye",
            "state": "s1",
        },
    )
    assert page.status_code == 200
    from oidc_helpers import csrf_of

    done = client.post(
        "/logout",
        data={
            "csrf_token": csrf_of(page.get_data(as_text=True)),
            "id_token_hint": body["id_token"],
            "post_logout_redirect_uri": "https://rp.example/bye",
            "state": "s1",
        },
    )
    assert done.status_code == 303 and done.location == "https://rp.example/bye?state=s1"
    assert client.get("/account").status_code == 303
    bad = client.get(
        "/logout",
        query_string={"client_id": "rp", "post_logout_redirect_uri": "https://evil.example/"},
    )
    assert bad.status_code == 400


def test_login_page_speaks_french_when_asked(client):
    page = client.get("/login?lang=fr")
    html = page.get_data(as_text=True)
    assert '<html lang="fr">' in html and "Se connecter" in html
    assert "casebroker_lang=fr" in page.headers["Set-Cookie"]
    remembered = client.get("/login").get_data(as_text=True)
    assert "Se connecter" in remembered
    by_header = client.application.test_client().get(
        "/login", headers={"Accept-Language": "fr-CA,fr;q=0.9"}
    )
    assert "Mot de passe" in by_header.get_data(as_text=True)


def test_request_without_nonce_succeeds(client, rp):
    params = rp.authorization_params()
    params.pop("nonce")
    pushed = rp.push(params).get_json()
    response = client.get(rp.authorize_url(pushed["request_uri"]))
    from oidc_helpers import _next_of, csrf_of, login

    login(client, next_url=_next_of(response.location))
    page = client.get(_next_of(response.location)).get_data(as_text=True)
    action = page.split('action="')[-1].split('"')[0]
    done = client.post(action, data={"csrf_token": csrf_of(page), "decision": "allow"})
    body = rp.token(rp.parse_callback(done.location)["code"]).get_json()
    assert "nonce" not in jose_jwt.get_unverified_claims(body["id_token"])


def test_user_who_does_not_allow_gets_access_denied(client, rp):
    pushed = rp.push(rp.authorization_params()).get_json()
    response = client.get(rp.authorize_url(pushed["request_uri"]))
    from oidc_helpers import _next_of, csrf_of, login

    login(client, next_url=_next_of(response.location))
    page = client.get(_next_of(response.location)).get_data(as_text=True)
    action = page.split('action="')[-1].split('"')[0]
    done = client.post(action, data={"csrf_token": csrf_of(page), "decision": "deny"})
    query = rp.parse_callback(done.location)
    assert query["error"] == "access_denied" and query["state"] == rp.state


def test_login_hint_fills_in_the_username(client, rp):
    pushed = rp.push(rp.authorization_params(login_hint="citizen")).get_json()
    response = client.get(rp.authorize_url(pushed["request_uri"]))
    page = client.get(response.location).get_data(as_text=True)
    assert 'name="username" value="citizen"' in page


def test_auditor_token_reaches_the_audit_api_too(app, client, world):
    from identity.tokens import verify_access_token

    key = add_rp(app, "console", scope="openid profile audit")
    rp = RelyingParty(client, "console", key)
    callback = run_code_flow(client, rp, "officer", OFFICER_PASSWORD, scope="openid audit")
    token = rp.token(callback["code"]).get_json()["access_token"]
    claims = jose_jwt.get_unverified_claims(token)
    assert claims["aud"] == [ISSUER + "/exchange/v1", ISSUER + "/audit/v1"]
    with app.extensions["casebroker.db"].sessionmaker() as session:
        info = verify_access_token(session, token, ISSUER, ISSUER + "/audit/v1", "audit")
    assert info.officer == str(world.officer_id) and "auditor" in info.officer_roles
    citizen = RelyingParty(client.application.test_client(), "console", key)
    denied = run_code_flow(citizen.http, citizen, scope="openid audit")
    body = citizen.token(denied["code"]).get_json()
    assert "audit" not in body["scope"].split()  # never for a citizen
