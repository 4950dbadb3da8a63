"""Playwright (sync API) driving Debian's chromium against pytest-django's live server.

Skipped with a reason when /usr/bin/chromium is missing, unless VISREC_REQUIRE_BROWSER=1
(CI), where a missing browser is a failure. Nothing is ever downloaded.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from tests.recommendations.conftest import small_catalog  # noqa: F401  (re-exported fixture)

CHROMIUM = Path("/usr/bin/chromium")
ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--no-first-run",
]


@pytest.fixture(scope="module")
def browser():
    if not CHROMIUM.exists():
        reason = f"{CHROMIUM} is missing (apt-get install chromium)"
        if os.environ.get("VISREC_REQUIRE_BROWSER") == "1":
            pytest.fail(f"browser tests are required (VISREC_REQUIRE_BROWSER=1) but {reason}")
        pytest.skip(f"browser tests skipped: {reason}")
    from playwright.sync_api import sync_playwright

    # Playwright's sync API runs an event loop in this thread while the browser is open;
    # the ORM calls tests make between browser steps are still plain synchronous code.
    previous = os.environ.get("DJANGO_ALLOW_ASYNC_UNSAFE")
    os.environ["DJANGO_ALLOW_ASYNC_UNSAFE"] = "true"
    try:
        with sync_playwright() as playwright:
            browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=ARGS)
            yield browser
            browser.close()
    finally:
        if previous is None:
            os.environ.pop("DJANGO_ALLOW_ASYNC_UNSAFE", None)
        else:
            os.environ["DJANGO_ALLOW_ASYNC_UNSAFE"] = previous


@pytest.fixture
def new_page(browser, live_server, settings):
    """``new_page()``: a page in a fresh browser context (its own cookies: another visitor)."""
    settings.ROOT_URLCONF = "tests.browser.urls"
    contexts = []

    def open_page():
        context = browser.new_context(viewport={"width": 1280, "height": 900})
        context.set_default_timeout(15_000)
        contexts.append(context)
        page = context.new_page()
        page.base_url = live_server.url
        return page

    yield open_page
    for context in contexts:
        context.close()


@pytest.fixture
def page(new_page):
    return new_page()
