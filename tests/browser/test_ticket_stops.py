"""A stop order through the ticket in a real browser: the type choice opens the stop price,
the preview says what it holds while it waits, and it shows pending among open orders."""

import pytest
from playwright.sync_api import expect

from .conftest import PRICE

pytestmark = pytest.mark.browser


def test_a_trader_places_a_stop_limit_through_the_ticket(trader_page):
    page = trader_page("/markets/QTX-USD/")
    ticket = page.locator("#ticket")
    stop_price = ticket.get_by_label("Stop price")
    expect(stop_price).to_be_hidden()  # a limit order has no stop price

    ticket.get_by_label("Stop market", exact=True).check()
    expect(stop_price).to_be_visible()
    expect(ticket.get_by_label(PRICE)).to_be_disabled()
    expect(ticket.get_by_label("Time in force")).to_have_value("IOC")
    expect(ticket.get_by_label("Post only")).to_be_disabled()

    ticket.get_by_label("Stop limit", exact=True).check()
    expect(ticket.get_by_label(PRICE)).to_be_enabled()
    stop_price.fill("9000.00")  # far above any price this market has seen: it waits
    ticket.get_by_label(PRICE).fill("9001.00")
    ticket.get_by_label("Quantity").fill("0.05")
    expect(page.locator("#ticket-preview")).to_contain_text("until a trade at or above 9,000.00")
    ticket.locator("#ticket-submit").click()

    expect(page.locator("#notice")).to_contain_text("is pending until a trade reaches 9000")
    row = page.locator("#open-orders tbody tr", has_text="9,001.00")
    expect(row).to_contain_text("pending, stop 9,000.00")
