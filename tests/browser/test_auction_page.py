"""A call auction on the market page, in a real browser: the banner with its countdown and
indicative price and volume, the crossed book as it stands, and the uncross, live.

The test has a market of its own, AUC-USD, made through the server's own `manage.py shell`
(the server's database, never this process's), so no other browser test meets its state.
"""

import re

import pytest
from playwright.sync_api import expect

from .test_trading_pages import wait_live

pytestmark = pytest.mark.browser

SETUP = """
from datetime import timedelta
from decimal import Decimal as D
from django.utils import timezone
from accounts.models import Asset, User
from accounts.services import balance_deposit
from marketdata.models import Market
from marketdata.services import market_halt, market_resume
from orders.services import order_place
Asset.objects.get_or_create(code="AUC", defaults={"name": "Auction Token"})
market = Market.objects.create(symbol="AUC-USD", base_id="AUC", quote_id="USD", tick_size=D("0.01"),
    lot_size=D("0.01"), min_notional=D("1"), maker_fee=D("0.001"), taker_fee=D("0.002"), auction_seconds=600)
for name in ("maker1", "maker2"):
    balance_deposit(user=User.objects.get(username=name), asset="AUC", amount=D("100"), reason="auction test")
market_halt(market=market)
market_resume(market=market)
order_place(user=User.objects.get(username="maker1"), market="AUC-USD", side="sell", quantity=D("2"), price=D("100"))
order_place(user=User.objects.get(username="maker2"), market="AUC-USD", side="buy", quantity=D("1.5"), price=D("101.50"))
"""

END_NOW = """
from datetime import timedelta
from django.utils import timezone
from marketdata.models import Market
Market.objects.filter(symbol="AUC-USD").update(auction_ends_at=timezone.now() - timedelta(seconds=1))
"""


def test_the_market_page_shows_an_auction_and_its_uncross(qt_server, new_context):
    qt_server.manage("shell", "-c", SETUP)
    page = new_context().new_page()
    page.goto("/markets/AUC-USD/")
    wait_live(page)

    banner = page.locator("#market-status")
    expect(banner).to_be_visible()
    expect(banner).to_have_attribute("data-status", "auction")
    # 100: buys 1.5, sells 2 (sellers over); 101.50: buys 1.5, sells 2 (sellers over): the lower.
    expect(banner.locator("p").first).to_have_text(
        re.compile(r"^Call auction – ends in \d+ s, indicative 100\.00 × 1\.50\.$")
    )
    seconds = int(re.search(r"ends in (\d+) s", banner.inner_text()).group(1))
    assert 500 < seconds <= 600
    # The book as it stands: crossed, the bid above the ask.
    expect(page.locator('#book .level.buy[data-price="101.50"]')).to_be_visible()
    expect(page.locator('#book .level.sell[data-price="100.00"]')).to_be_visible()
    # The countdown ticks in the browser between changes.
    page.wait_for_timeout(2100)
    later = int(re.search(r"ends in (\d+) s", banner.inner_text()).group(1))
    assert later < seconds

    # The auction ends (the server's scheduler uncrosses it): the banner goes, the trade shows.
    qt_server.manage("shell", "-c", END_NOW)
    expect(banner).to_have_attribute("data-status", "trading", timeout=15_000)
    expect(banner).to_be_hidden()
    expect(page.locator("#tape .trade").first.locator(".price")).to_have_text("100.00", timeout=10_000)
    expect(page.locator('#book .level.buy[data-price="101.50"]')).to_have_count(0)
