"""Browser fixtures: one live server per test session, Debian's Chromium through Playwright.

Skipped only when /usr/bin/chromium is missing (CI installs it). Tests act through the
browser and HTTP only; this process never touches the server's database.
"""

import itertools
import os
import re
from pathlib import Path

import pytest

from .server import LiveServer

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
# The ticket's limit price field by its label ("Price USD"), not its "Stop price USD".
PRICE = re.compile(r"^Price")
DEMO_PASSWORD = "demo-pass-2026"  # marketdata/management/commands/seed_demo.py
_names = itertools.count(1)


def pytest_collection_modifyitems(config, items):
    if CHROMIUM.exists():
        return
    skip = pytest.mark.skip(reason=f"{CHROMIUM} is missing: apt-get install chromium")
    for item in items:
        if "browser" in item.keywords:
            item.add_marker(skip)


@pytest.fixture(scope="session")
def qt_server():
    with LiveServer() as server:
        yield server


@pytest.fixture(scope="session")
def live_server_url(qt_server):
    return qt_server.url


@pytest.fixture(scope="module")
def browser():
    # Module scope: Playwright's sync API keeps an event loop on this thread while it runs,
    # and Django refuses database calls from a thread with a running loop; tests after
    # these must not inherit it.
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        yield browser
        browser.close()


@pytest.fixture
def new_context(browser, live_server_url):
    """Open a browser context (a separate visitor); closed after the test."""
    contexts = []

    def open_context(**options):
        options.setdefault("base_url", live_server_url)
        options.setdefault("viewport", {"width": 1366, "height": 900})
        context = browser.new_context(**options)
        context.set_default_timeout(10_000)
        contexts.append(context)
        return context

    yield open_context
    for context in contexts:
        context.close()


def log_in(page, username, password=DEMO_PASSWORD, next_path="/"):
    page.goto(f"/accounts/login/?next={next_path}")
    page.get_by_label("Username").fill(username)
    page.get_by_label("Password").fill(password)
    page.get_by_role("button", name="Log in").click()
    page.wait_for_url(f"**{next_path}")


@pytest.fixture
def trader_page(new_context):
    """A page signed in as a new trader (registered through the form): a clean slate."""

    def open_page(path="/", **context_options):
        context = new_context(**context_options)
        page = context.new_page()
        username = f"trader{os.getpid()}x{next(_names)}"
        register(page, username)
        if path != "/":
            page.goto(path)
        page.username = username
        return page

    return open_page


def register(page, username, password="Tr4ding-in-the-browser"):
    page.goto("/accounts/register/")
    page.get_by_label("Username").fill(username)
    page.get_by_label("Email").fill(f"{username}@example.com")
    page.get_by_label("Password", exact=True).fill(password)
    page.get_by_label("Password confirmation").fill(password)
    page.get_by_role("button", name="Register").click()
    page.wait_for_url("**/")
