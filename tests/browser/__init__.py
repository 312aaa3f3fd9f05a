"""Browser testing kit: the app served on a free localhost port, Debian's Chromium driven by
Playwright, and axe-core accessibility checks. Import the fixtures into a test module with
``from browser.fixtures import chromium, live_server, browser_page  # noqa: F401``."""
