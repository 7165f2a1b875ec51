"""The operators' console: the dashboard's figures follow the venue, the trader page's
actions are confirmed, done and audited, reconcile runs once per turn whichever processes
run the schedule, and the staff's groups mean what they say: support sees, operators act."""

import threading
from decimal import Decimal

import pytest
from django.contrib.auth.models import Group
from django.db import connection

from accounts.keys import api_key_create
from accounts.models import ApiKey, LedgerEntry, OperatorAction, User
from accounts.roles import OPERATORS, SUPPORT
from marketdata.models import Market
from orders import activity, console
from orders.models import Order, ReconcileRun
from quantumtrades.core.errors import ErrorCode, ServiceError

from .stories import available, buy, sell, stop_buy

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def _no_counts():
    activity.forget()
    yield
    activity.forget()


def staff(username, group):
    user = User.objects.create_user(username=username, password=f"{username}-pass-2026", is_staff=True)
    user.groups.add(Group.objects.get(name=group))
    return user


@pytest.fixture
def oscar(assets):
    """An operator: in the operators group, not a superuser."""
    return staff("oscar", OPERATORS)


@pytest.fixture
def sam(assets):
    """Support: sees everything, changes nothing."""
    return staff("sam", SUPPORT)


def _refuse(user, **order):
    with pytest.raises(ServiceError) as refused:
        buy(user, **order)
    return refused.value.code


def test_the_dashboard_follows_orders_refusals_and_trades(client, oscar, market, alice, bob):
    client.force_login(oscar)
    before = client.get("/admin/").context["dashboard"]
    row = next(row for row in before.markets if row.market.symbol == "QTX-USD")
    assert (row.resting, before.current.orders, before.current.trades, before.refused) == (0, 0, 0, 0)

    sell(bob, "1", at="10")
    buy(alice, "0.4", at="10")  # trades with bob's order
    buy(alice, "1", at="9")
    stop_buy(alice, "1", stop="12")
    assert _refuse(alice, quantity="100000", at="9") == ErrorCode.INSUFFICIENT_FUNDS
    assert _refuse(alice, quantity="1", at="9.001") == ErrorCode.INVALID
    activity.activity_publish()  # the scheduler's flush, every few seconds in a server

    # The page's own refresh (htmx) answers the dashboard's fragment, not the page.
    fragment = client.get("/admin/", headers={"HX-Request": "true"})
    assert fragment.status_code == 200
    html = fragment.content.decode()
    assert html.lstrip().startswith('<div id="dashboard"') and "<html" not in html
    after = fragment.context_data["dashboard"]
    row = next(row for row in after.markets if row.market.symbol == "QTX-USD")
    assert (row.best_bid, row.best_ask, row.spread) == (Decimal("9"), Decimal("10"), Decimal("1"))
    assert (row.resting, row.pending_stops, row.trades_24h, row.last_price) == (2, 1, 1, Decimal("10"))
    assert (after.current.orders, after.current.trades) == (4, 1)
    assert after.refusals == {ErrorCode.INSUFFICIENT_FUNDS: 1, ErrorCode.INVALID: 1}
    assert after.accepted == 4
    assert [(row.username, row.fills) for row in after.most_active] == [("alice", 1), ("bob", 1)]
    assert 'data-status="trading"' in html and "INSUFFICIENT_FUNDS" in html


def test_counts_from_several_flushes_add_up_in_the_shared_cache(market, alice):
    buy(alice, "1", at="9")
    activity.activity_publish()
    buy(alice, "1", at="9")
    _refuse(alice, quantity="100000", at="9")
    activity.activity_publish()
    activity.activity_publish()  # nothing new: adds nothing

    assert activity.outcomes_recent() == {"accepted": 2, "INSUFFICIENT_FUNDS": 1}
    assert list(activity.sockets_open().values()) == [0]  # this process, no socket open


def test_an_operator_disables_a_trader_from_their_page(client, oscar, market, alice):
    buy(alice, "1", at="9")
    stop_buy(alice, "1", stop="12")
    client.force_login(oscar)

    page = client.get(f"/admin/accounts/user/{alice.pk}/trader/")
    assert page.status_code == 200
    assert page.context["trader"].open_total == 2
    assert 'data-trading="on"' in page.content.decode()

    confirm = client.get(f"/admin/accounts/user/{alice.pk}/trader/disable/")
    assert confirm.status_code == 200 and "every open order and pending stop" in confirm.content.decode()
    assert Order.objects.active().filter(user=alice).count() == 2  # nothing done before the confirmation
    refused = client.post(f"/admin/accounts/user/{alice.pk}/trader/disable/", {"reason": " "})
    assert refused.status_code == 200 and refused.context["form"].errors

    done = client.post(f"/admin/accounts/user/{alice.pk}/trader/disable/", {"reason": "runaway bot"}, follow=True)

    assert done.redirect_chain[-1][0] == f"/admin/accounts/user/{alice.pk}/trader/"
    alice.refresh_from_db()
    assert not alice.trading_enabled and alice.trading_disabled_reason == "runaway bot"
    assert not Order.objects.active().filter(user=alice).exists()
    assert 'data-trading="off"' in done.content.decode()
    action = OperatorAction.objects.get(user=alice)
    assert (action.operator, action.kind, action.reason) == (oscar, "trading_disabled", "runaway bot")
    assert [a.kind for a in done.context["trader"].actions] == ["trading_disabled"]


def test_the_trader_page_actions_cancel_sign_out_revoke_and_adjust_audited(client, oscar, market, alice):
    buy(alice, "1", at="9")
    key, _ = api_key_create(user=alice, name="bot")
    other = client.__class__()
    other.force_login(alice)
    client.force_login(oscar)
    url = f"/admin/accounts/user/{alice.pk}/trader"
    usd = available(alice, "USD")

    client.post(f"{url}/cancel/", {"reason": "stale quotes"})
    client.post(f"{url}/sign_out/", {"reason": "lost laptop"})
    client.post(f"{url}/revoke_key/", {"reason": "leaked", "key": key.pk})
    client.post(f"{url}/adjust/", {"reason": "goodwill", "asset": "USD", "amount": "25"})

    assert not Order.objects.active().filter(user=alice).exists()
    alice.refresh_from_db()
    assert alice.trading_enabled  # cancelling is not the kill switch
    assert other.get("/portfolio/").status_code == 302  # signed out
    assert ApiKey.objects.get(pk=key.pk).revoked
    assert available(alice, "USD") == usd + 1 * 9 + Decimal("0.018") + 25  # hold released, then the credit
    entry = LedgerEntry.objects.filter(user=alice).latest("id")
    assert (entry.kind, entry.available_delta, entry.reason) == ("adjustment", Decimal("25"), "goodwill")
    assert list(OperatorAction.objects.filter(user=alice).order_by("id").values_list("kind", "reason")) == [
        ("order_cancelled", "stale quotes"),
        ("signed_out", "lost laptop"),
        ("api_key_revoked", "leaked"),
        ("balance_adjusted", "goodwill"),
    ]


def test_support_sees_everything_and_cannot_act(client, sam, market, alice):
    buy(alice, "1", at="9")
    client.force_login(sam)

    dashboard = client.get("/admin/")
    assert dashboard.status_code == 200
    assert "Run reconcile now" not in dashboard.content.decode()
    trader = client.get(f"/admin/accounts/user/{alice.pk}/trader/")
    assert trader.status_code == 200 and "takes no action" in trader.content.decode()
    market_page = client.get(f"/admin/marketdata/market/{market.pk}/change/")
    assert market_page.status_code == 200 and 'name="price_band"' not in market_page.content.decode()

    for path, data in [
        (f"/admin/accounts/user/{alice.pk}/trader/disable/", {"reason": "x"}),
        (f"/admin/accounts/user/{alice.pk}/trader/cancel/", {"reason": "x"}),
        (f"/admin/marketdata/market/{market.pk}/status/halt/", {"reason": "x"}),
        ("/admin/orders/reconcilerun/run/", {}),
    ]:
        assert client.post(path, data).status_code == 403, path
    # The changelist's actions are hidden and refused, and the rules stay as they were.
    users = client.get("/admin/accounts/user/")
    assert users.status_code == 200 and "disable_trading" not in users.content.decode()
    client.post("/admin/accounts/user/", {"action": "disable_trading", "_selected_action": [alice.pk]})
    band = market.price_band
    client.post(f"/admin/marketdata/market/{market.pk}/change/", {"price_band": "0.2", "_confirmed": "1"})
    alice.refresh_from_db()
    market.refresh_from_db()
    assert alice.trading_enabled and market.status == Market.Status.TRADING and market.price_band == band
    assert Order.objects.active().filter(user=alice).count() == 1 and not OperatorAction.objects.exists()
    # Her own user page says what her group allows.
    assert "changes nothing" in client.get(f"/admin/accounts/user/{sam.pk}/change/").content.decode()


def test_the_groups_hold_view_for_support_and_the_actions_for_operators(sam, oscar):
    assert all(p.startswith(("accounts.view_", "marketdata.view_", "orders.view_", "fix.view_", "auth.view_"))
               or ".view_" in p for p in sam.get_all_permissions())  # fmt: skip
    assert "orders.view_order" in sam.get_all_permissions()
    assert not any(
        sam.has_perm(p) for p in ("accounts.disable_trading", "marketdata.halt_market", "orders.cancel_order")
    )
    for permission in ("accounts.disable_trading", "marketdata.halt_market", "orders.run_reconcile"):
        assert oscar.has_perm(permission)


def test_an_operator_halts_a_market_and_resumes_it_through_an_auction(client, oscar, market, alice, bob):
    sell(bob, "1", at="10")
    client.force_login(oscar)
    page = client.get(f"/admin/marketdata/market/{market.pk}/change/")
    assert page.context["book"].asks == [(Decimal("10"), Decimal("1"))]

    client.post(f"/admin/marketdata/market/{market.pk}/status/halt/", {"reason": "news pending"})
    market.refresh_from_db()
    assert market.status == Market.Status.HALTED
    assert _refuse(alice, quantity="1", at="10") == ErrorCode.MARKET_HALTED

    client.post(f"/admin/marketdata/market/{market.pk}/status/resume/", {"reason": "news out"})
    market.refresh_from_db()
    assert market.status == Market.Status.AUCTION and market.auction_ends_at is not None
    assert list(OperatorAction.objects.order_by("id").values_list("kind", "reason")) == [
        ("market_halted", "news pending"),
        ("market_resumed", "news out"),
    ]


def test_reconcile_runs_from_the_console_and_keeps_its_result(client, oscar, market, alice):
    client.force_login(oscar)
    client.post("/admin/orders/reconcilerun/run/")

    run = ReconcileRun.objects.get()
    assert (run.trigger, run.operator, run.breaches, run.report) == ("operator", oscar, 0, "")
    tile = client.get("/admin/").content.decode()
    assert 'data-testid="reconcile">clean<' in tile

    # A breach (a balance edited behind the ledger's back) shows on the next run.
    alice.balances.filter(asset="USD").update(available=1)
    client.post("/admin/orders/reconcilerun/run/")
    latest = console.reconcile_latest()
    assert latest.breaches >= 1 and "USD" in latest.report
    assert "breach" in client.get("/admin/").content.decode()


@pytest.mark.django_db(transaction=True)
def test_a_scheduled_reconcile_runs_once_per_turn_whichever_processes_run_it(settings, market):
    settings.RECONCILE_EVERY_SECONDS = 3600
    start = threading.Barrier(4)
    results = []

    def process():
        start.wait()
        try:
            results.append(console.reconcile_scheduled())
        finally:
            connection.close()

    threads = [threading.Thread(target=process) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    ran = [run for run in results if run is not None]
    assert len(ran) == 1 and ran[0].breaches == 0
    assert ReconcileRun.objects.filter(trigger="schedule").count() == 1
    assert console.reconcile_scheduled() is None  # the turn is taken
    settings.RECONCILE_EVERY_SECONDS = 0
    assert console.reconcile_scheduled() is None
