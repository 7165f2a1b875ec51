"""The price band on the ticket in a real browser: shown before the trader submits, and an
order priced outside it refused in the ticket with the band's words."""

import re
from decimal import Decimal

import pytest
from playwright.sync_api import expect

from .conftest import PRICE

pytestmark = pytest.mark.browser


def test_the_ticket_shows_the_band_and_refuses_a_price_outside_it(trader_page):
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
