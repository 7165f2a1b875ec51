"""The trader's pages in a real browser (Debian's Chromium) against a real daphne server.

Every trader is new (registered through the form), so each test starts from the paper
grant and an empty order list. Prices are chosen per test so that no two tests' orders
meet in the shared books.
"""

import csv
import io
import re
import time
from pathlib import Path

import pytest
from playwright.sync_api import expect

from .conftest import PRICE, log_in

pytestmark = pytest.mark.browser


def place(page, *, side="buy", price=None, quantity, order_type="limit"):
    ticket = page.locator("#ticket")
    ticket.get_by_label(side.capitalize(), exact=True).check()
    ticket.get_by_label(order_type.capitalize(), exact=True).check()
    if price is not None:
        ticket.get_by_label(PRICE).fill(price)
    ticket.get_by_label("Quantity").fill(quantity)
    ticket.locator("#ticket-submit").click()


def open_order_row(page, price):
    return page.locator("#open-orders tbody tr", has_text=price)


def wait_live(page):
    expect(page.locator("[data-live-state]").first).to_have_attribute("data-live-state", "open")


def no_reload_marker(page):
    page.evaluate("window.__stillTheSamePage = true")


def assert_not_reloaded(page):
    assert page.evaluate("window.__stillTheSamePage === true"), "the page reloaded"


# --- Register and trade ------------------------------------------------------------------


def test_a_new_trader_registers_and_places_an_order_through_the_ticket(trader_page):
    page = trader_page("/markets/QTX-USD/")
    expect(page.locator(".who")).to_have_text(page.username)
    wait_live(page)
    no_reload_marker(page)
    ticket = page.locator("#ticket")
    expect(ticket.locator("[data-available]")).to_contain_text("100,000.00")

    ticket.get_by_label(PRICE).fill("61.25")
    ticket.get_by_label("Quantity").fill("2")
    # The estimate comes from the server as she types: 122.50 + 0.1% maker fee.
    expect(ticket.locator("[data-estimate-total]")).to_contain_text("122.62")
    expect(ticket.locator("[data-estimate-fee]")).to_contain_text("0.12")
    ticket.get_by_label("Quantity").press("Enter")  # the keyboard submits

    row = open_order_row(page, "61.25")
    expect(row).to_have_count(1)
    expect(row).to_contain_text("Buy")
    expect(page.locator("#notice")).to_contain_text("is open")
    expect(ticket.get_by_label("Quantity")).to_have_value("")  # the ticket is cleared
    assert_not_reloaded(page)


def test_the_ticket_works_from_the_keyboard_and_shows_the_engines_refusal(trader_page):
    page = trader_page("/markets/QTX-USD/")
    ticket = page.locator("#ticket")
    ticket.get_by_label("Buy", exact=True).focus()
    page.keyboard.press("ArrowRight")
    expect(ticket.get_by_label("Sell", exact=True)).to_be_checked()
    expect(ticket.locator("#ticket-submit")).to_have_text("Sell QTX", use_inner_text=True)
    expect(ticket.locator("[data-available]")).to_contain_text("QTX")
    page.keyboard.press("ArrowLeft")
    expect(ticket.locator("#ticket-submit")).to_have_text("Buy QTX", use_inner_text=True)

    ticket.get_by_label(PRICE).fill("61.257")
    ticket.get_by_label("Quantity").fill("1")

    expect(page.locator("#ticket-error-price")).to_have_text("price must be a multiple of the tick size 0.01.")
    expect(ticket.get_by_label(PRICE)).to_have_attribute("aria-invalid", "true")
    ticket.locator("#ticket-submit").click()
    expect(page.locator("#ticket-error-price")).to_have_text("price must be a multiple of the tick size 0.01.")
    expect(page.locator("#open-orders tbody tr.empty")).to_have_count(1)


def test_a_second_trader_sees_the_book_change_within_two_seconds(trader_page):
    seller = trader_page("/markets/ETH-USD/")
    watcher = trader_page("/markets/ETH-USD/")
    wait_live(seller)
    wait_live(watcher)
    no_reload_marker(watcher)
    level = watcher.locator('#book [data-side="sell"][data-price^="4321.09"]')
    expect(level).to_have_count(0)

    place(seller, side="sell", price="4321.09", quantity="0.5")
    expect(open_order_row(seller, "4,321.09")).to_have_count(1)
    started = time.monotonic()
    expect(level).to_have_count(1, timeout=2000)
    assert time.monotonic() - started < 2.0
    assert_not_reloaded(watcher)

    # The seller's own level is marked; the watcher's book is the same for everyone.
    marked = seller.locator('#book [data-side="sell"][data-price^="4321.09"]')
    expect(marked).to_have_css("box-shadow", re.compile(r"inset"))
    expect(level).not_to_have_css("box-shadow", re.compile(r"inset"))

    # A click on the level puts its price into the watcher's ticket.
    level.click()
    ticket = watcher.locator("#ticket")
    expect(ticket.get_by_label(PRICE)).to_have_value("4321.09")
    expect(ticket.get_by_label("Quantity")).to_be_focused()

    # The watcher takes it at market: a market order has no price and never rests.
    ticket.get_by_label("Market", exact=True).check()
    expect(ticket.get_by_label(PRICE)).to_be_disabled()
    expect(ticket.get_by_label("Time in force")).to_have_value("IOC")
    ticket.get_by_label("Quantity").fill("0.5")
    expect(ticket.locator("[data-estimate-total]")).to_contain_text("2,164.86")  # 2160.545 + 0.2% taker fee
    ticket.locator("#ticket-submit").click()
    # A market order asks once more, with what it would cost.
    expect(ticket.locator("[data-ticket-confirm]")).to_contain_text("Buy 0.500 ETH at market?")
    expect(ticket.get_by_role("button", name="Confirm buy")).to_be_focused()
    ticket.get_by_role("button", name="Confirm buy").click()
    expect(watcher.locator("#notice")).to_contain_text("0.5 filled, now filled.")
    expect(watcher.locator("#fills tbody tr", has_text="4,321.09")).to_have_count(1)
    # The seller's page follows by itself: the order is gone, the fill is there.
    expect(open_order_row(seller, "4,321.09")).to_have_count(0)
    expect(seller.locator("#fills tbody tr", has_text="4,321.09")).to_have_count(1)
    expect(level).to_have_count(0)
    assert_not_reloaded(watcher)


def test_a_page_reconnects_after_a_drop_and_catches_up(trader_page):
    seller = trader_page("/markets/BTC-USD/")
    watcher = trader_page("/markets/BTC-USD/")
    wait_live(watcher)
    no_reload_marker(watcher)

    # Drop the watcher's socket as a network failure would.
    watcher.evaluate("document.getElementById('live')['htmx-internal-data'].webSocket.socket.close()")
    expect(watcher.locator("[data-live-state]").first).to_have_attribute("data-live-state", "closed")
    place(seller, side="sell", price="98765.43", quantity="0.001")
    wait_live(watcher)

    expect(watcher.locator('#book [data-side="sell"][data-price^="98765.43"]')).to_have_count(1, timeout=5000)
    assert_not_reloaded(watcher)


def test_a_trader_cancels_an_order(trader_page):
    page = trader_page("/markets/QTX-USD/")
    place(page, price="52.10", quantity="1")
    row = open_order_row(page, "52.10")
    expect(row).to_have_count(1)

    row.get_by_role("button", name=re.compile("Cancel order")).click()

    expect(row).to_have_count(0)
    expect(page.locator("#notice")).to_contain_text("cancelled")
    expect(page.locator('#book [data-side="buy"][data-price^="52.1"]')).to_have_count(0)


def test_a_trader_amends_an_order(trader_page):
    page = trader_page("/markets/QTX-USD/")
    place(page, price="53.40", quantity="1")
    row = open_order_row(page, "53.40")
    expect(row).to_have_count(1)

    row.get_by_role("link", name=re.compile("Amend order")).click()
    dialog = page.locator("#amend-dialog")
    expect(dialog).to_be_visible()
    expect(dialog.get_by_label(PRICE)).to_be_focused()
    dialog.get_by_label(PRICE).fill("53.405")
    dialog.get_by_role("button", name="Save changes").click()
    expect(dialog.locator("#amend-error-price")).to_have_text("price must be a multiple of the tick size 0.01.")

    dialog.get_by_label(PRICE).fill("53.45")
    dialog.get_by_label("Quantity").fill("3")
    dialog.get_by_role("button", name="Save changes").click()

    expect(dialog).to_be_hidden()
    amended = open_order_row(page, "53.45")
    expect(amended).to_have_count(1)
    expect(amended).to_contain_text("3.00")
    expect(open_order_row(page, "53.40")).to_have_count(0)


# --- Portfolio ---------------------------------------------------------------------------


def test_the_portfolio_shows_balances_and_exports_the_ledger(trader_page):
    page = trader_page("/markets/QTX-USD/")
    place(page, price="51.00", quantity="1")
    expect(open_order_row(page, "51.00")).to_have_count(1)

    page.get_by_role("link", name="Portfolio").click()
    balances = page.locator("#balances")
    usd = balances.locator('tr[data-asset="USD"]')
    expect(usd).to_contain_text("99,948.898")  # 51 plus the 0.2% taker fee is held
    expect(usd).to_contain_text("51.102")
    expect(page.locator("#ledger tbody tr")).to_have_count(5)  # four grants and the hold

    page.locator(".filters select[name=status]").select_option("open")
    expect(page).to_have_url(re.compile(r"status=open"))
    expect(page.locator("#order-history tbody tr")).to_have_count(1)

    with page.expect_download() as download:
        page.get_by_role("link", name="Export CSV").click()
    rows = list(csv.DictReader(io.StringIO(Path(download.value.path()).read_text())))
    assert [row["kind"] for row in rows] == ["deposit"] * 4 + ["hold"]
    hold = rows[-1]
    assert (hold["asset"], hold["available_delta"], hold["held_delta"]) == ("USD", "-51.10200000", "51.10200000")


# --- Phones ------------------------------------------------------------------------------


def test_the_pages_fit_a_390_pixel_phone(trader_page):
    page = trader_page("/", viewport={"width": 390, "height": 844}, is_mobile=True, has_touch=True)
    for path in ["/", "/markets/QTX-USD/", "/portfolio/", "/accounts/login/"]:
        page.goto(path)
        page.wait_for_load_state("networkidle")
        scroll_width, inner_width = page.evaluate("[document.documentElement.scrollWidth, window.innerWidth]")
        assert scroll_width <= inner_width, f"{path}: {scroll_width} px wide in a {inner_width} px window"
    # The ticket is reachable and usable on the phone.
    page.goto("/markets/QTX-USD/")
    place(page, price="50.50", quantity="1")
    expect(open_order_row(page, "50.50")).to_have_count(1)


def test_the_chart_switches_interval_in_place(new_context):
    page = new_context().new_page()
    page.goto("/markets/QTX-USD/")
    wait_live(page)
    no_reload_marker(page)

    page.locator(".intervals").get_by_role("link", name="1h").click()

    expect(page.locator("#price-chart")).to_have_attribute("data-interval", "1h")
    expect(page.locator(".intervals [aria-current=true]")).to_have_text("1h")
    expect(page).to_have_url(re.compile(r"\?interval=1h$"))
    assert_not_reloaded(page)


# --- Guards ------------------------------------------------------------------------------


def test_private_pages_send_a_visitor_to_log_in(new_context):
    page = new_context().new_page()

    page.goto("/portfolio/")
    expect(page).to_have_url(re.compile(r"/accounts/login/\?next=/portfolio/$"))

    page.goto("/markets/QTX-USD/")
    expect(page.locator(".ticket-guest")).to_contain_text("Log in to trade QTX-USD")
    log_in(page, "alice", next_path="/portfolio/")
    expect(page.locator("h1")).to_have_text("Portfolio")


def test_a_post_without_the_csrf_token_is_refused(trader_page):
    page = trader_page("/markets/QTX-USD/")
    form = {"side": "buy", "type": "limit", "price": "50.00", "quantity": "1", "time_in_force": "GTC"}

    refused = page.request.post("/markets/QTX-USD/ticket/", form=form, headers={"Referer": page.url})
    assert refused.status == 403

    token = next(c["value"] for c in page.context.cookies() if c["name"] == "csrftoken")
    accepted = page.request.post(
        "/markets/QTX-USD/ticket/", form=form, headers={"X-CSRFToken": token, "HX-Request": "true", "Referer": page.url}
    )
    assert accepted.status == 200


def test_staff_see_the_admin_link(new_context):
    page = new_context().new_page()
    log_in(page, "operator")
    expect(page.get_by_role("link", name="Admin")).to_be_visible()


def test_an_idle_session_warns_and_can_be_kept(trader_page):
    page = trader_page("/")
    page.clock.install()
    page.goto("/portfolio/")
    dialog = page.locator("#session-warning")
    expect(dialog).to_be_hidden()

    page.clock.fast_forward("55:30")
    expect(dialog).to_be_visible()
    expect(dialog).to_contain_text("You will be signed out in")
    dialog.get_by_role("button", name="Stay signed in").click()
    expect(dialog).to_be_hidden()

    # An hour without activity: the page leaves for the login form (which, the server's
    # session being younger in real time, sends it straight back).
    no_reload_marker(page)
    # Awaited as a navigation (it times out if the page stays): a `wait_for_function` that
    # has to poll evaluates its text in the page, which the page's policy refuses.
    with page.expect_navigation():
        page.clock.fast_forward(61 * 60 * 1000)
    expect(page).to_have_url(re.compile(r"/portfolio/$"))
