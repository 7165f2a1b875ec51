"""The operators' console in a real browser, as an operator and as support: the dashboard
follows orders by itself, a trader is disabled from their page and their orders are gone,
a market is halted and resumed through an auction, support sees and cannot act, and the
console's pages pass axe at 1440 and 390 px and work from the keyboard.

The tests have a market of their own, CON-USD, and a trader of their own, made through the
server's own `manage.py shell`, so no other browser test meets their state.
"""

import re

import pytest
from playwright.sync_api import expect

from .accessibility import axe_violations, horizontal_overflow, keyboard_walk
from .conftest import log_in

pytestmark = pytest.mark.browser

SETUP = """
from decimal import Decimal as D
from django.contrib.auth.models import Group
from accounts.models import Asset, User
from accounts.services import balance_deposit
from marketdata.models import Market
Asset.objects.get_or_create(code="CON", defaults={"name": "Console Token"})
Market.objects.get_or_create(symbol="CON-USD", defaults=dict(base_id="CON", quote_id="USD", tick_size=D("0.01"),
    lot_size=D("0.01"), min_notional=D("1"), price_band=None, circuit_breaker=None, auction_seconds=600))
for name, group in (("con_ops", "operators"), ("con_support", "support")):
    staff, made = User.objects.get_or_create(username=name, defaults={"is_staff": True})
    if made:
        staff.set_password("demo-pass-2026")
        staff.save()
        staff.groups.add(Group.objects.get(name=group))
trader, made = User.objects.get_or_create(username="con_trader")
if made:
    trader.set_password("demo-pass-2026")
    trader.save()
    balance_deposit(user=trader, asset="USD", amount=D("100000"), reason="console test")
    balance_deposit(user=trader, asset="CON", amount=D("1000"), reason="console test")
print(trader.pk, Market.objects.get(symbol="CON-USD").pk)
"""

ORDERS = """
from decimal import Decimal as D
from accounts.models import User
from orders.services import order_place
trader = User.objects.get(username="con_trader")
for price in ("9.00", "9.10", "9.20"):
    order_place(user=trader, market="CON-USD", side="buy", quantity=D("1"), price=D(price))
order_place(user=trader, market="CON-USD", side="sell", quantity=D("1"), price=D("11"))
"""


@pytest.fixture(scope="module")
def ids(qt_server):
    trader_id, market_id = qt_server.manage("shell", "-c", SETUP).split()[-2:]
    return {"trader": trader_id, "market": market_id}


def signed_in(new_context, username, next_path="/admin/", width=1440):
    page = new_context(viewport={"width": width, "height": 900}).new_page()
    log_in(page, username, next_path=next_path)
    return page


def con_row(page):
    return page.locator('[data-testid="markets"] tr[data-symbol="CON-USD"]')


def test_the_dashboard_follows_orders_as_they_arrive(qt_server, new_context, ids):
    page = signed_in(new_context, "con_ops")
    expect(page).to_have_title(re.compile("QuantumTrades operations"))
    expect(page.get_by_role("link", name="Trading site")).to_be_visible()
    row = con_row(page)
    resting = int(row.locator('[data-testid="resting"]').inner_text())
    updated = page.get_by_test_id("updated").inner_text()

    qt_server.manage("shell", "-c", ORDERS)

    # No reload: the page asks for its figures again by itself.
    expect(row.locator('[data-testid="resting"]')).to_have_text(str(resting + 4), timeout=15_000)
    expect(page.get_by_test_id("updated")).not_to_have_text(updated)
    expect(row).to_contain_text("Trading")
    # Counted in the minute they arrived (this one, or the last if it turned meanwhile).
    counts = page.get_by_test_id("minutes").locator("tbody td:nth-child(2)").all_inner_texts()
    assert sum(int(count) for count in counts[:2] if count.isdigit()) >= 4


def test_an_operator_disables_a_trader_from_their_page(qt_server, new_context, ids):
    qt_server.manage("shell", "-c", ORDERS)
    page = signed_in(new_context, "con_ops", next_path=f"/admin/accounts/user/{ids['trader']}/trader/")
    expect(page.get_by_test_id("standing")).to_have_attribute("data-trading", "on")
    expect(page.get_by_test_id("open-orders").locator("tbody tr")).not_to_have_count(1)

    page.get_by_role("link", name="Disable trading").click()
    expect(page.locator(".console-explain")).to_contain_text("every open order and pending stop")
    page.get_by_label("Reason").fill("runaway algorithm, desk called")
    page.get_by_role("button", name="Confirm: disable trading").click()

    expect(page.locator(".messagelist")).to_contain_text("Trading disabled")
    expect(page.get_by_test_id("standing")).to_have_attribute("data-trading", "off")
    expect(page.get_by_test_id("open-orders").locator("tbody tr")).to_have_text(["None."])
    expect(page.get_by_test_id("audit")).to_contain_text("runaway algorithm, desk called")

    page.get_by_role("link", name="Enable trading").click()
    page.get_by_role("button", name="Confirm: enable trading").click()
    expect(page.get_by_test_id("standing")).to_have_attribute("data-trading", "on")


def test_an_operator_halts_a_market_and_resumes_it_through_an_auction(new_context, ids):
    page = signed_in(new_context, "con_ops", next_path=f"/admin/marketdata/market/{ids['market']}/change/")
    status = page.get_by_test_id("market-status")
    expect(status).to_have_text("Trading")

    page.get_by_role("link", name="Halt").click()
    page.get_by_label("Reason").fill("news pending")
    page.get_by_role("button", name="Confirm: halt CON-USD").click()
    expect(status).to_have_text("Halted")

    page.get_by_role("link", name="Resume through an auction").click()
    page.get_by_label("Reason").fill("news out")
    page.get_by_role("button", name="Confirm: resume CON-USD").click()
    expect(status).to_have_text("Auction")
    expect(page.locator(".messagelist")).to_contain_text("resumes through a call auction")

    page.goto("/admin/")
    expect(con_row(page)).to_contain_text(re.compile(r"Auction \d+ s left"))


def test_support_sees_everything_and_cannot_act(new_context, ids):
    page = signed_in(new_context, "con_support")
    expect(page.locator(".console-role")).to_have_text("Support")
    expect(page.get_by_role("button", name="Run reconcile now")).to_have_count(0)
    expect(con_row(page)).to_be_visible()

    page.goto(f"/admin/accounts/user/{ids['trader']}/trader/")
    expect(page.get_by_text("Your role sees this trader and takes no action.")).to_be_visible()
    expect(page.get_by_role("link", name="Disable trading")).to_have_count(0)
    refused = page.goto(f"/admin/accounts/user/{ids['trader']}/trader/disable/")
    assert refused.status == 403

    page.goto(f"/admin/marketdata/market/{ids['market']}/change/")
    expect(page.get_by_test_id("market-status")).to_be_visible()
    expect(page.get_by_role("link", name="Halt")).to_have_count(0)
    expect(page.locator('input[name="price_band"]')).to_have_count(0)


def test_the_console_pages_pass_axe_fit_a_phone_and_work_from_the_keyboard(new_context, ids):
    problems = []
    paths = [
        "/admin/",
        f"/admin/accounts/user/{ids['trader']}/trader/",
        f"/admin/marketdata/market/{ids['market']}/change/",
    ]
    for width in (1440, 390):
        page = signed_in(new_context, "con_ops", width=width)
        for path in paths:
            page.goto(path)
            page.wait_for_load_state("networkidle")
            problems += [f"{path} at {width} px: axe {v['id']}: {v['nodes']}" for v in axe_violations(page)]
            if width == 390 and (overflow := horizontal_overflow(page)) > 0:
                problems.append(f"{path} at 390 px: scrolls sideways by {overflow} px")
            if width == 1440:
                missed, invisible = keyboard_walk(page)
                problems += [f"{path}: Tab never reaches {missed}"] if missed else []
                problems += [f"{path}: no visible focus on {invisible}"] if invisible else []
    assert not problems, "\n".join(problems)
