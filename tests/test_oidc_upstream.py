"""Identity brokering, with a second broker instance (served over HTTP) as the upstream."""

from __future__ import annotations

import json
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest
from browser.fixtures import live_server  # noqa: F401
from identity_helpers import new_key
from oidc_helpers import CITIZEN_PASSWORD, csrf_of, seed
from sqlalchemy import select

from audit.models import AuditEvent
from identity.clients import register_client

CALLBACK = "https://broker.test/login/upstream/eid/callback"


@pytest.fixture
def setup(live_server, make_app, tmp_path):  # noqa: F811
    upstream = live_server()
    world = seed(upstream.app)
    key = new_key()
    with upstream.app.extensions["casebroker.db"].session() as session:
        register_client(
            session,
            "broker-rp",
            "social",
            "Case broker",
            [key.as_dict(private=False)],
            scope="openid",
            is_fapi=True,
            redirect_uris=[CALLBACK],
            grant_types=["authorization_code"],
        )
    key_file = tmp_path / "upstream-key.json"
    key_file.write_text(json.dumps({"key": key.as_dict(private=True)}))
    providers = tmp_path / "providers.json"
    providers.write_text(
        json.dumps(
            [
                {
                    "name": "eid",
                    "title": "National eID",
                    "issuer": upstream.url,
                    "client_id": "broker-rp",
                    "key_file": str(key_file),
                }
            ]
        )
    )
    broker = make_app(UPSTREAM_PROVIDERS=str(providers))
    return upstream, broker, world


def sign_in_upstream(upstream, location: str) -> str:
    """The browser at the upstream: log in, allow, and come back with the callback URL."""
    with httpx.Client(base_url=upstream.url, follow_redirects=False) as browser:
        response = browser.get(location)
        while response.status_code == 303 and not response.headers["location"].startswith(CALLBACK):
            target = response.headers["location"]
            page = browser.get(target)
            html = page.text
            if 'name="password"' in html:
                next_url = parse_qs(urlsplit(target).query)["next"][0]
                response = browser.post(
                    "/login",
                    data={
                        "csrf_token": csrf_of(html),
                        "username": "citizen",
                        "password": CITIZEN_PASSWORD,
                        "next": next_url,
                    },
                )
            elif 'value="allow"' in html:
                action = html.split('action="')[-1].split('"')[0]
                response = browser.post(
                    action, data={"csrf_token": csrf_of(html), "decision": "allow"}
                )
            else:
                response = page
        return response.headers["location"]


def start(broker) -> tuple:
    http = broker.test_client()
    page = http.get("/login").get_data(as_text=True)
    assert "National eID" in page
    response = http.post(
        "/login/upstream/eid", data={"csrf_token": csrf_of(page), "next": "/account"}
    )
    assert response.status_code == 303, response.get_data(as_text=True)
    return http, response.location


def test_sign_in_with_a_linked_upstream_account(setup, db_session):
    upstream, broker, world = setup
    result = broker.test_cli_runner().invoke(
        args=[
            "accounts",
            "link-upstream",
            "citizen",
            "--provider",
            "eid",
            "--subject",
            str(world.citizen_id),
        ]
    )
    assert result.exit_code == 0, result.output
    http, location = start(broker)
    assert location.startswith(upstream.url + "/authorize?client_id=broker-rp&request_uri=")
    callback = sign_in_upstream(upstream, location)
    assert callback.startswith(CALLBACK) and "iss=" in callback
    done = http.get(callback.removeprefix("https://broker.test"))
    assert done.status_code == 303 and done.location == "/account"
    assert "Ada Lovelace" in http.get("/account").get_data(as_text=True)
    records = list(db_session.scalars(select(AuditEvent.record)))
    assert any('"amr":["fed"]' in r and '"provider":"eid"' in r for r in records)


def test_unlinked_upstream_subject_is_refused(setup, db_session):
    upstream, broker, _world = setup
    http, location = start(broker)
    callback = sign_in_upstream(upstream, location)
    refused = http.get(callback.removeprefix("https://broker.test"))
    assert refused.status_code == 400 and "not linked" in refused.get_data(as_text=True)
    assert http.get("/account").status_code == 303
    kinds = list(db_session.scalars(select(AuditEvent.kind)))
    assert "login.failed" in kinds


def test_tampered_state_or_issuer_is_refused(setup):
    upstream, broker, world = setup
    broker.test_cli_runner().invoke(
        args=[
            *("accounts", "link-upstream", "citizen", "--provider", "eid"),
            *("--subject", str(world.citizen_id)),
        ]
    )
    http, location = start(broker)
    callback = sign_in_upstream(upstream, location)
    path = callback.removeprefix("https://broker.test")
    wrong_iss = path.replace("iss=", "iss=https%3A%2F%2Fevil.example&x=")
    assert http.get(wrong_iss).status_code == 400
    http, location = start(broker)
    callback = sign_in_upstream(upstream, location)
    path = callback.removeprefix("https://broker.test")
    assert http.get(path.replace("state=", "state=x")).status_code == 400
    assert http.get("/login/upstream/eid/callback?code=x").status_code == 400  # no flow left


def test_bad_providers_file_stops_the_app(make_app, tmp_path):
    from broker.config import ConfigError

    providers = tmp_path / "providers.json"
    providers.write_text(json.dumps([{"name": "x", "issuer": "https://x", "client_id": "c"}]))
    with pytest.raises(ConfigError):
        make_app(UPSTREAM_PROVIDERS=str(providers))
