"""The market page's trading desk in a real browser: the price chart, the depth chart and the
book's grouping, the ticket's quick sizes, confirmation and keys, and toasts of my fills.

Prices on QTX-USD stay inside bands no other browser test uses, so no two tests' orders
meet: bids at 41.xx, asks at 160.00, and the one trade at 66.60 (between the other
modules' bids, at most 61.25, and asks, at least 77.31).
"""

import re

import pytest
from playwright.sync_api import expect

from .conftest import PRICE
from .test_trading_pages import open_order_row, place, wait_live

pytestmark = pytest.mark.browser


def axis_canvases(page):
    """The chart's canvases by where they sit: the time axis along the bottom, the price axis at the right."""
    return page.evaluate(
        """() => {
            const root = document.getElementById("price-chart");
            const box = root.querySelector("[data-chart-canvas]").getBoundingClientRect();
            const found = {};
            root.querySelectorAll("canvas").forEach((canvas, index) => {
              const r = canvas.getBoundingClientRect();
              if (r.width > box.width * 0.6 && r.height < 40 && r.bottom >= box.bottom - 2) found.time = found.time ?? index;
              if (r.width < 120 && r.height > box.height * 0.6 && r.right >= box.right - 2) found.price = found.price ?? index;
            });
            return found;
        }"""
    )


def drawn(page, index) -> int:
    """Light pixels (text, lines) on one of the chart's canvases."""
    return page.evaluate(
        """(index) => {
            const canvas = document.getElementById("price-chart").querySelectorAll("canvas")[index];
            const data = canvas.getContext("2d").getImageData(0, 0, canvas.width, canvas.height).data;
            let lit = 0;
            for (let i = 0; i < data.length; i += 4) if (data[i] + data[i + 1] + data[i + 2] > 200) lit++;
            return lit;
        }""",
        index,
    )


def test_the_chart_has_time_and_price_axes_and_reads_out_the_bar_under_the_crosshair(new_context):
    page = new_context().new_page()
    page.goto("/markets/QTX-USD/")
    wait_live(page)
    expect(page.locator("[data-chart-empty]")).to_be_hidden()

    canvases = axis_canvases(page)
    assert "time" in canvases and "price" in canvases, canvases
    # Both axes carry labels: light text drawn on the dark panel.
    assert drawn(page, canvases["time"]) > 100
    assert drawn(page, canvases["price"]) > 100

    # The crosshair over a bar: the readout gives that bar's open, high, low, close and volume,
    # the very values the public candles API has for it.
    box = page.locator("[data-chart-canvas]").bounding_box()
    page.mouse.move(box["x"] + box["width"] * 0.5, box["y"] + box["height"] * 0.4)
    readout = page.locator("[data-readout]")
    expect(readout).to_have_attribute("data-time", re.compile(r"^\d+$"))
    time = int(readout.get_attribute("data-time"))
    candles = page.request.get("/api/markets/QTX-USD/candles?interval=1m&limit=300").json()
    bar = next(c for c in candles if c["start"].startswith(_iso(time)))

    def shown(value, places):
        return f"{float(value):,.{places}f}"

    expect(page.locator("[data-readout-open]")).to_have_text(shown(bar["open"], 2))
    expect(page.locator("[data-readout-high]")).to_have_text(shown(bar["high"], 2))
    expect(page.locator("[data-readout-low]")).to_have_text(shown(bar["low"], 2))
    expect(page.locator("[data-readout-close]")).to_have_text(shown(bar["close"], 2))
    expect(page.locator("[data-readout-volume]")).to_have_text(shown(bar["volume"], 2))
    expect(page.locator("[data-readout-time]")).to_have_text(_iso(time).replace("T", " "))

    # The keyboard reads the bars too: End is the newest, each Left one bar back.
    page.mouse.move(0, 0)
    chart = page.locator("[data-chart-canvas]")
    chart.focus()
    page.keyboard.press("End")
    newest = int(readout.get_attribute("data-time"))
    page.keyboard.press("ArrowLeft")
    page.keyboard.press("ArrowLeft")
    times = sorted(int(t) for t in page.evaluate("Object.keys(window.qtPriceChart.bars())"))
    assert times[-1] == newest
    expect(readout).to_have_attribute("data-time", str(times[-3]))
    expect(readout).to_have_attribute("aria-live", "polite")
    assert page.evaluate("getComputedStyle(document.activeElement).outlineStyle") != "none"

    # Another interval: hourly bars, their times on the hour.
    page.locator(".intervals").get_by_role("link", name="1h").click()
    expect(page.locator("#price-chart")).to_have_attribute("data-interval", "1h")
    page.mouse.move(box["x"] + box["width"] * 0.3, box["y"] + box["height"] * 0.4)
    page.mouse.move(box["x"] + box["width"] * 0.5, box["y"] + box["height"] * 0.4)
    expect(readout).to_have_attribute("data-time", re.compile(r"^\d+$"))
    assert int(readout.get_attribute("data-time")) % 3600 == 0


def _iso(seconds: int) -> str:
    from datetime import UTC, datetime

    return datetime.fromtimestamp(seconds, tz=UTC).strftime("%Y-%m-%dT%H:%M")


def test_the_depth_chart_draws_the_book_and_the_book_groups_by_tick_multiples(trader_page):
    page = trader_page("/markets/QTX-USD/")
    wait_live(page)
    depth = page.locator("#depth-chart")

    for side, price, quantity in (("buy", "41.10", "1"), ("buy", "41.60", "2"), ("sell", "160.00", "1.5")):
        place(page, side=side, price=price, quantity=quantity)
        expect(open_order_row(page, price)).to_have_count(1)
    # The public book has both sides of hers (it follows the private fragments by a moment).
    expect(page.locator('#book [data-side="buy"][data-price="41.60"]')).to_have_count(1)
    expect(page.locator('#book [data-side="sell"][data-price="160.00"]')).to_have_count(1)

    # What the depth chart drew is what the book holds, side by side.
    def book_total(side):
        sizes = page.locator(f'#book [data-side="{side}"] .qty').all_inner_texts()
        return round(sum(float(size.replace(",", "")) for size in sizes), 2)

    expect(depth).to_have_attribute("data-bid-total", re.compile(r"\d"))
    assert float(depth.get_attribute("data-bid-total")) == book_total("buy") >= 3
    assert float(depth.get_attribute("data-ask-total")) == book_total("sell") >= 1.5
    colours = depth.evaluate(
        """(canvas) => {
            const data = canvas.getContext("2d").getImageData(0, 0, canvas.width, canvas.height).data;
            let green = 0, red = 0;
            for (let i = 0; i < data.length; i += 4) {
              if (data[i + 1] > 150 && data[i] < 100) green++;
              if (data[i] > 200 && data[i + 1] < 120) red++;
            }
            return {green, red};
        }"""
    )
    assert colours["green"] > 50 and colours["red"] > 50, colours
    expect(page.locator("#depth-summary")).to_contain_text("Bids:")
    # Pointing past the lowest bid reads out all that is bid from there up.
    box = depth.bounding_box()
    page.mouse.move(box["x"] + 2, box["y"] + box["height"] / 2)
    expect(page.locator("#depth-readout")).to_contain_text(f"{book_total('buy'):.2f} QTX")
    expect(page.locator("#depth-readout")).to_contain_text("Bids from")

    # Grouped by 1.00 (100 ticks): 41.10 and 41.60 are one level at 41.00, sizes added exactly.
    page.get_by_label("Group").select_option("100")
    grouped = page.locator('#book [data-side="buy"][data-price="41.00"]')
    expect(grouped).to_have_count(1)
    expect(grouped.locator(".qty")).to_have_text("3.00")
    expect(page.locator('#book [data-side="sell"][data-price="160.00"]')).to_have_count(1)
    # ... and stays grouped as the book changes live.
    place(page, price="41.20", quantity="0.5")
    expect(open_order_row(page, "41.20")).to_have_count(1)
    expect(grouped.locator(".qty")).to_have_text("3.50")
    page.get_by_label("Group").select_option("1")
    expect(page.locator('#book [data-side="buy"][data-price="41.20"]')).to_have_count(1)


def test_the_ticket_sizes_estimates_and_answers_to_the_keyboard(trader_page):
    page = trader_page("/markets/QTX-USD/")
    wait_live(page)
    ticket = page.locator("#ticket")
    page.locator("h2#chart-title").click()  # somewhere that is not a field

    page.keyboard.press("s")
    expect(ticket.get_by_label("Sell", exact=True)).to_be_checked()
    expect(ticket.get_by_label("Sell", exact=True)).to_be_focused()
    expect(ticket.locator("#ticket-submit")).to_have_text("Sell QTX", use_inner_text=True)
    ticket.get_by_role("button", name="50%").click()
    expect(ticket.get_by_label("Quantity")).to_have_value("500")  # half of the 1,000 QTX grant

    page.keyboard.press("b")
    expect(ticket.get_by_label("Buy", exact=True)).to_be_checked()
    ticket.get_by_label(PRICE).fill("20.00")
    ticket.get_by_label("Quantity").press("b")  # a letter in a field stays a letter
    expect(ticket.get_by_label("Buy", exact=True)).to_be_checked()
    ticket.get_by_role("button", name="25%").click()
    # A quarter of 100,000 USD at 20.00, the 0.2% fee reserve held too: 1,247.50 QTX.
    expect(ticket.get_by_label("Quantity")).to_have_value("1247.5")
    expect(ticket.locator("[data-estimate-total]")).to_contain_text("24,974.95")  # 24,950 + 0.1% maker fee
    expect(ticket.locator("[data-estimate-fee]")).to_contain_text("24.95")
    ticket.get_by_role("button", name="100%").click()
    expect(ticket.get_by_label("Quantity")).to_have_value("4990.01")  # 99,800.20 + 199.61 reserve

    # A stop price is asked for stop orders only; a stop-limit is sized at its limit price.
    expect(ticket.get_by_label("Stop price")).to_be_hidden()
    ticket.get_by_label("Stop limit", exact=True).check()
    expect(ticket.get_by_label("Stop price")).to_be_visible()
    expect(ticket.get_by_label(PRICE)).to_be_enabled()
    ticket.get_by_role("button", name="100%").click()
    expect(ticket.get_by_label("Quantity")).to_have_value("4990.01")
    ticket.get_by_label("Limit", exact=True).check()
    expect(ticket.get_by_label("Stop price")).to_be_hidden()

    # The quick sizes are reachable with Tab, and show their focus.
    ticket.get_by_role("button", name="50%").focus()
    page.keyboard.press("Tab")
    expect(ticket.get_by_role("button", name="75%")).to_be_focused()
    assert page.evaluate("getComputedStyle(document.activeElement).outlineStyle") != "none"


def test_a_fill_made_by_another_traders_market_order_is_a_toast_on_every_page_i_have_open(trader_page):
    seller = trader_page("/markets/QTX-USD/")
    wait_live(seller)
    place(seller, side="sell", price="66.60", quantity="1")
    expect(open_order_row(seller, "66.60")).to_have_count(1)
    # The seller has two more pages open: the portfolio (a live page of its own) and an
    # account page, which has no live parts and opens the private socket alone.
    other_page = seller.context.new_page()
    other_page.goto("/portfolio/")
    wait_live(other_page)
    account_page = seller.context.new_page()
    # Marked on the document and awaited as an attribute: a `wait_for_function` that has to
    # poll evaluates its text in the page, which the page's policy (no 'unsafe-eval') refuses.
    account_page.add_init_script(
        "document.addEventListener('htmx:wsOpen', () => { document.documentElement.dataset.live = 'open'; })"
    )
    account_page.goto("/accounts/sessions/")
    expect(account_page.locator("html")).to_have_attribute("data-live", "open")
    assert account_page.locator("#private-live").get_attribute("ws-connect") == "/ws/live/me/"

    buyer = trader_page("/markets/QTX-USD/")
    wait_live(buyer)
    ticket = buyer.locator("#ticket")
    ticket.get_by_label("Market", exact=True).check()
    ticket.get_by_label("Quantity").fill("1")
    expect(ticket.locator("[data-estimate-total]")).to_contain_text("66.73")
    ticket.get_by_label("Quantity").press("Enter")

    # A market order asks first; Escape takes the question back and nothing is placed.
    confirm = ticket.get_by_role("button", name="Confirm buy")
    expect(confirm).to_be_focused()
    expect(ticket.locator("[data-ticket-confirm]")).to_contain_text("Buy 1.00 QTX at market?")
    expect(ticket.locator("[data-ticket-confirm]")).to_contain_text("Est. cost 66.7332 USD, fee 0.1332 USD")
    buyer.keyboard.press("Escape")
    expect(ticket.locator("[data-ticket-confirm]")).to_have_count(0)
    expect(ticket.locator("#ticket-submit")).to_be_focused()
    expect(open_order_row(seller, "66.60")).to_have_count(1)

    ticket.locator("#ticket-submit").click()
    expect(confirm).to_be_focused()  # htmx has taken the new ticket in hand
    buyer.keyboard.press("Enter")
    expect(buyer.locator("#notice")).to_contain_text("1 filled, now filled.")

    for page in (seller, other_page, account_page):
        toast = page.locator("#toasts [data-toast]", has_text="Sold 1.00 QTX at 66.60")
        expect(toast).to_have_count(1, timeout=5000)
        expect(toast).to_contain_text("QTX-USD")
        expect(toast).to_contain_text("maker")
    assert seller.locator("#toasts").get_attribute("aria-live") == "polite"
    # The buyer hears of their own fill too.
    expect(buyer.locator("#toasts [data-toast]", has_text="Bought 1.00 QTX at 66.60")).to_have_count(1)
    # The trade reaches the chart live: its newest bar closes at the trade's price.
    expect(seller.locator("[data-readout-close]")).to_have_text("66.60", timeout=5000)
    # A toast can be dismissed, and leaves by itself otherwise.
    seller.locator("#toasts [data-dismiss-toast]").first.click()
    expect(seller.locator("#toasts [data-toast]")).to_have_count(0)
    expect(other_page.locator("#toasts [data-toast]")).to_have_count(0, timeout=12_000)
