"""Take the README's screenshots of the trader's pages against a seeded, lively demo.

    .venv/bin/python docs/screenshots/take.py

Starts a server of its own (tests/browser/server.py: a fresh database, migrated and
seeded: every market starts with a day of history), lets `simulate_market` trade for a
while, has alice trade through the order ticket and visit her account pages, and saves the
README's screenshots next to this file (SHOTS): each trader's page at 1440 px and on a
390 px phone, and the account's two-factor setup, API keys and sessions.
Needs Debian's Chromium (/usr/bin/chromium).
"""

import sys
from decimal import Decimal
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parents[1]))

from playwright.sync_api import expect, sync_playwright  # noqa: E402

from tests.browser.conftest import CHROMIUM, CHROMIUM_ARGS, DEMO_PASSWORD, PRICE  # noqa: E402
from tests.browser.server import LiveServer  # noqa: E402

# A ladder of resting quotes around the last price, so each book shows depth on both sides.
LADDER = """
import random
from decimal import ROUND_DOWN, Decimal
from accounts.models import User
from marketdata.models import Market, Trade
from orders.services import order_place
rng = random.Random(7)
makers = list(User.objects.filter(username__in=["maker1", "maker2"]))
for market in Market.objects.all():
    last = Trade.objects.filter(market=market).order_by("-id").values_list("price", flat=True).first()
    last = last or {"QTX-USD": Decimal(100), "BTC-USD": Decimal(60000), "ETH-USD": Decimal(3000)}[market.symbol]
    tick = market.tick_size
    step = max(tick, (last * Decimal("0.0006")) // tick * tick)
    for level in range(1, 11):
        for side, sign in (("buy", -1), ("sell", 1)):
            price = last + sign * step * (level + rng.randint(0, 1))
            notional = Decimal(rng.randint(300, 4000))
            quantity = (notional / price / market.lot_size).quantize(Decimal(1), rounding=ROUND_DOWN) * market.lot_size
            order_place(user=rng.choice(makers), market=market, side=side, price=price, quantity=quantity)
"""


SHOTS = [
    "overview", "market", "portfolio", "account-two-factor", "account-api-keys", "account-sessions",
    "overview-phone", "market-phone", "portfolio-phone", "account-phone",
]  # fmt: skip


def main():
    with LiveServer("screenshots") as server:
        server.manage("simulate_market", "--rate", "60", "--duration", "25", "--seed", "2026")
        server.manage("shell", "-c", LADDER)
        with sync_playwright() as playwright:
            browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
            desktop = browser.new_context(
                base_url=server.url, viewport={"width": 1440, "height": 960}, device_scale_factor=1
            )
            page = desktop.new_page()
            log_in(page, "alice")
            settle(page)
            bottom = page.locator("#live").bounding_box()
            page.screenshot(
                path=HERE / "overview.png",
                clip={"x": 0, "y": 0, "width": 1440, "height": bottom["y"] + bottom["height"] + 24},
            )

            trade_a_little(page)
            page.screenshot(path=HERE / "market.png")

            page.goto("/portfolio/")
            settle(page)
            page.screenshot(path=HERE / "portfolio.png", full_page=True)

            # The phone signs in on its own: the Sessions page then lists two browsers.
            phone = browser.new_context(
                base_url=server.url,
                viewport={"width": 390, "height": 844},
                is_mobile=True,
                has_touch=True,
                user_agent="Mozilla/5.0 (iPhone; CPU iPhone OS 18_0 like Mac OS X) AppleWebKit/605.1.15 Mobile/15E148 Safari/604.1",
            )
            mobile = phone.new_page()
            log_in(mobile, "alice")
            settle(mobile)
            mobile.screenshot(path=HERE / "overview-phone.png", full_page=True)
            mobile.goto("/markets/QTX-USD/")
            settle(mobile)
            mobile.screenshot(path=HERE / "market-phone.png", full_page=True)
            mobile.goto("/portfolio/")
            settle(mobile)
            mobile.screenshot(path=HERE / "portfolio-phone.png", full_page=True)
            mobile.goto("/accounts/sessions/")
            mobile.wait_for_load_state("networkidle")
            mobile.screenshot(path=HERE / "account-phone.png", full_page=True)

            page.goto("/accounts/two-factor/enrol/")
            page.wait_for_load_state("networkidle")
            page.screenshot(path=HERE / "account-two-factor.png")
            page.goto("/accounts/api-keys/")
            for name, trade in (("Portfolio reader", False), ("Market maker bot", True)):
                page.get_by_label("Name").fill(name)
                page.get_by_label("Allow trading").set_checked(trade)
                page.get_by_role("button", name="Create key").click()
                expect(page.locator("[data-new-key]")).to_be_visible()
            page.screenshot(path=HERE / "account-api-keys.png", full_page=True)
            page.goto("/accounts/sessions/")
            page.wait_for_load_state("networkidle")
            page.screenshot(path=HERE / "account-sessions.png")
            browser.close()
    for name in SHOTS:
        print(HERE / f"{name}.png")


def log_in(page, username):
    page.goto("/accounts/login/")
    page.get_by_label("Username").fill(username)
    page.get_by_label("Password").fill(DEMO_PASSWORD)
    page.get_by_role("button", name="Log in").click()
    page.wait_for_url("**/")


def trade_a_little(page):
    """A market buy that fills, then a resting bid and ask just off the touch."""
    page.goto("/markets/QTX-USD/")
    settle(page)
    ticket = page.locator("#ticket")
    best_bid = Decimal(page.locator('#book [data-side="buy"]').first.get_attribute("data-price"))
    best_ask = Decimal(page.locator('#book [data-side="sell"]').last.get_attribute("data-price"))
    orders = [
        ("Buy", "Market", None, "3", "IOC"),
        ("Buy", "Limit", f"{best_bid - Decimal('0.05')}", "4", "GTC"),
        ("Sell", "Limit", f"{best_ask + Decimal('0.07')}", "2.5", "GTC"),
    ]
    for side, kind, price, quantity, time_in_force in orders:
        ticket = page.locator("#ticket")
        ticket.get_by_label(side, exact=True).check()
        ticket.get_by_label(kind, exact=True).check()
        if price:
            ticket.get_by_label(PRICE).fill(price)
        ticket.get_by_label("Quantity").fill(quantity)
        ticket.get_by_label("Time in force").select_option(time_in_force)
        with page.expect_response(lambda response: response.url.endswith("/ticket/")):
            ticket.locator("#ticket-submit").click()
        if kind == "Market":  # a market order asks to be confirmed
            expect(page.locator("#ticket-confirm")).to_be_focused()
            with page.expect_response(lambda response: response.url.endswith("/ticket/")):
                page.locator("#ticket-confirm").click()
        expect(page.locator("#ticket").get_by_label("Quantity")).to_have_value("")
    # Leave the ticket showing an estimate.
    ticket = page.locator("#ticket")
    ticket.get_by_label("Buy", exact=True).check()
    ticket.get_by_label("Limit", exact=True).check()
    ticket.get_by_label(PRICE).fill(str(best_bid))
    ticket.get_by_label("Quantity").fill("1.5")
    expect(ticket.locator("[data-estimate-total]")).to_be_visible()
    page.locator("#notice [data-dismiss]").click()


def settle(page):
    page.wait_for_load_state("networkidle")
    expect(page.locator("[data-live-state]").first).to_have_attribute("data-live-state", "open")
    page.wait_for_timeout(600)


if __name__ == "__main__":
    main()
