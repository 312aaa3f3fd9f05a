"""Each way a request can be wrong gets the error the specs name."""

from __future__ import annotations

import base64
import json
import time
from datetime import UTC, datetime, timedelta

import pytest
from identity_helpers import assertion, new_key
from oidc_helpers import (
    ISSUER,
    REDIRECT,
    DPoPKey,
    RelyingParty,
    add_rp,
    run_code_flow,
    seed,
)
from sqlalchemy import update

from identity.clients import ClientRegistryError, register_client
from identity.oidc_models import PushedRequest


@pytest.fixture
def world(app):
    return seed(app)


@pytest.fixture
def rp(client, world):
    return RelyingParty(client, "rp", world.keys["rp"])


def _b64(data: dict) -> str:
    return base64.urlsafe_b64encode(json.dumps(data).encode()).rstrip(b"=").decode()


def unsigned(claims: dict, header: dict | None = None) -> str:
    """A JWT with ``alg: none``: never to be accepted anywhere."""
    return f"{_b64(header or {'alg': 'none', 'typ': 'JWT'})}.{_b64(claims)}."


def test_fapi_client_must_use_par(client, rp):
    params = rp.authorization_params()
    response = client.get("/authorize", query_string=params)
    assert response.status_code == 400
    assert "pushed authorization" in response.get_data(as_text=True)
    assert response.location is None  # never redirected: the request was not authenticated


def test_non_fapi_client_may_send_plain_requests(app, client, world):
    key = add_rp(app, "plain", is_fapi=False)
    rp = RelyingParty(client, "plain", key)
    response = client.get("/authorize", query_string=rp.authorization_params())
    assert response.status_code == 303 and "/login" in response.location


def test_request_uri_is_single_use(client, rp):
    pushed = rp.push().get_json()
    first = client.get(rp.authorize_url(pushed["request_uri"]))
    assert first.status_code == 303 and "/login" in first.location
    reload = client.get(rp.authorize_url(pushed["request_uri"]))
    assert reload.status_code == 303 and "/login" in reload.location  # not used up by a visit
    from oidc_helpers import _next_of, csrf_of, login

    login(client, next_url=_next_of(reload.location))
    page = client.get(_next_of(reload.location)).get_data(as_text=True)
    action = page.split('action="')[-1].split('"')[0]
    done = client.post(action, data={"csrf_token": csrf_of(page), "decision": "allow"})
    assert "code" in rp.parse_callback(done.location)
    second = client.get(rp.authorize_url(pushed["request_uri"]))
    query = rp.parse_callback(second.location)
    assert query["error"] == "invalid_request_uri"


def test_request_uri_used_in_two_tabs_gives_one_code(client, rp):
    from oidc_helpers import login

    login(client)
    pushed = rp.push().get_json()
    first = client.get(rp.authorize_url(pushed["request_uri"]))
    second = client.get(rp.authorize_url(pushed["request_uri"]))
    pages = [first, second]
    from oidc_helpers import csrf_of

    outcomes = []
    for page in pages:
        html = page.get_data(as_text=True)
        action = html.split('action="')[-1].split('"')[0]
        done = client.post(action, data={"csrf_token": csrf_of(html), "decision": "allow"})
        outcomes.append(rp.parse_callback(done.location))
    assert "code" in outcomes[0] and outcomes[1]["error"] == "invalid_request_uri"


def test_request_uri_that_is_not_from_par(client, rp):
    response = client.get(
        "/authorize",
        query_string={"client_id": "rp", "request_uri": "https://rp.example/request.jwt"},
    )
    assert response.status_code == 400
    assert "request_uri_not_supported" in response.get_data(as_text=True)


def test_authorization_request_by_post(app, client, world):
    key = add_rp(app, "plain", is_fapi=False)
    rp = RelyingParty(client, "plain", key)
    response = client.post("/authorize", data=rp.authorization_params())
    assert response.status_code == 303 and "/login" in response.location


def test_unknown_standard_scopes_are_ignored(client, rp):
    callback = run_code_flow(client, rp, scope="openid email phone profile")
    body = rp.token(callback["code"]).get_json()
    assert body["scope"].split() == ["openid", "profile"]


def test_fapi_client_assertion_audience_is_the_issuer_only(client, rp):
    for aud in (ISSUER + "/par", ISSUER + "/token", [ISSUER + "/par"]):
        form = dict(rp.authorization_params())
        form.update(rp.client_assertion(aud=aud))
        response = rp.http.post(
            "/par", data=form, headers={"DPoP": rp.dpop.proof("POST", ISSUER + "/par")}
        )
        assert response.get_json()["error"] == "invalid_client", aud


def test_mismatched_dpop_jkt_at_par(client, rp):
    params = rp.authorization_params(dpop_jkt=DPoPKey().thumbprint())
    response = rp.push(params)
    assert response.status_code == 400
    assert response.get_json()["error"] == "invalid_dpop_proof"


def test_expired_code(client, rp, db_session):
    from identity.oidc_models import AuthorizationCode

    code = run_code_flow(client, rp)["code"]
    db_session.execute(
        update(AuthorizationCode).values(expires_at=datetime.now(UTC) - timedelta(seconds=1))
    )
    db_session.commit()
    assert rp.token(code).get_json()["error"] == "invalid_grant"


def test_expired_request_uri(app, client, rp, db_session):
    pushed = rp.push().get_json()
    db_session.execute(
        update(PushedRequest).values(expires_at=datetime.now(UTC) - timedelta(seconds=1))
    )
    db_session.commit()
    response = client.get(rp.authorize_url(pushed["request_uri"]))
    assert rp.parse_callback(response.location)["error"] == "invalid_request_uri"


def test_request_uri_of_another_client_or_unknown(app, client, rp, world):
    other_key = add_rp(app, "other")
    pushed = rp.push().get_json()
    response = client.get(
        "/authorize", query_string={"client_id": "other", "request_uri": pushed["request_uri"]}
    )
    assert response.status_code == 400 and "invalid_request_uri" in response.get_data(True)
    unknown = client.get(
        "/authorize",
        query_string={"client_id": "rp", "request_uri": "urn:ietf:params:oauth:request_uri:x"},
    )
    assert unknown.status_code == 400
    assert other_key is not None


def test_par_refuses_request_uri_and_wrong_redirect(client, rp):
    params = rp.authorization_params()
    assert rp.push(params, request_uri="urn:x").get_json()["error"] == "invalid_request"
    bad = dict(params, redirect_uri="https://evil.example/cb")
    response = rp.push(bad)
    assert response.status_code == 400 and response.get_json()["error"] == "invalid_request"
    near = dict(params, redirect_uri=REDIRECT + "/")
    assert rp.push(near).get_json()["error"] == "invalid_request"


@pytest.mark.parametrize(
    ("change", "error"),
    [
        ({"code_challenge_method": "plain"}, "invalid_request"),
        ({"code_challenge": None, "code_challenge_method": None}, "invalid_request"),
        ({"response_type": "token"}, "unsupported_response_type"),
        ({"response_type": "code id_token"}, "unsupported_response_type"),
        ({"scope": "openid admin"}, "invalid_scope"),
        ({"scope": "profile"}, "invalid_scope"),
        ({"prompt": "none login"}, "invalid_request"),
        ({"max_age": "-1"}, "invalid_request"),
        ({"request": unsigned({"iss": "rp"})}, "request_not_supported"),
        ({"state": "x" * 3000}, "invalid_request"),
    ],
)
def test_par_validation_errors(client, rp, change, error):
    params = rp.authorization_params()
    for key, value in change.items():
        if value is None:
            params.pop(key, None)
        else:
            params[key] = value
    response = rp.push(params)
    assert response.status_code == 400, response.get_json()
    assert response.get_json()["error"] == error


def test_code_is_single_use_and_reuse_revokes_its_tokens(client, rp):
    code = run_code_flow(client, rp)["code"]
    first = rp.token(code)
    assert first.status_code == 200
    token = first.get_json()["access_token"]
    again = rp.token(code)
    assert again.status_code == 400 and again.get_json()["error"] == "invalid_grant"
    userinfo = client.get(
        "/userinfo",
        headers={
            "Authorization": f"DPoP {token}",
            "DPoP": rp.dpop.proof("GET", ISSUER + "/userinfo", access_token=token),
        },
    )
    assert userinfo.status_code == 401
    refresh = rp.refresh(first.get_json()["refresh_token"])
    assert refresh.get_json()["error"] == "invalid_grant"


def test_code_redeemed_by_another_client(app, client, rp):
    code = run_code_flow(client, rp)["code"]
    thief = RelyingParty(client, "thief", add_rp(app, "thief"))
    thief.oauth.code_verifier = rp.oauth.code_verifier
    response = thief.token(code)
    assert response.status_code == 400 and response.get_json()["error"] == "invalid_grant"


def test_wrong_pkce_verifier_and_redirect(client, rp):
    code = run_code_flow(client, rp)["code"]
    response = rp.token(code, verifier="x" * 64)
    assert response.get_json()["error"] == "invalid_grant"
    code = run_code_flow(client, rp)["code"]
    response = rp.token(code, redirect_uri="http://127.0.0.1:8765/cb")
    assert response.get_json()["error"] == "invalid_grant"


def test_unknown_and_garbage_codes(client, rp):
    for code in ("", "nope", "x" * 5000):
        response = rp.token(code)
        assert response.status_code == 400
        assert response.get_json()["error"] in ("invalid_grant", "invalid_request")


@pytest.mark.parametrize("problem", ["missing", "replayed", "url", "method", "none", "hs256"])
def test_dpop_proof_problems_at_token_endpoint(client, rp, problem):
    code = run_code_flow(client, rp)["code"]
    proof = rp.dpop.proof("POST", ISSUER + "/token")
    headers = {"DPoP": proof}
    if problem == "missing":
        headers = {}
    elif problem == "replayed":
        first = _token(rp, code, {"DPoP": proof})
        assert first.status_code == 200
        code = run_code_flow(client, rp)["code"]
    elif problem == "url":
        headers = {"DPoP": rp.dpop.proof("POST", ISSUER + "/par")}
    elif problem == "method":
        headers = {"DPoP": rp.dpop.proof("GET", ISSUER + "/token")}
    elif problem == "none":
        headers = {
            "DPoP": unsigned(
                {"jti": "j" * 16, "htm": "POST", "htu": ISSUER + "/token", "iat": int(time.time())},
                {"typ": "dpop+jwt", "alg": "none", "jwk": rp.dpop.jwk},
            )
        }
    elif problem == "hs256":
        from jose import jws as jose_jws

        claims = {"jti": "k" * 16, "htm": "POST", "htu": ISSUER + "/token", "iat": int(time.time())}
        headers = {
            "DPoP": jose_jws.sign(
                claims, "s" * 32, headers={"typ": "dpop+jwt", "jwk": rp.dpop.jwk}, algorithm="HS256"
            )
        }
    response = _token(rp, code, headers)
    assert response.status_code == 400, response.get_json()
    assert response.get_json()["error"] == "invalid_dpop_proof"


def _token(rp, code, headers):
    from urllib.parse import parse_qs

    body = rp.oauth.prepare_request_body(
        code=code,
        redirect_uri=rp.redirect_uri,
        code_verifier=rp.oauth.code_verifier,
        include_client_id=False,
    )
    form = {k: v[0] for k, v in parse_qs(body).items()}
    form.update(rp.client_assertion())
    return rp.http.post("/token", data=form, headers=headers)


def test_code_bound_with_dpop_jkt_needs_that_key(client, rp):
    params = rp.authorization_params(dpop_jkt=rp.dpop.thumbprint())
    pushed = rp.push(params, dpop=False)
    assert pushed.status_code == 201
    response = client.get(rp.authorize_url(pushed.get_json()["request_uri"]))
    from oidc_helpers import _next_of, csrf_of, login

    login(client, next_url=_next_of(response.location))
    page = client.get(_next_of(response.location))
    html = page.get_data(as_text=True)
    action = html.split('action="')[-1].split('"')[0]
    done = client.post(action, data={"csrf_token": csrf_of(html), "decision": "allow"})
    code = rp.parse_callback(done.location)["code"]
    other = DPoPKey()
    stolen = _token(rp, code, {"DPoP": other.proof("POST", ISSUER + "/token")})
    assert stolen.get_json()["error"] == "invalid_dpop_proof"


def test_refresh_with_another_dpop_key(client, rp):
    body = rp.token(run_code_flow(client, rp)["code"]).get_json()
    response = rp.refresh(body["refresh_token"], dpop_key=DPoPKey())
    assert response.get_json()["error"] == "invalid_dpop_proof"


def test_dpop_nonce_when_required(make_app):
    app = make_app(DPOP_NONCE=True)
    world = seed(app)
    client = app.test_client()
    rp = RelyingParty(client, "rp", world.keys["rp"])
    pushed = rp.push()
    assert pushed.status_code == 400 and pushed.get_json()["error"] == "use_dpop_nonce"
    assert pushed.headers["DPoP-Nonce"]
    code = run_code_flow(client, rp, push_dpop=False)["code"]
    first = rp.token(code)
    assert first.status_code == 400 and first.get_json()["error"] == "use_dpop_nonce"
    nonce = first.headers["DPoP-Nonce"]
    retry = _token(rp, code, {"DPoP": rp.dpop.proof("POST", ISSUER + "/token", nonce=nonce)})
    assert retry.status_code == 200, retry.get_json()


@pytest.mark.parametrize(
    ("how", "kwargs"),
    [
        ("rs256", {"alg": "RS256"}),
        ("wrong aud", {"aud": "https://elsewhere.example"}),
    ],
)
def test_client_assertion_problems(app, client, world, how, kwargs):
    rp = RelyingParty(client, "rp", world.keys["rp"])
    if how == "rs256":
        key = new_key("RS256")
        with app.extensions["casebroker.db"].session() as session:
            register_client(
                session,
                "rsa",
                "social",
                "rsa",
                [dict(key.as_dict(private=False), alg="PS256")],
                redirect_uris=[REDIRECT],
                grant_types=["authorization_code"],
            )
        signed = assertion(key, "rsa", aud=ISSUER, alg="RS256")
        client_id = "rsa"
    else:
        signed = assertion(world.keys["rp"], "rp", **kwargs)
        client_id = "rp"
    form = dict(rp.authorization_params(), client_id=client_id)
    form.update(
        client_assertion_type="urn:ietf:params:oauth:client-assertion-type:jwt-bearer",
        client_assertion=signed,
    )
    response = client.post("/par", data=form)
    assert response.status_code in (400, 401)
    assert response.get_json()["error"] == "invalid_client"


def test_client_assertion_alg_none(client, rp):
    now = int(time.time())
    signed = unsigned(
        {"iss": "rp", "sub": "rp", "aud": ISSUER, "iat": now, "exp": now + 60, "jti": "n" * 20}
    )
    form = dict(rp.authorization_params())
    form.update(
        client_assertion_type="urn:ietf:params:oauth:client-assertion-type:jwt-bearer",
        client_assertion=signed,
    )
    assert client.post("/par", data=form).get_json()["error"] == "invalid_client"


def test_access_token_alg_none_is_refused_everywhere(client, rp, world):
    now = int(time.time())
    forged = unsigned(
        {
            "iss": ISSUER,
            "aud": ISSUER + "/exchange/v1",
            "sub": "x",
            "client_id": "rp",
            "agency": "social",
            "scope": "openid lookup",
            "exp": now + 60,
            "officer": str(world.officer_id),
        },
        {"alg": "none", "typ": "at+jwt"},
    )
    assert client.get("/userinfo", headers={"Authorization": f"Bearer {forged}"}).status_code == 401
    lookup = client.post(
        "/exchange/v1/lookups", json={}, headers={"Authorization": f"Bearer {forged}"}
    )
    assert lookup.status_code == 401


def test_redirect_uris_must_be_https_or_loopback(app, world):
    key = new_key()
    for uri in ("http://rp.example/cb", "https://rp.example/cb#frag", "javascript:alert(1)"):
        with (
            pytest.raises(ClientRegistryError),
            app.extensions["casebroker.db"].session() as session,
        ):
            register_client(
                session,
                "bad",
                "social",
                "bad",
                [key.as_dict(private=False)],
                redirect_uris=[uri],
                grant_types=["authorization_code"],
            )


def test_unregistered_redirect_on_plain_request_is_shown_not_redirected(app, client, world):
    key = add_rp(app, "plain", is_fapi=False)
    rp = RelyingParty(client, "plain", key)
    params = dict(rp.authorization_params(), redirect_uri="https://evil.example/cb")
    response = client.get("/authorize", query_string=params)
    assert response.status_code == 400 and response.location is None


def test_prompt_none_error_carries_state_and_iss(client, rp):
    pushed = rp.push(rp.authorization_params(prompt="none")).get_json()
    response = client.get(rp.authorize_url(pushed["request_uri"]))
    query = rp.parse_callback(response.location)
    assert query["iss"] == ISSUER and query["state"] == rp.state


def test_nul_bytes_and_junk_never_500(client, rp):
    params = dict(rp.authorization_params(), state="a\x00b")
    assert rp.push(params).status_code == 400
    assert client.get("/authorize", query_string={"client_id": "rp\x00"}).status_code == 400
    form = {"grant_type": "authorization_code", "code": "x\x00", "client_id": "a\x00"}
    assert client.post("/token", data=form).status_code in (400, 401)
    assert client.get("/authorize/continue/" + "x" * 300).status_code == 400
    assert client.post("/par", data={"client_id": "\x00"}).status_code in (400, 401)
    assert client.post("/revoke", data={"token": "\x00"}).status_code in (400, 401)
    assert client.get("/logout", query_string={"id_token_hint": "a.b.c"}).status_code == 400
