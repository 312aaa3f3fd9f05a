"""The login, second-factor and consent pages in Chromium: keyboard only, without JavaScript,
axe-core clean, in English and French."""

from __future__ import annotations

from urllib.parse import parse_qs, urlsplit

import pyotp
import pytest
from browser.fixtures import browser_page, check_accessibility, chromium, live_server  # noqa: F401
from oidc_helpers import CITIZEN_PASSWORD, OFFICER_PASSWORD, RelyingParty, seed
from playwright.sync_api import Page, expect

from identity.accounts import enable_totp, new_recovery_codes
from identity.models import Account

TEXT = {
    "en": {"login": "Log in", "allow": "Allow", "continue": "Continue", "lang": "en-GB"},
    "fr": {"login": "Se connecter", "allow": "Autoriser", "continue": "Continuer", "lang": "fr-FR"},
}


@pytest.fixture
def site(live_server):  # noqa: F811
    server = live_server()
    world = seed(server.app, redirect_uris=[callback(server)])
    return server, world


def callback(server) -> str:
    """The RP's redirect URI: a path of the live server itself (it answers 404, which is
    fine: the browser has reached it, and the test reads the URL)."""
    return server.url + "/rp/callback"


def tab_to(page: Page, selector: str, limit: int = 25) -> None:
    """Press Tab until ``selector`` has focus: proves it is reachable by keyboard."""
    target = page.locator(selector)
    for _ in range(limit):
        page.keyboard.press("Tab")
        if target.evaluate("el => el === document.activeElement"):
            return
    raise AssertionError(f"{selector} is not reachable with Tab")


def start_flow(server, world, page: Page) -> RelyingParty:
    rp = RelyingParty(
        server.app.test_client(),
        "rp",
        world.keys["rp"],
        redirect_uri=callback(server),
        issuer=server.url,
    )
    pushed = rp.push(rp.authorization_params())
    assert pushed.status_code == 201
    page.goto(server.url + rp.authorize_url(pushed.get_json()["request_uri"]))
    return rp


def no_violations(page: Page, name: str, folder) -> None:
    violations = check_accessibility(page, name, folder)
    assert violations == [], violations


@pytest.mark.parametrize("lang", ["en", "fr"])
def test_code_flow_by_keyboard_without_javascript(site, chromium, tmp_path, lang):  # noqa: F811
    server, world = site
    context = chromium.new_context(locale=TEXT[lang]["lang"], java_script_enabled=False)
    page = context.new_page()
    try:
        start_flow(server, world, page)
        expect(page.locator("h1")).to_have_text(TEXT[lang]["login"])
        assert page.locator("html").get_attribute("lang") == lang
        tab_to(page, "#username")
        page.keyboard.type("citizen")
        page.keyboard.press("Tab")
        page.keyboard.type(CITIZEN_PASSWORD)
        with page.expect_navigation():
            page.keyboard.press("Enter")
        expect(page.locator("button[value=allow]")).to_be_visible()
        assert "Social Case System" in page.locator("h1").inner_text()
        tab_to(page, "button[value=allow]")
        expect(page.locator("button[value=allow]")).to_have_text(TEXT[lang]["allow"])
        page.keyboard.press("Enter")
        page.wait_for_url(callback(server) + "?**")
        query = parse_qs(urlsplit(page.url).query)
        assert "code" in query and query["iss"] == [server.url]
    finally:
        context.close()


@pytest.mark.parametrize("lang", ["en", "fr"])
def test_pages_are_axe_clean(site, browser_page, tmp_path, lang):  # noqa: F811
    server, world = site
    page = browser_page(TEXT[lang]["lang"])
    start_flow(server, world, page)
    no_violations(page, f"login-{lang}", tmp_path)
    page.fill("#username", "citizen")
    page.fill("#password", "wrong")
    page.click("button[type=submit]")
    expect(page.locator(".error-summary")).to_be_visible()
    no_violations(page, f"login-error-{lang}", tmp_path)
    page.fill("#password", CITIZEN_PASSWORD)
    page.click("button[type=submit]")
    expect(page.locator("button[value=allow]")).to_be_visible()
    no_violations(page, f"consent-{lang}", tmp_path)
    page.goto(server.url + "/account")
    no_violations(page, f"account-{lang}", tmp_path)
    page.goto(server.url + "/account/mfa")
    no_violations(page, f"mfa-setup-{lang}", tmp_path)
    page.goto(server.url + "/authorize?client_id=nobody")
    no_violations(page, f"error-{lang}", tmp_path)


@pytest.mark.parametrize("lang", ["en", "fr"])
def test_second_factor_page(site, browser_page, tmp_path, lang):  # noqa: F811
    server, world = site
    secret = pyotp.random_base32()
    kek = server.app.config["KEY_ENCRYPTION_KEY_BYTES"]
    with server.app.extensions["casebroker.db"].session() as session:
        account = session.get(Account, world.officer_id)
        enable_totp(session, kek, account, secret, 0)
        new_recovery_codes(session, account)
    page = browser_page(TEXT[lang]["lang"])
    page.goto(server.url + "/login")
    page.fill("#username", "officer")
    page.fill("#password", OFFICER_PASSWORD)
    page.click("button[type=submit]")
    expect(page.locator("#code")).to_be_visible()
    no_violations(page, f"mfa-{lang}", tmp_path)
    page.fill("#code", "000000")
    with page.expect_navigation():
        page.locator("#code").press("Enter")
    expect(page.locator(".error-summary")).to_be_visible()
    no_violations(page, f"mfa-error-{lang}", tmp_path)
    page.fill("#code", pyotp.TOTP(secret).now())
    with page.expect_navigation():
        page.locator("#code").press("Enter")
    page.wait_for_url(server.url + "/account")
    assert "Claire Martin" in page.content()


def test_language_switch_keeps_the_page(site, browser_page):  # noqa: F811
    server, _world = site
    page = browser_page("en-GB")
    page.goto(server.url + "/login?next=/account")
    page.get_by_role("link", name="Français").click()
    expect(page.locator("h1")).to_have_text("Se connecter")
    assert "next=%2Faccount" in page.url or "next=/account" in page.url
    page.goto(server.url + "/login")
    expect(page.locator("h1")).to_have_text("Se connecter")  # the choice is remembered
