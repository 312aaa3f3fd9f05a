"""The auditor's console in Chromium, without JavaScript: the demo auditor logs in through the
shared login, finds a real break-glass lookup, sees its inclusion proof checked against the
latest checkpoint and records a finding; the access then leaves the queue. axe-core checks
every console page in English and French; a screenshot of each is saved."""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path

import pytest
from audit_helpers import integrate
from browser.fixtures import check_accessibility, chromium, live_server  # noqa: F401
from lookup_world import make_world
from playwright.sync_api import Browser, Page, expect

AUDITOR = ("auditor", "auditor-demo-2026")


class Axe:
    """axe-core runs as script and the pages are walked with script off: each page is opened
    again in a script-enabled context holding the same login cookies (the pages carry no
    script, so they render the same)."""

    def __init__(self, browser: Browser, folder: Path) -> None:
        self.browser = browser
        self.folder = folder

    def check(
        self, page: Page, name: str, then: Callable[[Page], None] | None = None, url: str = ""
    ) -> None:
        context = self.browser.new_context(storage_state=page.context.storage_state())
        try:
            twin = context.new_page()
            twin.goto(url or page.url)
            if then:
                then(twin)
            violations = check_accessibility(twin, name, self.folder)
        finally:
            context.close()
        assert violations == [], (name, violations)


@pytest.fixture
def site(live_server):  # noqa: F811
    server = live_server()
    world = make_world(server.app, persons=6)
    body = {
        "person": world.identifier("health", 0),
        "purpose": "emergency-care",
        "categories": ["income", "address"],
        "justification": "patient unconscious in the emergency room",
        "break_glass": True,
    }
    response = world.lookup(body, agency="health")
    assert response.status_code == 200, response.json
    assert response.json["break_glass"] is True
    integrate(server.app)
    return server


def log_in(page: Page, url: str) -> None:
    page.goto(url + "/audit/console/")
    expect(page).to_have_url(re.compile(r"/login\?next="))
    page.get_by_label("Username").fill(AUDITOR[0])
    page.get_by_label("Password").fill(AUDITOR[1])
    page.get_by_label("Password").press("Enter")
    expect(page).to_have_url(url + "/audit/console/")


def submit_empty_finding(page: Page) -> None:
    page.get_by_role("button", name=re.compile("Record the finding|Enregistrer le constat")).click()


def test_auditor_reviews_a_break_glass_access(site, chromium, tmp_path):  # noqa: F811
    axe = Axe(chromium, tmp_path / "console")
    context = chromium.new_context(locale="en-GB", java_script_enabled=False)
    try:
        page = context.new_page()
        log_in(page, site.url)
        expect(page.get_by_role("heading", level=1)).to_have_text("Audit console")
        chart = page.get_by_role("img", name=re.compile("Break-glass lookups per day"))
        expect(chart).to_be_visible()
        axe.check(page, "en-overview")

        page.get_by_role("link", name="Search the log").click()
        page.get_by_label("Break-glass accesses only").check()
        page.get_by_label("Purpose", exact=True).select_option("emergency-care")
        page.get_by_role("button", name="Search", exact=True).click()
        results = page.get_by_role("table")
        expect(results).to_contain_text("break-glass")
        axe.check(page, "en-search")

        results.get_by_role("link", name=re.compile(r"^Event \d+$")).first.click()
        expect(page.get_by_role("status")).to_contain_text(
            re.compile(r"Verified against the checkpoint of size \d+")
        )
        expect(page.locator("main")).to_contain_text("patient unconscious in the emergency room")
        axe.check(page, "en-event")
        event_url = page.url

        submit_empty_finding(page)
        expect(page.get_by_role("alert")).to_contain_text("Choose an outcome.")
        axe.check(page, "en-finding-error", then=submit_empty_finding, url=event_url)

        page.get_by_label("Justified").check()
        page.get_by_label("What you found").fill("Emergency admission confirmed by the ward.")
        button = page.get_by_role("button", name="Record the finding")
        for _ in range(60):
            page.keyboard.press("Tab")
            if button.evaluate("el => el === document.activeElement"):
                break
        else:
            raise AssertionError("the finding button is not reachable by keyboard")
        page.keyboard.press("Enter")
        expect(page).to_have_url(re.compile(r"/audit/console/queue\?done=\d+"))
        expect(page.get_by_role("status").first).to_contain_text("was recorded")
        assert event_url.rsplit("/", 1)[1] == page.url.rsplit("=", 1)[1]
        reviewed = event_url.removeprefix(site.url)
        waiting = page.get_by_role("table", name=re.compile("Waiting for review"))
        expect(waiting.locator(f'a[href="{reviewed}"]')).to_have_count(0)
        findings = page.get_by_role("table", name=re.compile("latest findings"))
        expect(findings.locator(f'a[href="{reviewed}"]')).to_have_count(1)
        axe.check(page, "en-queue")

        for path, name in (
            ("/audit/console/queue", "fr-queue"),
            ("/audit/console/", "fr-overview"),
            ("/audit/console/search?break_glass=1", "fr-search"),
            (event_url.removeprefix(site.url), "fr-event"),
        ):
            axe.check(page, name, url=site.url + path + ("&" if "?" in path else "?") + "lang=fr")
        page.goto(event_url + "?lang=fr")
        expect(page.locator("main")).to_contain_text("Vérifié par rapport au point de contrôle")
    finally:
        context.close()


def test_other_officers_see_auditors_only(site, chromium, tmp_path):  # noqa: F811
    context = chromium.new_context(locale="fr-FR", java_script_enabled=False)
    try:
        page = context.new_page()
        page.goto(site.url + "/audit/console/queue?lang=fr")
        page.locator("#username").fill("officer")
        page.locator("#password").fill("officer-demo-2026")
        page.locator("#password").press("Enter")
        expect(page.get_by_role("heading", level=1)).to_have_text("Réservé aux auditeurs")
        Axe(chromium, tmp_path / "console").check(page, "fr-forbidden")
    finally:
        context.close()
