"""Fixtures and helpers for browser tests (Playwright + axe-core), shared by every package.

``live_server(**config)`` serves a fresh app (on the test's database, see ``make_app``) with
werkzeug in a thread on 127.0.0.1 and a free port, its issuer set to that URL.
``chromium`` is one headless Chromium per test process, shared by every module that imports
it; ``browser_page(locale)`` opens a fresh context (no cookies) with that language.
``check_accessibility(page, name, tmp_path)`` runs axe-core (WCAG 2.0-2.2 A and AA rules plus
best practices), saves a full-page screenshot and returns the violations (empty when clean).
"""

from __future__ import annotations

import atexit
import contextlib
import os
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from axe_playwright_python.sync_playwright import Axe
from flask import Flask
from playwright.sync_api import Browser, Page, sync_playwright
from werkzeug.serving import BaseWSGIServer, make_server

CHROMIUM = os.environ.get("CASEBROKER_CHROMIUM", "/usr/bin/chromium")
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking"]
AXE_TAGS = ["wcag2a", "wcag2aa", "wcag21a", "wcag21aa", "wcag22aa", "best-practice"]


@dataclass
class LiveServer:
    url: str
    app: Flask
    server: BaseWSGIServer


@pytest.fixture
def live_server(make_app: Callable[..., Flask]) -> Iterator[Callable[..., LiveServer]]:
    servers: list[tuple[BaseWSGIServer, threading.Thread]] = []

    def start(**config: Any) -> LiveServer:
        holder: dict[str, Flask] = {}

        def dispatch(environ: dict[str, Any], start_response: Any) -> Any:
            return holder["app"](environ, start_response)

        server = make_server("127.0.0.1", 0, dispatch, threaded=True)
        url = f"http://127.0.0.1:{server.server_port}"
        app = make_app(ISSUER=url, **config)
        holder["app"] = app
        thread = threading.Thread(target=server.serve_forever, daemon=True)
        thread.start()
        servers.append((server, thread))
        return LiveServer(url, app, server)

    yield start
    for server, thread in servers:
        server.shutdown()
        thread.join(timeout=5)


_shared: dict[str, Any] = {}


def shared_browser() -> Browser:
    """One Playwright and one Chromium per test process, however many modules import the
    fixtures: each importing module gets its own fixture definition, and two Playwright sync
    instances cannot run at once."""
    if "browser" not in _shared:
        playwright = sync_playwright().start()
        _shared["playwright"] = playwright
        _shared["browser"] = playwright.chromium.launch(
            executable_path=CHROMIUM, args=CHROMIUM_ARGS
        )
        atexit.register(_stop_browser)
    return _shared["browser"]


def _stop_browser() -> None:
    browser, playwright = _shared.pop("browser", None), _shared.pop("playwright", None)
    with contextlib.suppress(Exception):
        if browser is not None:
            browser.close()
        if playwright is not None:
            playwright.stop()


@pytest.fixture(scope="session")
def chromium() -> Browser:
    return shared_browser()


@pytest.fixture
def browser_page(chromium: Browser) -> Iterator[Callable[..., Page]]:
    contexts = []

    def open_page(locale: str = "en-GB") -> Page:
        context = chromium.new_context(locale=locale, java_script_enabled=True)
        contexts.append(context)
        return context.new_page()

    yield open_page
    for context in contexts:
        context.close()


def check_accessibility(page: Page, name: str, folder: Path) -> list[dict[str, Any]]:
    """axe-core violations of the page as it is now; also saves ``<name>.png`` in ``folder``
    (and in ``CASEBROKER_SCREENSHOT_DIR`` when set, for people to look at)."""
    folder.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(folder / f"{name}.png"), full_page=True)
    extra = os.environ.get("CASEBROKER_SCREENSHOT_DIR")
    if extra:
        Path(extra).mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(Path(extra) / f"{name}.png"), full_page=True)
    options = {"runOnly": {"type": "tag", "values": AXE_TAGS}, "resultTypes": ["violations"]}
    results = Axe().run(page, options=options)
    return [
        {"id": v["id"], "impact": v.get("impact"), "nodes": [n["html"] for n in v["nodes"]]}
        for v in results.response["violations"]
    ]
