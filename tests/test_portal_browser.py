"""The citizen portal in Chromium, without JavaScript: log in through the broker's provider,
approve a request (the agency's lookup is then permitted), withdraw it (the very next lookup
is denied), and find both accesses on "who looked at my data". axe-core checks every portal
page in English and French; a screenshot of each is saved."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from browser.fixtures import browser_page, check_accessibility, chromium, live_server  # noqa: F401
from playwright.sync_api import Page, expect
from portal_world import PASSWORD, make_portal_world

PAGES = {
    "home": "/portal/",
    "agencies": "/portal/agencies",
    "requests": "/portal/requests",
    "consents": "/portal/consents",
    "history": "/portal/history",
    "notifications": "/portal/notifications",
}


def screenshot(page: Page, name: str, folder: Path) -> None:
    """Without JavaScript axe cannot run; the same pages are checked again with it below."""
    folder.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(folder / f"nojs-{name}.png"), full_page=True)


def assert_accessible(page: Page, name: str, folder: Path) -> None:
    violations = check_accessibility(page, name, folder)
    assert violations == [], (name, violations)


def vehicle_status(pw) -> str:
    ref, _ = pw.people["alice"]
    body = {"person": ref, "categories": ["vehicle"], "purpose": "benefit-eligibility"}
    response = pw.cw.lookup(body)
    assert response.status_code == 200, response.json
    for result in response.json["results"]:
        if (result["provider"], result["category"]) == ("vehicle-registry", "vehicle"):
            return result["status"]
    raise AssertionError("no vehicle result")


@pytest.fixture
def site(live_server):  # noqa: F811
    server = live_server()
    pw = make_portal_world(server.app)
    return server, pw


def test_citizen_approves_then_withdraws_and_sees_both_accesses(site, chromium, tmp_path):  # noqa: F811
    server, pw = site
    consent_id = pw.request_consent("alice")
    shots = tmp_path / "portal"
    context = chromium.new_context(locale="en-GB", java_script_enabled=False)
    try:
        page = context.new_page()
        page.set_default_timeout(15000)
        page.goto(server.url + "/portal/")
        screenshot(page, "en-welcome", shots)
        page.get_by_role("link", name="Log in").click()
        page.get_by_label("Username").fill("alice")
        page.get_by_label("Password").fill(PASSWORD)
        page.get_by_label("Password").press("Enter")
        if "/authorize" in page.url:
            page.get_by_role("button", name="Allow", exact=True).click()
        expect(page).to_have_url(server.url + "/portal/")
        _, person_id = pw.people["alice"]
        assert str(person_id) not in page.content()
        expect(page.get_by_role("status")).to_contain_text("1 request is waiting")

        page.get_by_role("link", name="Requests", exact=True).first.click()
        screenshot(page, "en-requests-waiting", shots)
        page.get_by_role("link", name=re.compile("^Approve the request of")).click()
        expect(page.get_by_role("heading", level=1)).to_have_text("Approve the request")
        screenshot(page, "en-approve", shots)
        button = page.get_by_role("button", name="Yes, approve")
        for _ in range(30):
            page.keyboard.press("Tab")
            if button.evaluate("el => el === document.activeElement"):
                break
        else:
            raise AssertionError("the approve button is not reachable by keyboard")
        page.keyboard.press("Enter")
        expect(page).to_have_url(re.compile(rf"/portal/consents/{consent_id}\?done=approved$"))
        expect(page.get_by_role("status")).to_contain_text("You approved the request")
        screenshot(page, "en-consent-active", shots)
        assert vehicle_status(pw) in ("ok", "not_found")

        page.get_by_role("link", name="Withdraw this consent").click()
        screenshot(page, "en-revoke", shots)
        page.get_by_role("button", name="Yes, withdraw").click()
        expect(page.get_by_role("status")).to_contain_text("You withdrew your consent")
        screenshot(page, "en-consent-revoked", shots)
        assert vehicle_status(pw) == "denied"

        page.goto(server.url + "/portal/history?agency=social-services")
        rows = page.locator("tbody tr")
        expect(rows.filter(has_text="Allowed").first).to_be_visible()
        expect(rows.filter(has_text="Refused").first).to_be_visible()
        page.get_by_label("Outcome").select_option("permit")
        page.get_by_role("button", name="Show").click()
        expect(page.locator("tbody tr").filter(has_text="Refused")).to_have_count(0)
        screenshot(page, "en-history-filtered", shots)

        state = context.storage_state()
    finally:
        context.close()
    second = pw.request_consent("alice", days=10)
    context = chromium.new_context(locale="en-GB", storage_state=state)
    try:
        page = context.new_page()
        page.set_default_timeout(15000)
        page.goto(f"{server.url}/portal/requests/{second}/approve?lang=fr")
        assert_accessible(page, "fr-approve", shots)
        page.goto(f"{server.url}/portal/requests/{second}/decline?lang=en")
        assert_accessible(page, "en-decline", shots)
        page.goto(f"{server.url}/portal/requests/{second}/approve?lang=en")
        page.get_by_role("button", name="Yes, approve").click()
        for language in ("en", "fr"):
            page.goto(f"{server.url}/portal/consents/{second}/revoke?lang={language}")
            assert_accessible(page, f"{language}-revoke", shots)
            for name, path in PAGES.items():
                page.goto(f"{server.url}{path}?lang={language}")
                expect(page.locator("html")).to_have_attribute("lang", language)
                assert_accessible(page, f"{language}-{name}", shots)
            page.goto(f"{server.url}/portal/consents/{consent_id}?lang={language}")
            assert_accessible(page, f"{language}-consent", shots)
            page.goto(f"{server.url}/portal/consents/00000000-0000-0000-0000-000000000000")
            assert_accessible(page, f"{language}-not-found", shots)
        page.goto(f"{server.url}/portal/history?from=nonsense&lang=fr")
        expect(page.get_by_role("alert")).to_contain_text("année-mois-jour")
        assert_accessible(page, "fr-history-error", shots)
    finally:
        context.close()
