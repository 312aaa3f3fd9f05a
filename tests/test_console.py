"""The auditor's console: who gets in, searches and views as audit events, proofs, the review
queue and findings, charts, the volume rule, bad input."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from audit_helpers import execute, integrate, run_cli, sessions
from babel.messages.mofile import read_mo
from babel.messages.pofile import read_po
from console_helpers import log_in, lookup_decisions, officer_login
from oidc_helpers import csrf_of
from sqlalchemy import select

import audit
from audit.console import charts, service
from audit.console.models import AuditFinding
from audit.models import AuditEvent

CONSOLE = "/audit/console"


@pytest.fixture
def auditor(app, client):
    officer = officer_login(app, "auditor1")
    log_in(client, "auditor1")
    return officer


def events_of(app, kind: str) -> list[dict]:
    with sessions(app) as session:
        rows = session.scalars(select(AuditEvent).where(AuditEvent.kind == kind))
        return [audit.parse_canonical(r.record) for r in rows]


def test_anyone_not_logged_in_is_sent_to_log_in(client):
    for path in ("/", "/search?kind=x", "/queue", "/events/0"):
        response = client.get(CONSOLE + path)
        assert response.status_code == 303
        assert response.location.startswith("/login?next=")
        assert "audit/console" in response.location


def test_officers_without_the_auditor_role_are_refused(app, client):
    officer_login(app, "worker", roles=("caseworker", "admin"))
    log_in(client, "worker")
    for path in ("/", "/search", "/queue", "/events/0"):
        response = client.get(CONSOLE + path)
        assert response.status_code == 403
        assert "Auditors only" in response.text
    assert client.post(CONSOLE + "/events/0/finding").status_code in (400, 403)
    assert events_of(app, "audit.search") == [] and events_of(app, "audit.view") == []


def test_a_disabled_auditor_is_refused(app, client, auditor):
    execute(app, "UPDATE officer SET status = 'disabled' WHERE id = :id", id=auditor.hex)
    if client.get(CONSOLE + "/").status_code != 403:
        # PostgreSQL keeps UUIDs natively: match the id as UUID text instead of hex.
        execute(app, "UPDATE officer SET status = 'disabled' WHERE id = :id", id=str(auditor))
    assert client.get(CONSOLE + "/").status_code == 403


def test_a_search_is_recorded_before_results_are_shown(app, client, auditor):
    glass = lookup_decisions(app, break_glass=True, review=True, justification="unconscious")
    plain = lookup_decisions(app, requester="tax", provider="vehicle-registry")
    response = client.get(CONSOLE + "/search", query_string={"agency": "health", "search": "1"})
    assert response.status_code == 200
    assert f'/events/{glass[0]}"' in response.text
    assert f'/events/{plain[0]}"' not in response.text
    assert response.headers["Cache-Control"] == "no-store"
    assert "default-src 'none'" in response.headers["Content-Security-Policy"]
    [recorded] = events_of(app, "audit.search")
    assert recorded["officer"] == str(auditor) and recorded["filters"] == {"agency": "health"}
    assert recorded["channel"] == "console"
    # The search saw the log as it was before its own event.
    assert "audit.search" not in response.text


def test_flags_narrow_the_search(app, client, auditor):
    [glass] = lookup_decisions(app, break_glass=True, review=True)
    [no_case] = lookup_decisions(app, without_case=True, review=True)
    [plain] = lookup_decisions(app)
    found = client.get(CONSOLE + "/search", query_string={"break_glass": "1"}).text
    assert f"/events/{glass}" in found
    assert f'/events/{no_case}"' not in found and f'/events/{plain}"' not in found
    found = client.get(CONSOLE + "/search", query_string={"without_case": "1"}).text
    assert f'/events/{no_case}"' in found and f'/events/{glass}"' not in found
    assert events_of(app, "audit.search")[0]["filters"] == {"break_glass": True}
    # The auditor's earlier searches hold the flag in their filters, and are no lookups.
    again = client.get(CONSOLE + "/search", query_string={"break_glass": "1"}).text
    assert again.count("/events/") == 1


def test_search_filters_and_pages(app, client, auditor):
    officer = uuid.uuid4()
    old = lookup_decisions(app, 3, when=datetime(2026, 1, 5, 12, tzinfo=UTC), officer=officer)
    new = lookup_decisions(app, 30, officer=officer, decision="deny", correlation="c-1")
    args = {"officer": str(officer), "decision": "deny", "correlation_id": "c-1"}
    first = client.get(CONSOLE + "/search", query_string=args)
    assert first.status_code == 200
    assert f'/events/{new[-1]}"' in first.text and f'/events/{new[0]}"' not in first.text
    assert "Older events" in first.text
    cursor = first.text.split("cursor=")[1].split("&")[0].split('"')[0]
    second = client.get(CONSOLE + "/search", query_string={**args, "cursor": cursor})
    assert f'/events/{new[0]}"' in second.text and "Older events" not in second.text
    dated = client.get(CONSOLE + "/search", query_string={"from": "2026-01-05", "to": "2026-01-05"})
    assert all(f'/events/{i}"' in dated.text for i in old)
    assert f'/events/{new[0]}"' not in dated.text


@pytest.mark.parametrize(
    "args",
    [
        {"from": "yesterday"},
        {"from": "2026-02-01", "to": "2026-01-01"},
        {"officer": "not-a-uuid"},
        {"decision": "maybe"},
        {"cursor": "forged"},
        {"unknown": "1"},
        {"kind": "x" * 300},
        {"break_glass": "yes"},
        {"person": "no-colon"},
        {"person": "nin:000"},
        {"client": "a\x00b"},
    ],
)
def test_bad_filters_get_a_clear_page_not_an_error(client, auditor, args):
    response = client.get(CONSOLE + "/search", query_string=args)
    assert response.status_code == 400
    assert "Check the filters" in response.text and 'role="alert"' in response.text


def test_injection_in_a_filter_is_only_text(app, client, auditor):
    lookup_decisions(app)
    for value in ("' OR 1=1 --", "%", "<script>alert(1)</script>"):
        response = client.get(CONSOLE + "/search", query_string={"kind": value, "search": "1"})
        assert response.status_code == 200 and "No event matches" in response.text
        assert "<script>alert" not in response.text


def test_event_page_checks_the_proof_against_the_latest_checkpoint(app, client, auditor):
    [seq] = lookup_decisions(app, break_glass=True, review=True, justification="unconscious")
    pending = client.get(f"{CONSOLE}/events/{seq}")
    assert pending.status_code == 200
    assert "Not yet integrated" in pending.text or "No checkpoint yet" in pending.text
    size = integrate(app)
    page = client.get(f"{CONSOLE}/events/{seq}")
    assert f"Verified against the checkpoint of size {size}" in page.text
    assert "unconscious" in page.text and "Record a finding" in page.text
    views = events_of(app, "audit.view")
    assert [v["event"] for v in views] == [seq, seq]
    assert all(v["officer"] == str(auditor) for v in views)


def test_a_changed_record_fails_its_check(app, client, auditor):
    [seq] = lookup_decisions(app, break_glass=True, review=True)
    integrate(app)
    execute(
        app,
        "UPDATE audit_event SET record = replace(record, 'emergency-care', 'emergency-carX') "
        "WHERE seq = :seq",
        seq=seq,
    )
    page = client.get(f"{CONSOLE}/events/{seq}")
    assert "The proof does not verify" in page.text
    assert "does not match its leaf hash" in page.text


def test_a_changed_leaf_fails_the_inclusion_proof(app, client, auditor):
    [seq] = lookup_decisions(app, 2, break_glass=True)[:1]
    integrate(app)
    execute(
        app,
        "UPDATE audit_tree_node SET hash = :h WHERE level = 0 AND idx = :i",
        h=b"\x01" * 32,
        i=seq + 1,
    )
    page = client.get(f"{CONSOLE}/events/{seq}")
    assert "The proof does not verify" in page.text


def test_unknown_events_are_not_found(client, auditor):
    assert client.get(CONSOLE + "/events/999999").status_code == 404
    assert client.get(CONSOLE + f"/events/{1 << 70}").status_code == 404
    assert client.get(CONSOLE + "/events/-1").status_code == 404


def post_finding(client, seq: int, csrf: bool = True, **form):
    data = dict(form)
    if csrf:
        data["csrf_token"] = csrf_of(client.get(f"{CONSOLE}/events/{seq}").text)
    return client.post(f"{CONSOLE}/events/{seq}/finding", data=data)


def test_a_finding_closes_the_queue_item_and_is_audited(app, client, auditor):
    [glass] = lookup_decisions(app, break_glass=True, review=True, justification="cardiac arrest")
    [flagged] = lookup_decisions(app, without_case=True, review=True)
    [plain] = lookup_decisions(app)
    [denied_glass] = lookup_decisions(app, break_glass=True, decision="deny")
    queue = client.get(CONSOLE + "/queue").text
    for seq in (glass, flagged, denied_glass):
        assert f'/events/{seq}"' in queue
    assert f'/events/{plain}"' not in queue and "3 accesses wait" in queue
    done = post_finding(client, glass, outcome="justified", note="Patient arrived unconscious.")
    assert done.status_code == 303 and done.location.endswith(f"/queue?done={glass}")
    queue = client.get(done.location).text
    assert f'/events/{glass}"' in queue  # in the findings table
    assert "2 accesses wait" in queue and "Patient arrived unconscious." in queue
    with sessions(app) as session:
        finding = session.get(AuditFinding, glass)
        assert finding.outcome == "justified" and finding.officer_id == auditor
    [recorded] = events_of(app, "audit.finding")
    assert recorded["event"] == glass and recorded["outcome"] == "justified"
    assert recorded["officer"] == str(auditor)
    with sessions(app) as session:
        assert session.get(AuditEvent, finding.finding_seq).kind == "audit.finding"
    page = client.get(f"{CONSOLE}/events/{glass}").text
    assert "Record a finding" not in page and "Patient arrived unconscious." in page


def test_findings_refuse_bad_input(app, client, auditor):
    [glass] = lookup_decisions(app, break_glass=True, review=True)
    [plain] = lookup_decisions(app)
    assert post_finding(client, glass, csrf=False, outcome="misuse", note="x").status_code == 400
    bad = post_finding(client, glass, outcome="fine", note="x")
    assert bad.status_code == 400 and "Choose an outcome." in bad.text
    empty = post_finding(client, glass, outcome="misuse", note="   ")
    assert empty.status_code == 400 and "Write what you found." in empty.text
    long = post_finding(client, glass, outcome="misuse", note="x" * 2001)
    assert long.status_code == 400 and "characters" in long.text
    control = post_finding(client, glass, outcome="misuse", note="a\x00b")
    assert control.status_code == 400
    other = post_finding(client, plain, outcome="misuse", note="not for review")
    assert other.status_code == 400 and "not a break-glass access" in other.text
    assert post_finding(client, 10**6, outcome="misuse", note="x").status_code == 404
    assert events_of(app, "audit.finding") == []
    assert post_finding(client, glass, outcome="misuse", note="Curiosity.").status_code == 303
    again = post_finding(client, glass, outcome="justified", note="Replayed.")
    assert again.status_code == 400 and "already" in again.text
    assert len(events_of(app, "audit.finding")) == 1


def test_two_auditors_cannot_both_close_an_item(app, make_app, auditor):
    [glass] = lookup_decisions(app, break_glass=True, review=True)
    other = make_app()
    with sessions(app) as one, sessions(other) as two:
        first = service.ConsoleAuditor(auditor, "oversight", "A")
        service.record_finding(one, first, glass, "misuse", "first", None)
        with pytest.raises(service.ConsoleError) as raised:
            service.record_finding(two, first, glass, "justified", "second", None)
    assert raised.value.code == "reviewed"
    assert len(events_of(app, "audit.finding")) == 1


def test_overview_shows_integrity_charts_and_is_recorded(app, client, auditor):
    lookup_decisions(app, 2, requester="tax")
    lookup_decisions(app, 1, requester="health", decision="deny")
    lookup_decisions(app, 1, break_glass=True, review=True)
    size = integrate(app)
    page = client.get(CONSOLE + "/")
    assert page.status_code == 200
    assert page.text.count('role="img"') == 3 and "<desc" in page.text
    assert f"{size} events, signed" in page.text and "valid" in page.text
    today = datetime.now(UTC).date().isoformat()
    row = page.text.split(f'<th scope="row">{today}</th>')[1].split("</tr>")[0]
    assert row.replace(" ", "") == "<td>2</td><td>2</td><td>1</td><td>1</td>".replace(" ", "")
    assert "has not been verified yet" in page.text
    [recorded] = events_of(app, "audit.stats")
    assert recorded["officer"] == str(auditor)


def test_overview_shows_the_last_verification(app, client, auditor):
    lookup_decisions(app, 3)
    integrate(app)
    assert run_cli(app, "verify").exit_code == 0
    page = client.get(CONSOLE + "/")
    assert "<strong>Passed</strong>" in page.text and "events recomputed" in page.text
    execute(app, "UPDATE audit_event SET record = 'x' WHERE seq = 1")
    assert run_cli(app, "verify").exit_code == 1
    page = client.get(CONSOLE + "/?lang=fr")
    assert "<strong>Échouée</strong>" in page.text and "event 1:" in page.text


def test_volume_is_flagged_against_the_officers_own_baseline(app):
    now = datetime.now(UTC)
    steady, quiet = uuid.uuid4(), uuid.uuid4()
    for days in range(1, 31):
        when = now - timedelta(days=days)
        for _ in range(8):
            lookup_decisions(app, officer=steady, when=when)
        if days % 10 == 0:
            lookup_decisions(app, officer=quiet, when=when)
    for _ in range(8):
        lookup_decisions(app, officer=steady, when=now)
    for n in range(6):
        # several decisions of one lookup count once
        lookup_decisions(app, 3, officer=quiet, when=now, correlation=f"q-{n}")
    with sessions(app) as session:
        flags = service.unusual_volume(session, now, upto=1 << 62)
    assert [f.officer for f in flags] == [str(quiet)]
    assert flags[0].today == 6 and flags[0].mean == pytest.approx(0.1)


def test_few_lookups_are_never_flagged(app):
    now = datetime.now(UTC)
    officer = uuid.uuid4()
    for n in range(service.MIN_FLAGGED - 1):
        lookup_decisions(app, officer=officer, when=now, correlation=f"c-{n}")
    with sessions(app) as session:
        assert service.unusual_volume(session, now, upto=1 << 62) == []


def test_charts_escape_their_labels():
    svg = charts.line_chart("c", "<b>t</b>", "d & e", ["<x>"], [charts.Line("<script>", [1])])
    assert "<b>" not in svg and "&lt;b&gt;" in svg and "&amp;" in svg and "<x>" not in svg
    bars = charts.bar_chart("b", "t", "d", ["a", "b"], [0, 7])
    assert bars.count("<rect") == 2 and 'role="img"' in bars


def test_french_pages(app, client, auditor):
    page = client.get(CONSOLE + "/queue?lang=fr")
    assert 'lang="fr"' in page.text and "File de revue" in page.text


def test_french_catalogue_is_complete_and_compiled():
    folder = Path(service.__file__).parent / "translations" / "fr" / "LC_MESSAGES"
    with open(folder / "messages.po", "rb") as po:
        catalogue = read_po(po)
    untranslated = [
        m.id
        for m in catalogue
        if m.id and not all(m.string if isinstance(m.string, tuple) else [m.string])
    ]
    assert untranslated == []
    with open(folder / "messages.mo", "rb") as mo:
        compiled = read_mo(mo)
    assert len(compiled) == len(catalogue)
