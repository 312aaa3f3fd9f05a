"""The lookup test world plus what consent tests need: purpose caps, clients allowed to ask
for consent, a logged-in citizen, and bearer tokens."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import Any

from flask import Flask, request
from lookup_world import ASSERTION_TYPE, World, make_world
from sqlalchemy import select

from audit.models import AuditEvent
from broker.agency_client import client_assertion
from consent.demo import DEMO_CAPS
from consent.service import ConsentService, ConsentSettings, set_purpose_categories
from identity.models import Client, IdentityLink

CITIZEN_HEADER = "X-Test-Citizen"


@dataclass
class ConsentWorld:
    world: World

    @property
    def app(self) -> Flask:
        return self.world.app

    def sessionmaker(self):
        return self.app.extensions["casebroker.db"].sessionmaker

    def service(self, session, **kwargs: Any) -> ConsentService:
        return ConsentService(session, ConsentSettings.from_config(self.app.config), **kwargs)

    def token(self, agency: str = "social-services", scope: str = "lookup consent") -> str:
        """A bearer token (not DPoP-bound) for the agency's system."""
        key = self.world.key(agency)
        form = {
            "grant_type": "client_credentials",
            "scope": scope,
            "client_assertion_type": ASSERTION_TYPE,
            "client_assertion": client_assertion(key, key.issuer),
        }
        response = self.app.test_client().post("/token", data=form)
        assert response.status_code == 200, response.json
        return response.json["access_token"]

    def agency(self, method: str, path: str, agency: str = "social-services", **kwargs: Any):
        headers = {"Authorization": f"Bearer {self.token(agency)}"}
        headers.update(kwargs.pop("headers", {}))
        return self.app.test_client().open(path, method=method, headers=headers, **kwargs)

    def citizen(self, method: str, path: str, person_id: uuid.UUID | None, **kwargs: Any):
        headers = {CITIZEN_HEADER: str(person_id)} if person_id else {}
        return self.app.test_client().open(path, method=method, headers=headers, **kwargs)

    def lookup(self, body: dict[str, Any], agency: str = "social-services"):
        headers = {"Authorization": f"Bearer {self.token(agency, 'lookup')}"}
        return self.app.test_client().post("/exchange/v1/lookups", json=body, headers=headers)

    def person(self, agency: str = "social-services", index: int = 0) -> tuple[dict, uuid.UUID]:
        ref = self.world.identifier(agency, index)
        with self.sessionmaker()() as session:
            person_id = session.scalar(
                select(IdentityLink.person_id).where(
                    IdentityLink.agency_id == agency,
                    IdentityLink.scheme == ref["scheme"],
                    IdentityLink.value == ref["value"],
                )
            )
        return ref, person_id

    def audit_kinds(self) -> list[str]:
        with self.sessionmaker()() as session:
            return list(session.scalars(select(AuditEvent.kind).order_by(AuditEvent.seq)))


def _test_citizen() -> uuid.UUID | None:
    """Tests log in by header; the portal's login supplies the real resolver."""
    value = request.headers.get(CITIZEN_HEADER)
    return uuid.UUID(value) if value else None


def make_consent_world(app: Flask, persons: int = 12) -> ConsentWorld:
    world = make_world(app, persons=persons)
    app.extensions["casebroker.citizen"] = _test_citizen
    with app.extensions["casebroker.db"].session() as session:
        for purpose, categories in DEMO_CAPS.items():
            set_purpose_categories(session, purpose, categories)
        for client in session.scalars(select(Client)):
            client.scope = "lookup consent"
            client.is_fapi = False
    return ConsentWorld(world)
