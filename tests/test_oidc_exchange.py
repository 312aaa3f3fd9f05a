"""An officer's token from the code flow at the exchange API: DPoP-bound, officer audited."""

from __future__ import annotations

import uuid

import pytest
from identity_helpers import ASSERTION_TYPE
from lookup_world import make_world
from oidc_helpers import ISSUER, DPoPKey, RelyingParty, add_rp, run_code_flow
from sqlalchemy import select

from audit.models import AuditEvent
from broker.agency_client import ClientKey, client_assertion
from identity.models import Account

LOOKUPS = "/exchange/v1/lookups"


@pytest.fixture
def world(app):
    return make_world(app, persons=8)


@pytest.fixture
def officer_tokens(app, client, world):
    key = add_rp(
        app, "ss-desk", agency="social-services", redirect_uris=["https://desk.example/cb"]
    )
    rp = RelyingParty(client, "ss-desk", key, redirect_uri="https://desk.example/cb")
    callback = run_code_flow(
        client, rp, "officer", "officer-demo-2026", scope="openid profile lookup"
    )
    body = rp.token(callback["code"]).get_json()
    return rp, body


def lookup_body(world) -> dict:
    return {
        "person": world.identifier("social-services", 0),
        "categories": ["income"],
        "purpose": "benefit-eligibility",
    }


def call(client, token, dpop: DPoPKey | None, body, scheme="DPoP", url=ISSUER + LOOKUPS):
    headers = {"Authorization": f"{scheme} {token}"}
    if dpop is not None:
        headers["DPoP"] = dpop.proof("POST", url, access_token=token)
    return client.post(LOOKUPS, json=body, headers=headers)


def test_officer_lookup_is_recorded_with_the_officer(app, client, world, officer_tokens):
    rp, body = officer_tokens
    response = call(client, body["access_token"], rp.dpop, lookup_body(world))
    assert response.status_code == 200, response.get_json()
    with app.extensions["casebroker.db"].sessionmaker() as session:
        officer_id = session.scalar(select(Account.officer_id).where(Account.username == "officer"))
        events = session.scalars(
            select(AuditEvent).where(
                AuditEvent.correlation_id == response.get_json()["correlation_id"]
            )
        ).all()
    assert events and all(e.officer_id == officer_id for e in events)
    assert all(e.client_id == "ss-desk" for e in events)
    assert isinstance(officer_id, uuid.UUID)


def test_bound_token_needs_its_proof(client, world, officer_tokens):
    rp, body = officer_tokens
    token = body["access_token"]
    as_bearer = call(client, token, None, lookup_body(world), scheme="Bearer")
    assert as_bearer.status_code == 401
    assert as_bearer.headers["WWW-Authenticate"].startswith("DPoP")
    no_proof = call(client, token, None, lookup_body(world))
    assert no_proof.status_code == 401
    assert 'error="invalid_dpop_proof"' in no_proof.headers["WWW-Authenticate"]
    other_key = call(client, token, DPoPKey(), lookup_body(world))
    assert other_key.status_code == 401
    wrong_url = call(client, token, rp.dpop, lookup_body(world), url=ISSUER + "/elsewhere")
    assert wrong_url.status_code == 401
    proof = rp.dpop.proof("POST", ISSUER + LOOKUPS, access_token=token)
    headers = {"Authorization": f"DPoP {token}", "DPoP": proof}
    assert client.post(LOOKUPS, json=lookup_body(world), headers=headers).status_code == 200
    replay = client.post(LOOKUPS, json=lookup_body(world), headers=headers)
    assert replay.status_code == 401 and replay.mimetype == "application/problem+json"


def test_citizen_tokens_cannot_look_up(app, client, world):
    key = add_rp(app, "ss-portal", agency="social-services")
    rp = RelyingParty(client, "ss-portal", key)
    callback = run_code_flow(
        client, rp, "citizen", "citizen-demo-2026", scope="openid profile lookup"
    )
    body = rp.token(callback["code"]).get_json()
    response = call(client, body["access_token"], rp.dpop, lookup_body(world))
    assert response.status_code == 403


def test_officer_of_another_agency_is_refused_by_a_lookup_client(app, client, world):
    key = add_rp(app, "tax-frontdesk", agency="tax")
    rp = RelyingParty(client, "tax-frontdesk", key)
    callback = run_code_flow(
        client, rp, "officer", "officer-demo-2026", scope="openid profile lookup"
    )
    assert callback["error"] == "access_denied"


def test_fapi_machine_client_needs_dpop_at_the_token_endpoint(app, client, world):
    from sqlalchemy import update

    from identity.models import Client

    with app.extensions["casebroker.db"].session() as session:
        session.execute(update(Client).where(Client.agency_id == "tax").values(is_fapi=True))
    key = ClientKey.load(world.seed.key_files["tax"])
    form = {
        "grant_type": "client_credentials",
        "scope": "lookup",
        "client_assertion_type": ASSERTION_TYPE,
        "client_assertion": client_assertion(key, key.issuer),
    }
    response = client.post("/token", data=form)
    assert response.status_code == 400 and response.get_json()["error"] == "invalid_dpop_proof"
    dpop = DPoPKey()
    form["client_assertion"] = client_assertion(key, key.issuer)
    bound = client.post(
        "/token", data=form, headers={"DPoP": dpop.proof("POST", ISSUER + "/token")}
    )
    assert bound.status_code == 200 and bound.get_json()["token_type"] == "DPoP"
    token = bound.get_json()["access_token"]
    body = {
        "person": world.identifier("tax", 0),
        "categories": ["income"],
        "purpose": "benefit-eligibility",
    }
    assert call(client, token, None, body, scheme="Bearer").status_code == 401
    assert call(client, token, dpop, body).status_code not in (401, 500)
