"""Every page, as a visitor, a trader and an operator see it: no serious or critical axe-core
violation at 1440 and at 390 px wide, no horizontal scroll on a 390 px phone, and every
control reachable by Tab with a visible focus (tests/browser/accessibility.py says how).

One test per audience walks all of its pages and reports every problem at once.
"""

import re

import pytest
from playwright.sync_api import expect

from .accessibility import axe_violations, horizontal_overflow, keyboard_walk
from .conftest import log_in

TRADER_PASSWORD = "Tr4ding-in-the-browser"  # conftest.register
pytestmark = pytest.mark.browser

PUBLIC = ["/", "/markets/QTX-USD/", "/accounts/login/", "/accounts/register/", "/accounts/password/reset/"]
TRADER = [
    "/",
    "/markets/QTX-USD/",
    "/portfolio/",
    "/accounts/password/",
    "/accounts/two-factor/",
    "/accounts/two-factor/enrol/",
    "/accounts/api-keys/",
    "/accounts/sessions/",
]
# The admin signs in through the site's login page; past it, its own pages.
STAFF = ["/admin/", "/admin/orders/order/", "/admin/accounts/user/"]
WIDTHS = (1440, 390)


def audit(open_page, paths) -> list[str]:
    problems = []
    for width in WIDTHS:
        page = open_page(width)
        for path in paths:
            page.goto(path)
            page.wait_for_load_state("networkidle")
            where = f"{path} at {width} px"
            for violation in axe_violations(page):
                problems.append(
                    f"{where}: axe {violation['impact']} {violation['id']} ({violation['help']}): {violation['nodes']}"
                )
            if width == 390:
                overflow = horizontal_overflow(page)
                if overflow > 0:
                    problems.append(f"{where}: scrolls sideways by {overflow} px")
            else:
                missed, invisible = keyboard_walk(page)
                if missed:
                    problems.append(f"{where}: Tab never reaches {missed}")
                if invisible:
                    problems.append(f"{where}: no visible focus on {invisible}")
    return problems


def test_the_public_pages_pass_axe_fit_a_phone_and_work_from_the_keyboard(new_context):
    def open_page(width):
        return new_context(viewport={"width": width, "height": 900}).new_page()

    problems = audit(open_page, PUBLIC)
    assert not problems, "\n".join(problems)


def test_a_traders_pages_pass_axe_fit_a_phone_and_work_from_the_keyboard(trader_page):
    def open_page(width):
        page = trader_page("/", viewport={"width": width, "height": 900})
        with_an_open_order(page)
        return page

    problems = audit(open_page, TRADER)
    assert not problems, "\n".join(problems)


def with_an_open_order(page):
    """A resting bid far below the market, so the trader's tables have a row and a Cancel button."""
    login = page.request.post("/api/auth/login", data={"username": page.username, "password": TRADER_PASSWORD})
    headers = {"Authorization": f"Bearer {login.json()['access']}"}
    order = {"symbol": "QTX-USD", "side": "buy", "type": "limit", "price": "1.19", "quantity": "2"}
    assert page.request.post("/api/orders", data=order, headers=headers).status == 201


def test_the_admin_passes_axe_fits_a_phone_and_works_from_the_keyboard(new_context):
    def open_page(width):
        page = new_context(viewport={"width": width, "height": 900}).new_page()
        log_in(page, "operator", next_path="/admin/")
        return page

    problems = audit(open_page, STAFF)
    assert not problems, "\n".join(problems)


def test_the_market_pages_passing_states_pass_axe_too(trader_page):
    """What appears only for a moment: the amend dialog, a market order's confirmation, a toast."""
    page = trader_page("/markets/QTX-USD/")
    with_an_open_order(page)
    page.reload()
    problems = []

    page.locator("#open-orders tbody tr", has_text="1.19").get_by_role("link", name=re.compile("Amend order")).click()
    expect(page.locator("#amend-dialog")).to_be_visible()
    problems += [f"amend dialog: {v}" for v in axe_violations(page)]
    page.keyboard.press("Escape")
    expect(page.locator("#amend-dialog")).to_be_hidden()

    ticket = page.locator("#ticket")
    ticket.get_by_label("Sell", exact=True).check()
    ticket.get_by_label("Market", exact=True).check()
    ticket.get_by_label("Quantity").fill("0.5")
    ticket.get_by_label("Quantity").press("Enter")
    expect(ticket.get_by_role("button", name="Confirm sell")).to_be_focused()
    problems += [f"confirmation: {v}" for v in axe_violations(page)]
    ticket.get_by_role("button", name="Confirm sell").click()
    expect(page.locator(".toast").first).to_be_visible()
    problems += [f"toast: {v}" for v in axe_violations(page)]

    assert not problems, "\n".join(map(str, problems))
