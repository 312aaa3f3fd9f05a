"""The federated lookup end to end through HTTP, with real tokens, on the demo's agreements."""

from __future__ import annotations

import json
import threading
import time
import uuid
from datetime import UTC, datetime, timedelta

import pytest
from lookup_world import by_provider, dumps, make_world
from sqlalchemy import func, select, update
from sqlalchemy.exc import OperationalError

import audit
from audit.models import AuditEvent
from broker.models import Source
from consent.models import Consent
from identity.models import IdentityLink


@pytest.fixture
def world(app):
    return make_world(app)


def benefit_lookup(world, categories, index=0, **extra):
    body = {
        "person": world.identifier("social-services", index),
        "categories": categories,
        "purpose": "benefit-eligibility",
    }
    body.update(extra)
    return world.lookup(body)


def events_of(app, correlation_id):
    with app.extensions["casebroker.db"].sessionmaker() as session:
        return session.scalars(
            select(AuditEvent)
            .where(AuditEvent.correlation_id == correlation_id)
            .order_by(AuditEvent.seq)
        ).all()


def grant_consent(
    app, person_id, grantee, purpose, categories, provider=None, status="active", fields=None
):
    now = datetime.now(UTC)
    with app.extensions["casebroker.db"].session() as session:
        consent = Consent(
            person_id=person_id,
            grantee_agency_id=grantee,
            purpose_id=purpose,
            provider_agency_id=provider,
            categories=categories,
            fields=fields,
            valid_from=now - timedelta(days=1),
            valid_until=now + timedelta(days=30),
            status=status,
        )
        session.add(consent)
    return consent.id


def person_id_of(world, agency, ref):
    return next(link.person_id for link in world.person_links(agency, ref))


def test_permitted_lookup_returns_only_permitted_fields(world):
    response = benefit_lookup(world, ["income", "address"])
    assert response.status_code == 200, response.json
    results = by_provider(response.json)
    income = results[("tax", "income")]
    assert income["status"] == "ok" and income["legal_basis"] == "statute"
    assert income["records"], "the demo gives every person income records"
    for record in income["records"]:
        assert set(record) <= set(income["fields"])
        assert "employer" not in record
    assert results[("tax", "address")]["status"] == "ok"
    assert response.json["correlation_id"] == response.headers["X-Correlation-Id"]


def test_denials_carry_a_reason_and_no_data(world):
    response = benefit_lookup(world, ["health.summary", "vehicle"])
    assert response.status_code == 200
    results = by_provider(response.json)
    health = results[("health", "health.summary")]
    assert health["status"] == "denied" and health["reason"]
    assert "records" not in health and "fields" not in health
    vehicle = results[("vehicle-registry", "vehicle")]
    assert vehicle["status"] == "denied" and "consent" in vehicle["reason"].lower()


def test_consent_permits_and_revocation_stops_the_very_next_lookup(world, make_app):
    owner = None
    for index in range(20):
        ref = world.identifier("social-services", index)
        pid = person_id_of(world, "social-services", ref)
        consent_id = grant_consent(
            world.app, pid, "social-services", "benefit-eligibility", ["vehicle"]
        )
        vehicle = by_provider(benefit_lookup(world, ["vehicle"], index).json)[
            ("vehicle-registry", "vehicle")
        ]
        assert vehicle["status"] in ("ok", "not_found"), vehicle
        if vehicle["status"] == "ok":
            owner = (index, consent_id, vehicle)
            break
    assert owner, "the demo gives some persons a vehicle"
    index, consent_id, vehicle = owner
    assert vehicle["legal_basis"] == "consent"
    assert all(set(r) <= set(vehicle["fields"]) for r in vehicle["records"])

    other_node = make_app()
    with other_node.extensions["casebroker.db"].session() as session:
        session.execute(update(Consent).where(Consent.id == consent_id).values(status="revoked"))
    after = by_provider(benefit_lookup(world, ["vehicle"], index).json)[
        ("vehicle-registry", "vehicle")
    ]
    assert after["status"] == "denied"


def test_a_consent_naming_fields_narrows_what_leaves(world):
    for index in range(20):
        ref = world.identifier("social-services", index)
        pid = person_id_of(world, "social-services", ref)
        grant_consent(
            world.app,
            pid,
            "social-services",
            "benefit-eligibility",
            ["vehicle"],
            fields={"vehicle": ["make", "first_registered"]},
        )
        vehicle = by_provider(benefit_lookup(world, ["vehicle"], index).json)[
            ("vehicle-registry", "vehicle")
        ]
        if vehicle["status"] == "ok":
            break
    else:
        pytest.fail("the demo gives some persons a vehicle")
    # The agreement allows registration_number, make, model; the consent only make (its
    # first_registered is not in the agreement, so it stays out too).
    assert vehicle["fields"] == ["make"]
    assert all(set(record) == {"make"} for record in vehicle["records"])
    with world.app.extensions["casebroker.db"].sessionmaker() as session:
        record = json.loads(
            session.scalars(
                select(AuditEvent.record)
                .where(AuditEvent.kind == "lookup.decision")
                .order_by(AuditEvent.seq.desc())
            ).first()
        )
    assert record["fields"] == ["make"]


def test_consent_for_another_purpose_or_provider_does_not_count(world):
    ref = world.identifier("social-services", 1)
    pid = person_id_of(world, "social-services", ref)
    grant_consent(world.app, pid, "social-services", "road-safety", ["vehicle"])
    grant_consent(
        world.app, pid, "social-services", "benefit-eligibility", ["vehicle"], provider="tax"
    )
    grant_consent(
        world.app, pid, "social-services", "benefit-eligibility", ["vehicle"], status="revoked"
    )
    result = by_provider(benefit_lookup(world, ["vehicle"], 1).json)
    assert result[("vehicle-registry", "vehicle")]["status"] == "denied"


def test_every_decision_has_exactly_one_audit_event(world):
    response = benefit_lookup(world, ["income", "address", "health.summary", "vehicle"])
    body = response.json
    events = events_of(world.app, body["correlation_id"])
    assert len(events) == len(body["results"]) == 4
    for result, event in zip(body["results"], events, strict=True):
        record = audit.parse_canonical(event.record)
        assert result["audit"] == {"index": event.seq, "leaf_hash": event.leaf_hash.hex()}
        assert record["kind"] == "lookup.decision"
        assert record["provider"] == result["provider"]
        assert record["category"] == result["category"]
        expected = "deny" if result["status"] == "denied" else "permit"
        assert record["decision"] == event.decision == expected
        assert (
            record["client"] == "social-services-cms" and record["requester"] == "social-services"
        )
        if expected == "permit":
            assert record["fields"] and record["policies"]


def test_no_field_outside_the_obligations_ever_leaves(world):
    categories = ["income", "address", "benefits", "health.summary", "vehicle"]
    for agency, purpose in [
        ("social-services", "benefit-eligibility"),
        ("tax", "tax-assessment"),
        ("health", "emergency-care"),
    ]:
        for index in range(6):
            body = {
                "person": world.identifier(agency, index),
                "purpose": purpose,
                "categories": [c for c in categories],
                "justification": "patient unconscious",
            }
            response = world.lookup(body, agency=agency)
            assert response.status_code == 200, response.json
            events = {
                e.seq: audit.parse_canonical(e.record)
                for e in events_of(world.app, response.json["correlation_id"])
            }
            for result in response.json["results"]:
                record = events[result["audit"]["index"]]
                if result["status"] != "ok":
                    assert "records" not in result
                    continue
                allowed = set(record["fields"])
                assert set(result["fields"]) <= allowed
                for row in result["records"]:
                    assert set(row) <= allowed, (result["category"], row)


def test_a_requester_never_learns_another_agencys_identifier(world):
    ref = world.identifier("social-services", 2)
    response = benefit_lookup(world, ["income", "address", "vehicle", "health.summary"], 2)
    text = dumps(response.json)
    for link in world.person_links("social-services", ref):
        if link.agency_id != "social-services":
            assert link.value not in text
    assert str(person_id_of(world, "social-services", ref)) not in text


def test_not_found_when_the_provider_has_no_record(world):
    missing = world.seed.without_benefits
    assert missing is not None
    links = world.person_links(
        missing.agency_id, {"scheme": missing.scheme, "value": missing.value}
    )
    tin = next(link for link in links if link.agency_id == "tax")
    body = {
        "person": {"scheme": tin.scheme, "value": tin.value},
        "categories": ["benefits"],
        "purpose": "tax-assessment",
    }
    result = by_provider(world.lookup(body, agency="tax").json)
    assert result[("social-services", "benefits")]["status"] == "not_found"


@pytest.mark.parametrize(
    "categories",
    [["address", "income"], ["address"]],
    ids=["beside-another-call", "alone-in-the-request-thread"],
)
def test_a_hung_source_costs_at_most_its_timeout(world, categories):
    forever = (
        "WITH RECURSIVE r(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM r) "
        "SELECT street, postal_code, city, since FROM r, address WHERE tin = :identifier"
    )
    with world.app.extensions["casebroker.db"].session() as session:
        source = session.get(Source, "tax-db")
        config = dict(source.config)
        config["queries"] = {**config["queries"], "address": forever}
        source.config = config
        source.timeout_ms = 400
    started = time.monotonic()
    response = benefit_lookup(world, categories)
    elapsed = time.monotonic() - started
    results = by_provider(response.json)
    assert len(results) == len(categories)  # one source each: alone means one call
    assert results[("tax", "address")]["status"] == "unavailable"
    if "income" in categories:
        assert results[("tax", "income")]["status"] == "ok"
    assert elapsed < 0.4 + 1.5


def test_a_broken_source_is_unavailable_not_an_error(world, tmp_path):
    with world.app.extensions["casebroker.db"].session() as session:
        source = session.get(Source, "tax-db")
        source.config = {**source.config, "url": f"sqlite:///{tmp_path / 'gone' / 'x.db'}"}
    response = benefit_lookup(world, ["income"])
    assert response.status_code == 200
    assert by_provider(response.json)[("tax", "income")]["status"] == "unavailable"


def test_failure_to_record_returns_no_data(world, monkeypatch):
    calls = []
    monkeypatch.setattr(
        world.app.extensions["casebroker.sources"], "fetch_all", lambda c: calls.append(c) or []
    )

    def broken(session, records):
        raise OperationalError("INSERT", {}, Exception("disk full"))

    monkeypatch.setattr(audit, "append", broken)
    response = benefit_lookup(world, ["income"])
    assert response.status_code == 503
    assert response.mimetype == "application/problem+json"
    assert response.headers["Retry-After"]
    assert "results" not in response.json and calls == []


@pytest.mark.parametrize(
    ("body", "status", "fragment"),
    [
        ({"categories": ["income"], "purpose": "benefit-eligibility"}, 422, "person"),
        (
            {
                "person": {"scheme": "client-no", "value": "SS-999999"},
                "categories": ["income"],
                "purpose": "benefit-eligibility",
            },
            404,
            "identifier",
        ),
        (
            {"person": None, "categories": ["alchemy"], "purpose": "benefit-eligibility"},
            422,
            "alchemy",
        ),
        ({"person": None, "categories": ["income"], "purpose": "curiosity"}, 422, "curiosity"),
        (
            {"person": None, "categories": ["health.summary"], "purpose": "child-protection"},
            422,
            "justification",
        ),
        (
            {"person": None, "categories": ["income"] * 2, "purpose": "benefit-eligibility"},
            422,
            "repeat",
        ),
        (
            {
                "person": None,
                "categories": [f"c{i}" for i in range(11)],
                "purpose": "benefit-eligibility",
            },
            422,
            "categories",
        ),
        ({"person": None, "categories": [], "purpose": "benefit-eligibility"}, 422, "categories"),
        (
            {
                "person": None,
                "categories": ["income"],
                "purpose": "benefit-eligibility",
                "admin": True,
            },
            422,
            "admin",
        ),
        (
            {
                "person": None,
                "categories": ["income"],
                "purpose": "benefit-eligibility",
                "justification": "x" * 2001,
            },
            422,
            "justification",
        ),
        (
            {
                "person": {"scheme": "client-no", "value": "' OR '1'='1"},
                "categories": ["income"],
                "purpose": "benefit-eligibility",
            },
            404,
            "identifier",
        ),
    ],
)
def test_bad_lookups_get_problem_details(world, body, status, fragment):
    if body.get("person", 1) is None:
        body["person"] = world.identifier("social-services")
    response = world.lookup(body)
    assert response.status_code == status, response.json
    assert response.mimetype == "application/problem+json"
    assert fragment in dumps(response.json)
    assert response.json["correlation_id"]


def test_rejected_lookups_are_audited(world):
    body = {
        "person": {"scheme": "client-no", "value": "SS-404404"},
        "categories": ["income"],
        "purpose": "benefit-eligibility",
    }
    response = world.lookup(body)
    events = events_of(world.app, response.json["correlation_id"])
    assert [e.kind for e in events] == ["lookup.rejected"]
    assert audit.parse_canonical(events[0].record)["stage"] == "person"


@pytest.mark.parametrize(
    ("raw", "content_type", "status"),
    [
        (b"{not json", "application/json", 400),
        (b"[]", "application/json", 422),
        (b'"text"', "application/json", 422),
        (b"person=x", "application/x-www-form-urlencoded", 415),
        (b"{" + b" " * 70_000 + b"}", "application/json", 413),
    ],
)
def test_malformed_bodies(world, raw, content_type, status):
    response = world.lookup(raw, content_type=content_type)
    assert response.status_code == status
    assert response.mimetype == "application/problem+json"


def test_tokens_are_checked(world):
    body = {
        "person": world.identifier("social-services"),
        "categories": ["income"],
        "purpose": "benefit-eligibility",
    }
    client = world.app.test_client()
    missing = client.post("/exchange/v1/lookups", json=body)
    assert missing.status_code == 401 and "Bearer" in missing.headers["WWW-Authenticate"]
    assert missing.mimetype == "application/problem+json"

    good = world.token()
    header, payload, signature = good.split(".")
    forged = f"{header}.{payload}.{signature[:-4]}AAAA"
    assert world.lookup(body, token=forged).status_code == 401
    assert world.lookup(body, token="not-a-token").status_code == 401
    assert world.lookup(body, token="a.b.c").status_code == 401

    from joserfc import jwt
    from joserfc.jwk import ECKey

    stranger = ECKey.generate_key("P-256", {"kid": "stranger"})
    now = int(time.time())
    claims = {
        "iss": "https://broker.test",
        "aud": "https://broker.test/exchange/v1",
        "sub": "social-services-cms",
        "client_id": "social-services-cms",
        "agency": "social-services",
        "scope": "lookup",
        "iat": now,
        "exp": now + 60,
    }
    unknown_key = jwt.encode({"alg": "ES256", "typ": "at+jwt", "kid": "stranger"}, claims, stranger)
    response = world.lookup(body, token=unknown_key)
    assert response.status_code == 401 and "invalid_token" in response.headers["WWW-Authenticate"]

    expired = dict(claims, iat=now - 900, exp=now - 600)
    with world.app.app_context():
        from broker.db import get_session
        from identity.keys import active_key

        signer = active_key(get_session(), world.app.config["KEY_ENCRYPTION_KEY_BYTES"])
    header = {"alg": "ES256", "typ": "at+jwt", "kid": signer.kid}
    assert world.lookup(body, token=jwt.encode(header, expired, signer.key)).status_code == 401
    wrong_aud = dict(claims, aud="https://broker.test")
    assert world.lookup(body, token=jwt.encode(header, wrong_aud, signer.key)).status_code == 401
    wrong_typ = {"alg": "ES256", "typ": "JWT", "kid": signer.kid}
    assert world.lookup(body, token=jwt.encode(wrong_typ, claims, signer.key)).status_code == 401
    other_scope = dict(claims, scope="profile")
    response = world.lookup(body, token=jwt.encode(header, other_scope, signer.key))
    assert response.status_code == 403
    assert "insufficient_scope" in response.headers["WWW-Authenticate"]


def test_concurrent_lookups_keep_the_sequence_gap_free(world):
    tokens = [world.token() for _ in range(5)]
    statuses: list[int] = []
    errors: list[BaseException] = []

    def one(n: int) -> None:
        try:
            body = {
                "person": world.identifier("social-services", n % 10),
                "categories": ["income", "health.summary"],
                "purpose": "benefit-eligibility",
            }
            statuses.append(world.lookup(body, token=tokens[n % 5]).status_code)
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=one, args=(n,)) for n in range(50)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert not errors and statuses == [200] * 50
    with world.app.extensions["casebroker.db"].sessionmaker() as session:
        seqs = session.scalars(
            select(AuditEvent.seq)
            .where(AuditEvent.kind == "lookup.decision")
            .order_by(AuditEvent.seq)
        ).all()
        total = session.scalar(select(func.count()).select_from(AuditEvent))
    assert len(seqs) == 100
    all_seqs = list(range(total))
    with world.app.extensions["casebroker.db"].sessionmaker() as session:
        assert session.scalars(select(AuditEvent.seq).order_by(AuditEvent.seq)).all() == all_seqs


def test_requester_sources_are_not_queried_for_its_own_data(world):
    body = {
        "person": world.identifier("tax"),
        "categories": ["income"],
        "purpose": "tax-assessment",
    }
    response = world.lookup(body, agency="tax")
    assert response.status_code == 200 and response.json["results"] == []


def test_openapi_document_and_page(client):
    document = client.get("/openapi.json").json
    assert document["openapi"].startswith("3.")
    operation = document["paths"]["/exchange/v1/lookups"]["post"]
    assert "LookupRequest" in dumps(operation["requestBody"])
    assert set(document["components"]["schemas"]) >= {"LookupRequest", "LookupResponse", "Problem"}
    page = client.get("/docs")
    assert page.status_code == 200 and b"/exchange/v1/lookups" in page.data


def test_person_ids_are_random_uuids(world):
    with world.app.extensions["casebroker.db"].sessionmaker() as session:
        ids = session.scalars(select(IdentityLink.person_id).limit(5)).all()
    assert all(isinstance(i, uuid.UUID) and i.version == 4 for i in ids)


def test_decisions_name_their_policy_version_whose_files_are_kept_once(world):
    import hashlib

    from audit_helpers import make_officer, officer_token

    engine = world.app.extensions["casebroker.policy"]
    first = benefit_lookup(world, ["income"])
    second = benefit_lookup(world, ["income"], index=1)
    assert first.status_code == second.status_code == 200
    decisions = [
        json.loads(e.record)
        for response in (first, second)
        for e in events_of(world.app, response.json["correlation_id"])
        if e.kind == "lookup.decision"
    ]
    assert {d["policy_version"] for d in decisions} == {engine.version}
    with world.app.extensions["casebroker.db"].sessionmaker() as session:
        loaded = [
            json.loads(r)
            for r in session.scalars(
                select(AuditEvent.record).where(AuditEvent.kind == "policy.loaded")
            )
        ]
    assert [event["version"] for event in loaded] == [engine.version], "recorded once"

    auditor = officer_token(world.app, make_officer(world.app))
    client = world.app.test_client()
    headers = {"Authorization": f"Bearer {auditor}"}
    kept = client.get(f"/audit/v1/policy-versions/{engine.version}", headers=headers).json
    assert set(kept["files"]) == set(loaded[0]["files"]) and "agreements/tax.cedar" in kept["files"]
    for name, text in kept["files"].items():
        assert hashlib.sha256(text.encode()).hexdigest() == loaded[0]["files"][name]

    for bad in ("0" * 64, "not-a-version", engine.version.upper()):
        response = client.get(f"/audit/v1/policy-versions/{bad}", headers=headers)
        assert response.status_code == 404 and response.mimetype == "application/problem+json"
    assert client.get(f"/audit/v1/policy-versions/{engine.version}").status_code == 401
