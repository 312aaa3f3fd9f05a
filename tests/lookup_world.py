"""A small seeded demo world and an agency's view of the exchange API, for lookup tests."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path
from typing import Any

from flask import Flask
from sqlalchemy import select
from sqlalchemy.orm import Session

from broker.agency_client import ClientKey, DPoPProver, authorization_headers, client_assertion
from broker.cases import Actor, CaseInput, CaseRegistry
from broker.demo_data import SeedResult, seed_demo
from broker.models import Purpose
from identity.models import IdentityLink

ASSERTION_TYPE = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"


@dataclass
class World:
    app: Flask
    seed: SeedResult
    instance: Path
    dpop: DPoPProver = field(default_factory=DPoPProver)

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
        proof = self.dpop.proof("POST", self.app.config["ISSUER"] + "/token")
        response = self.app.test_client().post("/token", data=form, headers={"DPoP": proof})
        assert response.status_code == 200, response.json
        return response.json["access_token"]

    def call(self, method: str, path: str, token: str, **kwargs: Any):
        """A request to the exchange API with ``token`` and a DPoP proof for it."""
        url = self.app.config["ISSUER"] + path.partition("?")[0]
        headers = authorization_headers(token, method, url, self.dpop)
        return self.app.test_client().open(path, method=method, headers=headers, **kwargs)

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
        url = self.app.config["ISSUER"] + "/exchange/v1/lookups"
        headers = authorization_headers(token or self.token(agency), "POST", url, self.dpop)
        if isinstance(body, dict):
            return self.app.test_client().post(
                "/exchange/v1/lookups", json=body, headers=headers, **kwargs
            )
        return self.app.test_client().post(
            "/exchange/v1/lookups", data=body, headers=headers, **kwargs
        )


def make_world(app: Flask, persons: int = 24, every_case: bool = True) -> World:
    """The demo seeded small; with ``every_case`` each agency also has an open case on every
    person for every purpose, so tests about other rules are not denied for want of one."""
    instance = Path(app.config["INSTANCE_PATH"])
    with app.extensions["casebroker.db"].session() as session:
        result = seed_demo(session, instance, app.config["ISSUER"], seed=7, persons=persons)
        if every_case:
            open_every_case(session)
    return World(app, result, instance)


def open_every_case(session: Session) -> None:
    purposes = tuple(session.scalars(select(Purpose.id).order_by(Purpose.id)))
    links = session.execute(
        select(
            IdentityLink.agency_id, IdentityLink.scheme, IdentityLink.value, IdentityLink.person_id
        )
    ).all()
    for agency in sorted({link.agency_id for link in links}):
        registry = CaseRegistry(session, Actor(agency, channel="cli"))
        registry.add_checked(
            [
                (
                    CaseInput(
                        f"ALL-{link.value}",
                        link.scheme,
                        link.value,
                        "applicant",
                        purposes,
                        date(2024, 1, 1),
                    ),
                    link.person_id,
                )
                for link in links
                if link.agency_id == agency
            ]
        )


def by_provider(response_json: dict[str, Any]) -> dict[tuple[str, str], dict[str, Any]]:
    return {(r["provider"], r["category"]): r for r in response_json["results"]}


def dumps(value: Any) -> str:
    return json.dumps(value, sort_keys=True)
