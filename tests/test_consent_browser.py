"""The printable receipt page in Chromium: axe-core clean, usable without JavaScript and by
keyboard, in both languages on one page."""

from __future__ import annotations

from datetime import timedelta

import pytest
from browser.fixtures import browser_page, check_accessibility, chromium, live_server  # noqa: F401
from consent_world import CITIZEN_HEADER, make_consent_world
from playwright.sync_api import expect

from consent import Terms


@pytest.fixture
def receipt_site(live_server):  # noqa: F811
    server = live_server()
    cw = make_consent_world(server.app)
    _, person_id = cw.person()
    with cw.sessionmaker()() as session:
        svc = cw.service(session)
        consent = svc.grant(
            person_id,
            Terms("social-services", "benefit-eligibility", ("vehicle", "income"), None),
            svc.now + timedelta(days=60),
        )
    return server, person_id, consent


@pytest.mark.parametrize("locale", ["en-GB", "fr-FR"])
def test_receipt_page_is_accessible_without_javascript(receipt_site, chromium, tmp_path, locale):  # noqa: F811
    server, person_id, consent = receipt_site
    context = chromium.new_context(
        locale=locale,
        java_script_enabled=False,
        extra_http_headers={CITIZEN_HEADER: str(person_id)},
    )
    try:
        page = context.new_page()
        response = page.goto(f"{server.url}/consent/v1/me/consents/{consent.id}/receipt.html")
        assert response is not None and response.status == 200
        expect(page.get_by_role("heading", level=1)).to_contain_text("Consent receipt")
        expect(page.locator("h1 [lang=fr]")).to_contain_text("Reçu de consentement")
        expect(page.get_by_role("cell", name="Social Services")).to_have_count(0)
        expect(page.locator("dd").first).to_have_text("Social Services")
        link = page.get_by_role("link", name="Download the signed receipt")
        for _ in range(10):
            page.keyboard.press("Tab")
            if link.evaluate("el => el === document.activeElement"):
                break
        else:
            raise AssertionError("the download link is not reachable by keyboard")
    finally:
        context.close()
    context = chromium.new_context(
        locale=locale, extra_http_headers={CITIZEN_HEADER: str(person_id)}
    )
    try:
        page = context.new_page()
        page.goto(f"{server.url}/consent/v1/me/consents/{consent.id}/receipt.html")
        violations = check_accessibility(page, f"consent-receipt-{locale}", tmp_path)
        assert violations == [], violations
    finally:
        context.close()
