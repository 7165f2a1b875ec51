"""A bracket through the ticket in a real browser, on a 390 px phone: the Bracket kind opens
its exits' fields, the open orders show the list as one row with its legs under it,
another trader fills the entry and the exits appear under it by themselves, and one click
cancels the list. axe finds nothing serious in the ticket or the grouped list."""

import json
import re
import urllib.request
from decimal import Decimal

import pytest
from playwright.sync_api import expect

from .accessibility import axe_violations, horizontal_overflow
from .conftest import PRICE
from .test_trading_pages import place, wait_live

pytestmark = pytest.mark.browser
TICK = Decimal("0.01")


def quiet_price(live_server_url, symbol) -> Decimal:
    """A buy price that crosses no ask and outbids every bid in the shared book: a sell at
    exactly this price then fills this bid before any other test's."""
    with urllib.request.urlopen(f"{live_server_url}/api/book/snapshot?symbol={symbol}&depth=1", timeout=10) as answer:
        book = json.loads(answer.read())
    best_bid = Decimal(book["bids"][0][0]) if book["bids"] else None
    best_ask = Decimal(book["asks"][0][0]) if book["asks"] else None
    if best_bid is not None:
        price = best_bid + TICK
    elif best_ask is not None:
        price = best_ask - 1
    else:
        price = Decimal("100")
    assert best_ask is None or price < best_ask, f"no room between {best_bid} and {best_ask}"
    return price.quantize(TICK)


def test_a_bracket_from_the_ticket_is_shown_as_one_list_and_cancelled_as_one(trader_page, live_server_url):
    entry = quiet_price(live_server_url, "QTX-USD")
    take_profit, stop_loss = entry + 5, entry - 5
    page = trader_page("/markets/QTX-USD/", viewport={"width": 390, "height": 844}, is_mobile=True, has_touch=True)
    wait_live(page)
    ticket = page.locator("#ticket")
    take_profit_field = ticket.get_by_label("Take-profit price")
    expect(take_profit_field).to_be_hidden()

    ticket.get_by_label("Bracket", exact=True).check()
    expect(take_profit_field).to_be_visible()
    expect(ticket.get_by_label("Iceberg display")).to_be_hidden()  # a limit order's iceberg, not a bracket's
    ticket.get_by_label(PRICE).fill(f"{entry}")
    ticket.get_by_label("Quantity").fill("1")
    take_profit_field.fill(f"{take_profit}")
    ticket.get_by_label("Stop-loss trigger").fill(f"{stop_loss}")
    expect(page.locator("#ticket-preview [data-list-summary]")).to_contain_text(
        f"a take-profit sell at {take_profit:,} and a stop-loss at {stop_loss:,}"
    )
    assert axe_violations(page) == []
    assert horizontal_overflow(page) == 0
    ticket.locator("#ticket-submit").click()

    expect(page.locator("#notice")).to_contain_text("its entry is open")
    heads = page.locator("#open-orders tr.list-head")
    legs = page.locator("#open-orders tr.leg")
    expect(heads).to_have_count(1)
    expect(heads).to_contain_text(f"when the entry fills: take-profit {take_profit:,}, stop-loss {stop_loss:,}")
    expect(legs).to_have_count(1)
    expect(legs).to_contain_text("Entry")
    # One Cancel for the list, none per leg.
    expect(page.locator("#open-orders").get_by_role("button", name=re.compile("^Cancel"))).to_have_count(1)

    seller = trader_page("/markets/QTX-USD/")
    place(seller, side="sell", price=f"{entry}", quantity="1")
    expect(seller.locator("#notice")).to_contain_text("1 filled, now filled.")

    # The buyer's page follows by itself: the entry filled, its exits stand under the list.
    expect(legs).to_have_count(2)
    expect(legs.filter(has_text="Take profit")).to_contain_text(f"{take_profit:,}")
    expect(legs.filter(has_text="Stop loss")).to_contain_text(f"pending, stop {stop_loss:,}")
    expect(heads).to_have_count(1)
    page.get_by_role("tab", name="Open orders").click()
    assert axe_violations(page) == []

    heads.get_by_role("button", name=re.compile("^Cancel list")).click()
    expect(page.locator("#notice")).to_contain_text("cancelled")
    expect(heads).to_have_count(0)
    expect(legs).to_have_count(0)
    expect(page.locator("#open-orders tbody tr.empty")).to_have_count(1)
