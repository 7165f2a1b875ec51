"""The price band on the ticket in a real browser: shown before the trader submits, and an
order priced outside it refused in the ticket with the band's words.

The test server's markets have no band (tests/browser/server.py): an operator sets one on
QTX-USD in the admin for this test, and takes it off again after."""

import re
from decimal import Decimal

import pytest
from playwright.sync_api import expect

from .conftest import PRICE, log_in

pytestmark = pytest.mark.browser


def set_price_band(new_context, value: str) -> None:
    """The operator edits QTX-USD's price band in the admin ("" for none)."""
    page = new_context().new_page()
    log_in(page, "operator", next_path="/admin/marketdata/market/")
    page.get_by_role("link", name="QTX-USD").click()
    page.get_by_label("Price band").fill(value)
    page.get_by_role("button", name="Save", exact=True).click()
    # The console shows the change's effect first; the operator confirms it.
    page.get_by_role("button", name="Save these rules").click()
    expect(page.locator(".messagelist")).to_contain_text("was changed successfully")
    page.context.close()


@pytest.fixture
def banded_market(new_context):
    set_price_band(new_context, "0.10")
    yield
    set_price_band(new_context, "")


def test_the_ticket_shows_the_band_and_refuses_a_price_outside_it(banded_market, trader_page):
    page = trader_page("/markets/QTX-USD/")
    ticket = page.locator("#ticket")
    band = page.locator("#ticket-preview [data-price-band]")
    expect(page.locator("#ticket-preview")).to_contain_text("Price band")
    expect(band).to_have_text(re.compile(r"^[\d,.]+ - [\d,.]+ USD$"))
    low, high = (Decimal(bound.replace(",", "")) for bound in band.inner_text().removesuffix(" USD").split(" - "))
    assert low < high

    outside = f"{high * 2:.2f}"
    ticket.get_by_label(PRICE).fill(outside)
    ticket.get_by_label("Quantity").fill("0.10")
    ticket.locator("#ticket-submit").click()

    error = page.locator("#ticket-error-price")
    expect(error).to_contain_text("is outside the price band: it must be within")
    expect(error).to_contain_text(f"{low:.2f} and {high:.2f}")
    expect(ticket.get_by_label(PRICE)).to_have_value(outside)  # what she typed stays
