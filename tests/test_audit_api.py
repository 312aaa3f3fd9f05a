"""The auditor API: who may use it, searches, pages, statistics, exports with proofs."""

from __future__ import annotations

import base64
import csv
import io
import json
import time
import uuid
from datetime import UTC, datetime, timedelta

import pytest
from audit_helpers import (
    bearer,
    field_values,
    integrate,
    log_verifier,
    make_officer,
    officer_token,
    origin,
    sessions,
)
from joserfc import jwt
from joserfc.jwk import OctKey
from sqlalchemy import select

import audit
from audit import merkle, note
from audit.models import AuditEvent
from broker.models import Agency
from identity.models import IdentityLink, Person

T0 = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)


@pytest.fixture
def world(app):
    """Two persons known to tax and health, lookups about them, and an auditor's token."""
    with app.extensions["casebroker.db"].session() as session:
        for agency in ("tax", "health", "social-services"):
            session.add(Agency(id=agency, name=agency, sector="public"))
        people = [
            Person(given_name="Ada", family_name="Lee"),
            Person(given_name="Bo", family_name="Li"),
        ]
        session.add_all(people)
        session.flush()
        for n, person in enumerate(people):
            session.add(
                IdentityLink(person_id=person.id, agency_id="tax", scheme="tin", value=f"TIN-{n}")
            )
            session.add(
                IdentityLink(person_id=person.id, agency_id="health", scheme="nhi", value=f"H{n}")
            )
        records = []
        for i in range(12):
            records.append(
                audit.make_record(
                    "lookup.decision",
                    f"corr-{i % 3}",
                    audit.event_time(T0 + timedelta(days=i)),
                    client="ss-cms" if i % 2 else "tax-cms",
                    officer=str(uuid.UUID(int=7)) if i < 4 else None,
                    requester="social-services" if i % 2 else "tax",
                    person=str(people[i % 2].id),
                    provider="health" if i % 2 else "social-services",
                    category="income" if i % 3 else "health.summary",
                    purpose="benefit-eligibility",
                    decision="permit" if i % 4 else "deny",
                )
            )
        audit.append(session, records)
        ids = [str(p.id) for p in people]
    officer = make_officer(app)
    integrate(app)
    return {"app": app, "token": officer_token(app, officer), "officer": officer, "persons": ids}


def get(world, path, token=None, **params):
    headers = bearer(token or world["token"])
    return world["app"].test_client().get(path, query_string=params, headers=headers)


def test_search_returns_events_newest_first_without_internal_ids(world):
    response = get(world, "/audit/v1/events")
    assert response.status_code == 200
    events = response.json["events"]
    assert [e["index"] for e in events] == list(range(11, -1, -1))
    for person in world["persons"]:
        assert person not in response.get_data(as_text=True)
    assert events[0]["record"]["kind"] == "lookup.decision" and "person" not in events[0]["record"]


@pytest.mark.parametrize(
    ("params", "indexes"),
    [
        ({"person": "tin:TIN-1"}, [11, 9, 7, 5, 3, 1]),
        ({"person": "nhi:H0", "person_agency": "health"}, [10, 8, 6, 4, 2, 0]),
        ({"agency": "health"}, [11, 9, 7, 5, 3, 1]),
        ({"requester": "tax", "decision": "deny"}, [8, 4, 0]),
        ({"client": "ss-cms", "category": "health.summary"}, [9, 3]),
        ({"officer": str(uuid.UUID(int=7))}, [3, 2, 1, 0]),
        ({"purpose": "benefit-eligibility", "provider": "social-services"}, [10, 8, 6, 4, 2, 0]),
        ({"kind": "lookup.decision", "correlation_id": "corr-2"}, [11, 8, 5, 2]),
        ({"from": "2026-03-03T12:00:00+00:00", "to": "2026-03-05T12:00:00Z"}, [3, 2]),
        ({"kind": "' OR 1=1 --"}, []),
    ],
)
def test_search_filters(world, params, indexes):
    response = get(world, "/audit/v1/events", **params)
    assert response.status_code == 200, response.json
    assert [e["index"] for e in response.json["events"]] == indexes


def test_keyset_pages_walk_the_whole_result_once(world):
    seen, cursor = [], None
    while True:
        params = {"limit": 5, **({"cursor": cursor} if cursor else {})}
        body = get(world, "/audit/v1/events", **params).json
        seen += [e["index"] for e in body["events"]]
        cursor = body["next_cursor"]
        if cursor is None:
            break
    assert seen == list(range(11, -1, -1))


@pytest.mark.parametrize(
    ("params", "parameter"),
    [
        ({"person": "TIN-1"}, "person"),
        ({"person": "tin:nobody"}, "person"),
        ({"decision": "maybe"}, "decision"),
        ({"officer": "not-a-uuid"}, "officer"),
        ({"from": "yesterday"}, "from"),
        ({"from": "2026-03-01T00:00:00"}, "from"),
        ({"from": "2026-03-02T00:00:00Z", "to": "2026-03-01T00:00:00Z"}, "to"),
        ({"limit": "0"}, "limit"),
        ({"limit": "501"}, "limit"),
        ({"limit": "-3"}, "limit"),
        ({"cursor": "bm9wZQ"}, "cursor"),
        ({"cursor": "%%%"}, "cursor"),
        ({"persn": "tin:TIN-1"}, "persn"),
        ({"kind": "x" * 300}, "kind"),
        ({"kind": "a\x00b"}, "kind"),
    ],
)
def test_bad_search_parameters_get_problem_details(world, params, parameter):
    response = get(world, "/audit/v1/events", **params)
    assert response.status_code == 422
    assert response.mimetype == "application/problem+json"
    assert response.json["parameter"] == parameter


def test_an_identifier_shared_by_two_persons_needs_the_agency(world):
    app = world["app"]
    with app.extensions["casebroker.db"].session() as session:
        person = session.get(Person, uuid.UUID(world["persons"][0]))
        session.add(
            IdentityLink(person_id=person.id, agency_id="health", scheme="tin", value="TIN-1")
        )
    response = get(world, "/audit/v1/events", person="tin:TIN-1")
    assert response.status_code == 422 and "person_agency" in response.json["detail"]
    response = get(world, "/audit/v1/events", person="tin:TIN-1", person_agency="tax")
    assert len(response.json["events"]) == 6


def test_stats_count_over_the_filters(world):
    body = get(world, "/audit/v1/stats", requester="tax").json
    assert body["total"] == 6
    assert {d["value"]: d["count"] for d in body["by_decision"]} == {"deny": 3, "permit": 3}
    assert {d["value"]: d["count"] for d in body["by_provider"]} == {"social-services": 6}
    assert [d["day"] for d in body["by_day"]][:2] == ["2026-03-01", "2026-03-03"]


def test_every_search_stats_and_export_is_itself_audited(world):
    get(world, "/audit/v1/events", person="tin:TIN-0", decision="permit")
    get(world, "/audit/v1/stats")
    get(world, "/audit/v1/events/export", format="csv").get_data()
    with sessions(world["app"]) as session:
        rows = session.scalars(
            select(AuditEvent).where(AuditEvent.kind.like("audit.%")).order_by(AuditEvent.seq)
        ).all()
    assert [r.kind for r in rows] == ["audit.search", "audit.stats", "audit.export"]
    search = json.loads(rows[0].record)
    assert search["officer"] == str(world["officer"]) and search["requester"] == "oversight"
    assert search["filters"] == {"decision": "permit", "person_scheme": "tin"}
    assert str(rows[0].person_id) == world["persons"][0]
    assert "TIN-0" not in field_values(search)


def _open_head(world, note_text: str) -> note.Checkpoint:
    return note.open_checkpoint(note_text, [log_verifier(world["app"])], origin(world["app"]))


def test_jsonl_export_carries_a_verifiable_proof_for_every_integrated_event(world):
    with sessions(world["app"]) as session:
        leaves = {e.seq: bytes(e.leaf_hash) for e in session.scalars(select(AuditEvent))}
    response = get(world, "/audit/v1/events/export", format="jsonl", agency="health")
    assert response.status_code == 200 and response.mimetype == "application/jsonl"
    lines = [json.loads(line) for line in response.get_data(as_text=True).splitlines()]
    head = _open_head(world, lines[0]["note"])
    assert head.size == 12 and lines[0]["tree_size"] == 12
    assert [e["index"] for e in lines[1:]] == [1, 3, 5, 7, 9, 11]
    for event in lines[1:]:
        leaf = base64.b64decode(event["leaf_hash"])
        assert leaf == leaves[event["index"]]
        proof = [base64.b64decode(h) for h in event["inclusion"]["proof"]]
        merkle.verify_inclusion(event["index"], head.size, leaf, proof, head.root_hash)


def test_csv_export_with_proofs_against_the_checkpoint_in_its_header(world):
    response = get(world, "/audit/v1/events/export", format="csv", decision="deny")
    assert response.mimetype == "text/csv"
    head = _open_head(world, base64.b64decode(response.headers["Audit-Checkpoint"]).decode())
    rows = list(csv.DictReader(io.StringIO(response.get_data(as_text=True))))
    assert [int(r["index"]) for r in rows] == [0, 4, 8]
    for row in rows:
        proof = [base64.b64decode(h) for h in row["proof"].split()]
        leaf = base64.b64decode(row["leaf_hash"])
        merkle.verify_inclusion(int(row["index"]), head.size, leaf, proof, head.root_hash)
        assert json.loads(row["record"])["decision"] == "deny"


def test_export_marks_events_not_yet_integrated(world):
    with sessions(world["app"]) as session:
        audit.append(session, [audit.make_record("late", None, audit.event_time())])
        session.commit()
    response = get(world, "/audit/v1/events/export", kind="late")
    lines = [json.loads(line) for line in response.get_data(as_text=True).splitlines()]
    assert len(lines) == 2 and lines[1]["inclusion"] is None


def test_export_refuses_an_unknown_format(world):
    response = get(world, "/audit/v1/events/export", format="xlsx")
    assert response.status_code == 422 and response.json["parameter"] == "format"


def test_csv_cells_that_a_spreadsheet_would_run_are_neutralised(world):
    with sessions(world["app"]) as session:
        record = audit.make_record("=cmd|' /C calc'!A0", None, audit.event_time(), client="@x")
        audit.append(session, [record])
        session.commit()
    text = get(world, "/audit/v1/events/export", format="csv").get_data(as_text=True)
    row = list(csv.DictReader(io.StringIO(text)))[-1]
    assert row["kind"].startswith("'=") and row["client"] == "'@x"


def _forged(world, **claims) -> str:
    return officer_token(world["app"], world["officer"], **claims)


@pytest.mark.parametrize(
    ("make_token", "status"),
    [
        (lambda w: None, 401),
        (lambda w: "not-a-jwt", 401),
        (lambda w: _forged(w, scope="lookup"), 403),
        (lambda w: _forged(w, exp=int(time.time()) - 3600), 401),
        (lambda w: _forged(w, audience="https://broker.test/exchange/v1"), 401),
        (lambda w: _forged(w, iss="https://evil.example"), 401),
        (lambda w: officer_token(w["app"], None), 403),
        (lambda w: officer_token(w["app"], uuid.uuid4()), 403),
        (lambda w: officer_token(w["app"], "not-a-uuid"), 403),
        (lambda w: _forged(w, agency="tax"), 403),
        (lambda w: _forged(w, cnf={"jkt": "0ZcOCORZNYy-DWpqq30jZyJGHTN0d2HglBV3uiguA4I"}), 401),
        (
            lambda w: officer_token(w["app"], make_officer(w["app"], roles=("caseworker",))),
            403,
        ),
        (
            lambda w: officer_token(w["app"], make_officer(w["app"], status="disabled")),
            403,
        ),
    ],
    ids=[
        "none",
        "garbage",
        "wrong-scope",
        "expired",
        "wrong-audience",
        "wrong-issuer",
        "no-officer",
        "unknown-officer",
        "malformed-officer",
        "other-agency",
        "dpop-bound",
        "not-an-auditor",
        "disabled-officer",
    ],
)
def test_only_an_auditor_gets_in(world, make_token, status):
    token = make_token(world)
    headers = {} if token is None else bearer(token)
    for path in ("/audit/v1/events", "/audit/v1/stats", "/audit/v1/events/export"):
        response = world["app"].test_client().get(path, headers=headers)
        assert response.status_code == status, (path, response.json)
        assert response.mimetype == "application/problem+json"
        if status == 401:
            assert response.headers["WWW-Authenticate"].startswith("Bearer")


@pytest.mark.parametrize("alg", ["none", "HS256"])
def test_tokens_signed_with_a_forbidden_algorithm_are_refused(world, alg):
    encoded_header, encoded_claims, _ = world["token"].split(".")
    header = json.loads(base64.urlsafe_b64decode(encoded_header + "=="))
    claims = json.loads(base64.urlsafe_b64decode(encoded_claims + "=="))
    header["alg"] = alg
    if alg == "none":
        forged = (
            base64.urlsafe_b64encode(json.dumps(header).encode()).decode().rstrip("=")
            + "."
            + base64.urlsafe_b64encode(json.dumps(claims).encode()).decode().rstrip("=")
            + "."
        )
    else:
        forged = jwt.encode(header, claims, OctKey.import_key(b"s" * 32), algorithms=["HS256"])
    response = get(world, "/audit/v1/events", token=forged)
    assert response.status_code == 401


def test_a_revoked_role_takes_effect_at_once(world):
    from identity.models import OfficerRole

    assert get(world, "/audit/v1/events").status_code == 200
    with world["app"].extensions["casebroker.db"].session() as session:
        session.delete(session.get(OfficerRole, (world["officer"], "auditor")))
    assert get(world, "/audit/v1/events").status_code == 403


def test_checkpoint_and_proofs_need_no_token(world):
    client = world["app"].test_client()
    assert client.get("/audit/v1/checkpoint").status_code == 200
    assert client.get("/audit/v1/proofs/inclusion?index=0").status_code == 200


def test_a_dpop_bound_auditor_token_needs_its_proof(world):
    from broker.agency_client import DPoPProver, authorization_headers

    prover = DPoPProver()
    token = _forged(world, cnf={"jkt": prover.thumbprint})
    url = world["app"].config["ISSUER"] + "/audit/v1/events"
    headers = authorization_headers(token, "GET", url, prover)
    client = world["app"].test_client()
    assert client.get("/audit/v1/events", headers=headers).status_code == 200
    replayed = client.get("/audit/v1/events", headers=headers)
    assert replayed.status_code == 401 and "used before" in replayed.json["detail"]
    stranger = authorization_headers(token, "GET", url, DPoPProver())
    assert client.get("/audit/v1/events", headers=stranger).status_code == 401
