"""Open cases: registering, closing and importing them, and lookups that need one."""

from __future__ import annotations

import json
import threading
import uuid
from datetime import UTC, date, datetime, timedelta

import pytest
from lookup_world import by_provider, make_world
from sqlalchemy import func, select, text

from audit.models import AuditEvent
from broker.cases.importer import ImportFileError, import_cases, open_text
from broker.cases.models import Case
from broker.cases.service import Actor, CaseRegistry, close_ended
from broker.cli import cli
from consent.models import Notification
from consent.notifications import collect_break_glass
from identity.models import IdentityLink, Officer


def today():
    """Read when a test runs, not at collection: a run may cross midnight."""
    return datetime.now(UTC).date()


@pytest.fixture
def world(app):
    """The demo seeded small, with only the demo's own cases (on part of the persons)."""
    return make_world(app, every_case=False)


def session_of(world):
    return world.app.extensions["casebroker.db"].sessionmaker()


def uncased(world, agency="social-services"):
    """A person the agency has no case on, as the agency names them."""
    with session_of(world) as session:
        cased = select(Case.person_id).where(Case.agency_id == agency)
        link = session.scalars(
            select(IdentityLink)
            .where(IdentityLink.agency_id == agency, IdentityLink.person_id.not_in(cased))
            .order_by(IdentityLink.value)
        ).first()
        return {"scheme": link.scheme, "value": link.value}


def case_body(who, reference="C-1", **overrides):
    body = {
        "reference": reference,
        "person": who,
        "capacity": "applicant",
        "purposes": ["benefit-eligibility"],
        "starts_on": (today() - timedelta(days=10)).isoformat(),
    }
    body.update(overrides)
    return body


def post_case(world, body, agency="social-services", token=None):
    token = token or world.token(agency, scope="cases")
    return world.call("POST", "/exchange/v1/cases", token, json=body)


def income(world, person, **extra):
    body = {"person": person, "categories": ["income"], "purpose": "benefit-eligibility"}
    body.update(extra)
    return world.lookup(body)


def events(world, kind):
    with session_of(world) as session:
        rows = session.scalars(
            select(AuditEvent.record).where(AuditEvent.kind == kind).order_by(AuditEvent.seq)
        )
        return [json.loads(r) for r in rows]


def test_a_lookup_without_a_case_is_denied_with_a_reason_that_says_so(world):
    person = uncased(world)
    result = by_provider(income(world, person).json)[("tax", "income")]
    assert result["status"] == "denied"
    assert "no open case" in result["reason"]
    assert "records" not in result
    decision = events(world, "lookup.decision")[-1]
    assert decision["decision"] == "deny"
    assert decision["without_case"] is True
    assert "forbid-without-open-case" in decision["policies"]


def test_registering_a_case_makes_the_next_lookup_lawful(world):
    person = uncased(world)
    response = post_case(world, case_body(person, teams=["north"]))
    assert response.status_code == 201, response.json
    assert response.headers["Location"].endswith("/exchange/v1/cases/C-1")
    assert response.json["person"] == person
    assert response.json["status"] == "open"
    result = by_provider(income(world, person).json)[("tax", "income")]
    assert result["status"] == "ok"
    decision = events(world, "lookup.decision")[-1]
    assert decision["cases"] == ["C-1"]
    assert decision["capacities"] == ["applicant"]
    assert "without_case" not in decision
    registered = events(world, "case.registered")[-1]
    assert registered["case"] == "C-1"
    assert registered["requester"] == "social-services"
    assert registered["purposes"] == ["benefit-eligibility"]


def test_a_case_counts_only_for_its_purposes_and_period(world):
    person = uncased(world)
    assert (
        post_case(world, case_body(person, "C-other", purposes=["child-protection"])).status_code
        == 201
    )
    future = (today() + timedelta(days=3)).isoformat()
    assert post_case(world, case_body(person, "C-later", starts_on=future)).status_code == 201
    assert by_provider(income(world, person).json)[("tax", "income")]["status"] == "denied"


def test_closing_a_case_denies_the_very_next_lookup(world):
    person = uncased(world)
    post_case(world, case_body(person))
    assert by_provider(income(world, person).json)[("tax", "income")]["status"] == "ok"
    token = world.token("social-services", scope="cases")
    closed = world.call(
        "POST", "/exchange/v1/cases/C-1/close", token, json={"reason": "benefit decided"}
    )
    assert closed.status_code == 200
    assert closed.json["status"] == "closed"
    assert by_provider(income(world, person).json)[("tax", "income")]["status"] == "denied"
    again = world.call("POST", "/exchange/v1/cases/C-1/close", token)
    assert again.status_code == 409
    assert again.content_type == "application/problem+json"
    assert events(world, "case.closed")[-1]["reason"] == "benefit decided"


def test_a_case_closed_while_lookups_run_stops_the_next_one(world, make_app):
    """Two app instances on one database: one closes, the other's next lookup is denied."""
    person = uncased(world)
    post_case(world, case_body(person))
    other = make_world(make_app(DATABASE_URL=world.app.config["DATABASE_URL"]), every_case=False)
    token = other.token("social-services")
    stop = threading.Event()
    progress = threading.Condition()
    outcomes: list[tuple[float, str]] = []
    failed: list[BaseException] = []
    closed_at: list[float] = []

    def keep_looking() -> None:
        try:
            while not stop.is_set():
                started = datetime.now(UTC).timestamp()
                response = other.lookup(
                    {"person": person, "categories": ["income"], "purpose": "benefit-eligibility"},
                    token=token,
                )
                status = by_provider(response.json)[("tax", "income")]["status"]
                with progress:
                    outcomes.append((started, status))
                    progress.notify_all()
        except BaseException as exc:  # reported by the main thread
            failed.append(exc)
        finally:
            with progress:
                stop.set()
                progress.notify_all()

    def wait_for(enough) -> None:
        """However slow the machine: wait for the lookups themselves, not for a fixed time."""
        with progress:
            progress.wait_for(lambda: stop.is_set() or enough(), timeout=600)
        assert not failed, failed

    thread = threading.Thread(target=keep_looking)
    thread.start()
    try:
        wait_for(lambda: outcomes)
        with session_of(world) as session:
            CaseRegistry(session, Actor("social-services")).close("C-1")
            session.commit()
        closed_at.append(datetime.now(UTC).timestamp())
        wait_for(lambda: sum(1 for started, _ in outcomes if started > closed_at[0]) >= 3)
    finally:
        stop.set()
        thread.join()
    closed = closed_at[0]
    assert any(status == "ok" for _, status in outcomes)
    after = [status for started, status in outcomes if started > closed]
    assert after and all(status == "denied" for status in after)


def test_break_glass_without_a_case_is_permitted_and_flagged_for_review(world):
    person = uncased(world)
    response = world.lookup(
        {
            "person": person,
            "categories": ["health.summary"],
            "purpose": "child-protection",
            "break_glass": True,
            "justification": "Child admitted to A&E, allergies unknown",
        }
    )
    result = by_provider(response.json)[("health", "health.summary")]
    assert result["status"] == "ok"
    decision = events(world, "lookup.decision")[-1]
    assert decision["break_glass"] is True
    assert decision["without_case"] is True
    assert decision["review"] is True
    with session_of(world) as session:
        assert collect_break_glass(session) >= 1
        session.commit()
        notified = session.scalars(
            select(Notification.person_id).where(
                Notification.person_id == uuid.UUID(decision["person"])
            )
        ).all()
    assert notified, "the citizen is told of the break-glass access"


def test_a_justification_alone_does_not_replace_a_case(world):
    person = uncased(world)
    response = world.lookup(
        {
            "person": person,
            "categories": ["health.summary"],
            "purpose": "child-protection",
            "justification": "Worried about the child",
        }
    )
    assert by_provider(response.json)[("health", "health.summary")]["status"] == "denied"


def test_officer_assignment_is_a_fact_for_the_policies(world):
    person = uncased(world)
    with session_of(world) as session:
        officer = session.scalar(select(Officer.id).where(Officer.agency_id == "social-services"))
    body = case_body(person, officers=[str(officer)])
    assert post_case(world, body).json["officers"] == [str(officer)]
    with session_of(world) as session:
        person_id = session.scalar(
            select(IdentityLink.person_id).where(IdentityLink.value == person["value"])
        )
        from broker.cases.service import case_facts

        now = datetime.now(UTC)
        facts = case_facts(
            session, "social-services", person_id, "benefit-eligibility", str(officer), now
        )
        assert facts.officer_assigned and facts.references == ("C-1",)
        other = case_facts(
            session, "social-services", person_id, "benefit-eligibility", str(uuid.uuid4()), now
        )
        assert other.open_case and not other.officer_assigned


@pytest.mark.parametrize(
    ("overrides", "status", "fragment"),
    [
        ({"person": {"scheme": "client-no", "value": "SS-NOBODY"}}, 422, "no person"),
        ({"person": {"scheme": "tin", "value": "x' OR '1'='1"}}, 422, "no person"),
        ({"capacity": "landlord"}, 422, "capacity"),
        ({"purposes": ["snooping"]}, 422, "purpose"),
        ({"purposes": []}, 422, "purposes"),
        ({"ends_on": "2020-01-01", "starts_on": "2019-01-01"}, 422, "ended"),
        ({"ends_on": "2020-01-01", "starts_on": "2021-01-01"}, 422, "ends before"),
        ({"starts_on": "yesterday"}, 422, "date"),
        ({"officers": [str(uuid.uuid4())]}, 422, "officer"),
        ({"teams": [" padded"]}, 422, "team"),
        ({"reference": "x" * 129}, 422, "reference"),
        ({"reference": "line\nbreak"}, 422, "reference"),
        ({"surprise": 1}, 422, "surprise"),
    ],
)
def test_bad_registrations_get_clear_problems_and_change_nothing(
    world, overrides, status, fragment
):
    person = uncased(world)
    response = post_case(world, case_body(person, **overrides))
    assert response.status_code == status, response.json
    assert response.content_type == "application/problem+json"
    assert fragment in json.dumps(response.json)
    with session_of(world) as session:
        assert (
            session.scalar(select(func.count()).select_from(Case).where(Case.reference == "C-1"))
            == 0
        )


def test_a_reference_is_registered_once(world):
    person = uncased(world)
    assert post_case(world, case_body(person)).status_code == 201
    duplicate = post_case(world, case_body(person))
    assert duplicate.status_code == 409
    assert len([e for e in events(world, "case.registered") if e["case"] == "C-1"]) == 1


def test_an_agency_sees_and_closes_only_its_own_cases(world):
    person = uncased(world)
    post_case(world, case_body(person))
    tax = world.token("tax", scope="cases")
    assert world.call("GET", "/exchange/v1/cases/C-1", tax).status_code == 404
    assert world.call("POST", "/exchange/v1/cases/C-1/close", tax).status_code == 404
    listed = world.call("GET", "/exchange/v1/cases?status=open", tax).json["cases"]
    assert all(c["reference"] != "C-1" for c in listed)
    own = world.token("social-services", scope="cases")
    got = world.call("GET", "/exchange/v1/cases/C-1", own)
    assert got.status_code == 200 and got.json["person"] == person


def test_the_case_api_needs_the_cases_scope(world):
    person = uncased(world)
    response = post_case(world, case_body(person), token=world.token("social-services"))
    assert response.status_code == 403
    assert "cases" in response.json["detail"]
    missing = world.app.test_client().post("/exchange/v1/cases", json=case_body(person))
    assert missing.status_code == 401


def test_listing_pages_with_a_cursor(world):
    token = world.token("social-services", scope="cases")
    seen, after = [], ""
    while True:
        page = world.call("GET", f"/exchange/v1/cases?after={after}", token).json
        seen += [c["reference"] for c in page["cases"]]
        if not page["next_cursor"]:
            break
        after = page["next_cursor"]
    assert seen == sorted(seen) and len(seen) == len(set(seen)) > 0
    assert world.call("GET", "/exchange/v1/cases?status=maybe", token).status_code == 400


def test_cases_past_their_end_stop_counting_and_are_closed_by_the_sweep(world):
    person = uncased(world)
    post_case(world, case_body(person, ends_on=today().isoformat()))
    assert by_provider(income(world, person).json)[("tax", "income")]["status"] == "ok"
    with session_of(world) as session:
        session.execute(
            text(
                "UPDATE case_registration SET ends_on = :d, starts_on = :d WHERE reference = 'C-1'"
            ),
            {"d": today() - timedelta(days=1)},
        )
        session.commit()
    assert by_provider(income(world, person).json)[("tax", "income")]["status"] == "denied"
    with session_of(world) as session:
        assert close_ended(session) >= 1
        assert session.scalar(select(Case.status).where(Case.reference == "C-1")) == "closed"
        assert close_ended(session) == 0
    assert events(world, "case.closed")[-1]["reason"] == "end date passed"


def csv_file(tmp_path, rows, header="reference,person,capacity,purposes,starts_on,ends_on,teams"):
    path = tmp_path / "cases.csv"
    path.write_text(header + "\n" + "\n".join(rows) + "\n", encoding="utf-8")
    return path


def test_import_keeps_valid_rows_and_reports_each_refused_one(world, tmp_path):
    person = uncased(world)
    who = f"{person['scheme']}:{person['value']}"
    path = csv_file(
        tmp_path,
        [
            f"IMP-1,{who},applicant,benefit-eligibility;child-protection,2025-01-01,,north",
            f"IMP-2,{who},landlord,benefit-eligibility,2025-01-01,,",
            "IMP-3,client-no:SS-NOBODY,applicant,benefit-eligibility,2025-01-01,,",
            f"IMP-4,{who},applicant,benefit-eligibility,01/02/2025,,",
            f"IMP-5,{who},applicant,benefit-eligibility,2020-01-01,2020-06-30,",
            f"IMP-1,{who},applicant,benefit-eligibility,2025-01-01,,",
            f"IMP-6,{who},applicant,benefit-eligibility,2025-01-01,,,extra-cell",
            f"IMP-7,{who},applicant,snooping,2025-01-01,,",
            f"IMP-8,{who},beneficiary,benefit-eligibility,2025-02-01,,",
        ],
    )
    with session_of(world) as session:
        report = import_cases(session, "social-services", open_text(path), batch=3)
    assert report.rows == 9
    assert report.registered == 2
    reasons = {r.line: r.reason for r in report.rejected}
    assert sorted(reasons) == [3, 4, 5, 6, 7, 8, 9]
    assert "capacity" in reasons[3]
    assert "no person" in reasons[4]
    assert "date" in reasons[5]
    assert "ended" in reasons[6]
    assert "already registered" in reasons[7]
    assert "more cells" in reasons[8]
    assert "purpose" in reasons[9]
    with session_of(world) as session:
        refs = set(session.scalars(select(Case.reference).where(Case.reference.like("IMP-%"))))
    assert refs == {"IMP-1", "IMP-8"}
    assert {e["case"] for e in events(world, "case.registered")} >= {"IMP-1", "IMP-8"}
    with session_of(world) as session:
        again = import_cases(session, "social-services", open_text(path))
    assert again.registered == 0


@pytest.mark.parametrize(
    ("content", "fragment"),
    [
        (b"", "empty"),
        (b"reference,person\nA,b:c\n", "missing column"),
        (b"reference,person,capacity,purposes,starts_on,colour\n", "unknown column"),
        (b"\xff\xfereference", "not UTF-8"),
        (
            b'reference,person,capacity,purposes,starts_on\n"unterminated,a:b,c,d,2025-01-01\n',
            "CSV",
        ),
    ],
)
def test_import_refuses_a_malformed_file_whole(world, tmp_path, content, fragment):
    path = tmp_path / "bad.csv"
    path.write_bytes(content)
    with pytest.raises(ImportFileError, match=fragment), session_of(world) as session:
        import_cases(session, "social-services", open_text(path))
    with session_of(world) as session:
        assert (
            session.scalar(select(func.count()).select_from(Case).where(Case.reference == "A")) == 0
        )


def test_import_command_reports_and_exits_non_zero_on_refused_rows(world, tmp_path):
    person = uncased(world)
    who = f"{person['scheme']}:{person['value']}"
    path = csv_file(
        tmp_path,
        [
            f"CLI-1,{who},applicant,benefit-eligibility,2025-01-01,,",
            f"CLI-2,{who},nobody,benefit-eligibility,2025-01-01,,",
        ],
    )
    rejects = tmp_path / "rejects.csv"
    runner = world.app.test_cli_runner()
    result = runner.invoke(
        cli,
        ["cases", "import", str(path), "--agency", "social-services", "--rejects", str(rejects)],
    )
    assert result.exit_code == 1, result.output
    assert "2 rows: 1 cases registered, 1 refused" in result.output
    assert "CLI-2" in rejects.read_text()
    unknown = runner.invoke(cli, ["cases", "import", str(path), "--agency", "nowhere"])
    assert unknown.exit_code != 0 and "unknown agency" in unknown.output


def test_the_demo_shows_a_permit_a_denial_for_lack_of_a_case_and_a_break_glass(world):
    citizen = next(x for x in world.seed.citizen_identifiers if x.agency_id == "social-services")
    permitted = income(world, {"scheme": citizen.scheme, "value": citizen.value})
    assert by_provider(permitted.json)[("tax", "income")]["status"] == "ok"
    without = world.seed.without_case
    person = {"scheme": without.scheme, "value": without.value}
    assert by_provider(income(world, person).json)[("tax", "income")]["status"] == "denied"
    glass = world.lookup(
        {
            "person": person,
            "categories": ["health.summary"],
            "purpose": "child-protection",
            "break_glass": True,
            "justification": "Child admitted to A&E, allergies unknown",
        }
    )
    assert by_provider(glass.json)[("health", "health.summary")]["status"] == "ok"


def test_case_rows_are_constrained_in_the_database(world):
    person = uncased(world)
    post_case(world, case_body(person))
    with session_of(world) as session, pytest.raises(Exception, match=r"(?i)check|constraint"):
        session.execute(
            text("UPDATE case_registration SET status = 'closed' WHERE reference = 'C-1'")
        )
        session.commit()


def test_dates_are_utc_calendar_days():
    from broker.cases.service import today

    late = datetime(2026, 3, 1, 23, 30, tzinfo=UTC)
    assert today(late) == date(2026, 3, 1)


def test_the_openapi_document_describes_the_case_api(client):
    document = client.get("/openapi.json").json
    assert {"post", "get"} <= set(document["paths"]["/exchange/v1/cases"])
    assert "CaseRequest" in document["components"]["schemas"]
    assert "/exchange/v1/cases/{reference}/close" in document["paths"]


def test_auditors_find_lookups_by_case_and_those_made_without_one(world):
    from audit_helpers import make_officer, officer_token

    person = uncased(world)
    income(world, person)
    post_case(world, case_body(person, "C-AUDIT"))
    income(world, person)
    token = officer_token(world.app, make_officer(world.app))
    client = world.app.test_client()
    headers = {"Authorization": f"Bearer {token}"}

    def records(**params):
        response = client.get("/audit/v1/events", query_string=params, headers=headers)
        assert response.status_code == 200, response.json
        return [e["record"] for e in response.json["events"]]

    by_case = records(case="C-AUDIT")
    assert {r["kind"] for r in by_case} == {"case.registered", "lookup.decision"}
    assert all(r.get("case") == "C-AUDIT" or "C-AUDIT" in r.get("cases", []) for r in by_case)
    without = records(without_case="true")
    assert without and all(r["without_case"] is True for r in without)
    # The auditor's own recorded searches name the flag in their filters: never a match.
    assert records(without_case="true") == without
    assert (
        client.get(
            "/audit/v1/events", query_string={"without_case": "maybe"}, headers=headers
        ).status_code
        == 422
    )
