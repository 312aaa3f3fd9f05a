"""A small seeded demo world and an agency's view of the exchange API, for lookup tests."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from flask import Flask
from sqlalchemy import select

from broker.agency_client import ClientKey, client_assertion
from broker.demo_data import SeedResult, seed_demo
from identity.models import IdentityLink

ASSERTION_TYPE = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"


@dataclass
class World:
    app: Flask
    seed: SeedResult
    instance: Path

    def key(self, agency: str) -> ClientKey:
        return ClientKey.load(self.seed.key_files[agency])

    def token(self, agency: str = "social-services", scope: str = "lookup") -> str:
        key = self.key(agency)
        form = {
            "grant_type": "client_credentials",
            "scope": scope,
            "client_assertion_type": ASSERTION_TYPE,
            "client_assertion": client_assertion(key, key.issuer),
        }
        response = self.app.test_client().post("/token", data=form)
        assert response.status_code == 200, response.json
        return response.json["access_token"]

    def identifier(self, agency: str, index: int = 0) -> dict[str, str]:
        """The ``index``-th person's identifier at ``agency``, as that agency names them."""
        with self.app.extensions["casebroker.db"].sessionmaker() as session:
            link = session.scalars(
                select(IdentityLink)
                .where(IdentityLink.agency_id == agency)
                .order_by(IdentityLink.value)
                .offset(index)
                .limit(1)
            ).one()
            return {"scheme": link.scheme, "value": link.value}

    def person_links(self, agency: str, person: dict[str, str]) -> list[IdentityLink]:
        with self.app.extensions["casebroker.db"].sessionmaker() as session:
            person_id = session.scalar(
                select(IdentityLink.person_id).where(
                    IdentityLink.agency_id == agency,
                    IdentityLink.scheme == person["scheme"],
                    IdentityLink.value == person["value"],
                )
            )
            return list(
                session.scalars(select(IdentityLink).where(IdentityLink.person_id == person_id))
            )

    def lookup(
        self, body: Any, agency: str = "social-services", token: str | None = None, **kwargs: Any
    ):
        headers = {"Authorization": f"Bearer {token or self.token(agency)}"}
        if isinstance(body, dict):
            return self.app.test_client().post(
                "/exchange/v1/lookups", json=body, headers=headers, **kwargs
            )
        return self.app.test_client().post(
            "/exchange/v1/lookups", data=body, headers=headers, **kwargs
        )


def make_world(app: Flask, persons: int = 24) -> World:
    instance = Path(app.config["INSTANCE_PATH"])
    with app.extensions["casebroker.db"].session() as session:
        result = seed_demo(session, instance, app.config["ISSUER"], seed=7, persons=persons)
    return World(app, result, instance)


def by_provider(response_json: dict[str, Any]) -> dict[tuple[str, str], dict[str, Any]]:
    return {(r["provider"], r["category"]): r for r in response_json["results"]}


def dumps(value: Any) -> str:
    return json.dumps(value, sort_keys=True)
