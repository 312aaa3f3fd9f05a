"""The consent world plus citizen accounts and the portal's client, and a browser-like login."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from urllib.parse import parse_qs, urlsplit

from argon2 import PasswordHasher
from consent_world import ConsentWorld, make_consent_world
from flask import Flask
from oidc_helpers import csrf_of

from broker.portal import current_person, ensure_portal_client
from identity.models import Account

PASSWORD = "portal-password-1"


@dataclass
class PortalWorld:
    cw: ConsentWorld
    people: dict[str, tuple[dict, uuid.UUID]]

    @property
    def app(self) -> Flask:
        return self.cw.app

    def request_consent(self, username: str, days: int = 30) -> str:
        ref, _person = self.people[username]
        body = {
            "person": ref,
            "purpose": "benefit-eligibility",
            "categories": ["vehicle"],
            "duration_days": days,
            "justification": "To check your benefit claim.",
        }
        created = self.cw.agency("POST", "/consent/v1/requests", json=body)
        assert created.status_code == 201, created.json
        return created.json["id"]


def make_portal_world(app: Flask) -> PortalWorld:
    cw = make_consent_world(app)
    app.extensions["casebroker.citizen"] = current_person
    hasher = PasswordHasher()
    people = {}
    with app.extensions["casebroker.db"].session() as session:
        for index, username in enumerate(("alice", "bob")):
            ref, person_id = cw.person(index=index)
            session.add(
                Account(
                    username=username,
                    password_hash=hasher.hash(PASSWORD),
                    kind="citizen",
                    person_id=person_id,
                )
            )
            people[username] = (ref, person_id)
        ensure_portal_client(session, app.config["ISSUER"], app.config["KEY_ENCRYPTION_KEY_BYTES"])
    return PortalWorld(cw, people)


def path_of(location: str) -> str:
    parts = urlsplit(location)
    return parts.path + ("?" + parts.query if parts.query else "")


def portal_login(http, username: str, password: str = PASSWORD, follow: bool = True):
    """Walk the code flow as a browser would; returns the callback's response (or its path)."""
    response = http.get("/portal/login")
    assert response.status_code == 303 and "/authorize?" in response.location
    response = http.get(path_of(response.location))
    if response.status_code == 303 and "/login" in response.location:
        next_url = parse_qs(urlsplit(response.location).query)["next"][0]
        page = http.get("/login")
        form = {
            "csrf_token": csrf_of(page.get_data(as_text=True)),
            "username": username,
            "password": password,
            "next": next_url,
        }
        response = http.post("/login", data=form)
        assert response.status_code == 303, response.get_data(as_text=True)[:300]
        response = http.get(path_of(response.location))
    if response.status_code == 200:
        html = response.get_data(as_text=True)
        action = html.split('action="/authorize/consent')[-1].split('"')[0]
        response = http.post(
            "/authorize/consent" + action, data={"csrf_token": csrf_of(html), "decision": "allow"}
        )
    assert response.status_code == 303, response.get_data(as_text=True)[:300]
    assert "/portal/callback" in response.location, response.location
    if not follow:
        return path_of(response.location)
    return http.get(path_of(response.location))
