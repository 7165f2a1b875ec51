"""Market integrity in the engine (docs/API.md, "Market integrity"): the price band, size
limits, the open-order limit, the kill switch and self-trade prevention's modes."""

from decimal import Decimal

import pytest
from django.test import override_settings

from accounts.models import OperatorAction, User
from marketdata.models import BookLevel, Market
from orders.controls import trading_disable, trading_enable
from orders.engine.caches import forget_markets
from orders.models import Order, OrderSource, OrderStatus
from orders.selectors import reconcile
from orders.services import order_amend, order_cancel, order_place
from quantumtrades.core.errors import ErrorCode, InvalidInput, ServiceError, TradingDisabled

from .stories import available, buy, held, print_trade, sell, stop_buy, stop_sell

pytestmark = pytest.mark.django_db


def rules(market, **values):
    Market.objects.filter(pk=market.pk).update(**values)
    forget_markets()


def refused(code, command, *args, **kwargs) -> ServiceError:
    with pytest.raises(ServiceError) as caught:
        command(*args, **kwargs)
    assert caught.value.code == code, caught.value.as_dict()
    return caught.value


@pytest.fixture
def operator_user(assets):
    return User.objects.create_user(username="olivia", is_staff=True)


@pytest.fixture(autouse=True)
def clean_books():
    yield
    assert reconcile() == []


# --- The last trade price ----------------------------------------------------------


def test_the_engine_keeps_the_last_trade_price(market, alice, bob):
    assert Market.objects.get(pk=market.pk).last_price is None
    print_trade(alice, bob, "100")
    assert Market.objects.get(pk=market.pk).last_price == Decimal("100")
    sell(alice, "1", at="101")
    sell(alice, "1", at="102")
    buy(bob, "2", at="102")  # two trades: the last one's price
    assert Market.objects.get(pk=market.pk).last_price == Decimal("102")
    buy(bob, "1", at="90")  # rests, no trade: unchanged
    assert Market.objects.get(pk=market.pk).last_price == Decimal("102")


# --- The price band ------------------------------------------------------------------


def test_a_limit_price_outside_the_band_is_refused_with_the_band_in_the_message(market, alice, bob):
    print_trade(alice, bob, "100")
    rules(market, price_band=Decimal("0.10"))

    error = refused(ErrorCode.PRICE_OUT_OF_BAND, buy, alice, "1", at="110.01")
    assert error.field == "price"
    assert error.message == (
        "price 110.01 is outside the price band: it must be within 90.00 and 110.00 (10% around the reference 100.00)."
    )
    refused(ErrorCode.PRICE_OUT_OF_BAND, sell, alice, "1", at="89.99")
    assert buy(alice, "1", at="110").order.status == OrderStatus.OPEN
    assert sell(bob, "1", at="90").order.status == OrderStatus.FILLED  # meets alice's 110 bid
    assert Market.objects.get(pk=market.pk).last_price == Decimal("110")
    # The band moved with the last trade: 99.00 to 121.00.
    refused(ErrorCode.PRICE_OUT_OF_BAND, buy, alice, "1", at="98.99")
    assert buy(alice, "1", at="121").order.status == OrderStatus.OPEN


def test_the_band_rounds_inward_to_the_tick(market, alice, bob):
    print_trade(alice, bob, "10.05")
    rules(market, price_band=Decimal("0.10"))
    # 10.05 x 0.9 = 9.045 -> 9.05; 10.05 x 1.1 = 11.055 -> 11.05
    refused(ErrorCode.PRICE_OUT_OF_BAND, buy, alice, "1", at="9.04")
    refused(ErrorCode.PRICE_OUT_OF_BAND, buy, alice, "1", at="11.06")
    buy(alice, "1", at="9.05")
    sell(bob, "1", at="11.05")


def test_without_a_trade_the_band_is_around_the_middle_of_the_book(market, alice, bob):
    rules(market, price_band=Decimal("0.10"))
    # No trade, one side only: no reference, no band.
    buy(alice, "1", at="99")
    sell(bob, "1", at="1000")
    assert Market.objects.get(pk=market.pk).last_price is None
    # Middle 549.50: 494.55 to 604.45.
    error = refused(ErrorCode.PRICE_OUT_OF_BAND, buy, alice, "1", at="700")
    assert "494.55 and 604.45" in error.message
    assert "reference 549.50" in error.message


def test_an_amend_to_a_new_price_outside_the_band_is_refused(market, alice, bob):
    print_trade(alice, bob, "100")
    rules(market, price_band=Decimal("0.10"))
    order = buy(alice, "1", at="95").order
    refused(ErrorCode.PRICE_OUT_OF_BAND, order_amend, user=alice, order_id=order.pk, price="89")
    assert order_amend(user=alice, order_id=order.pk, price="91").order.price == Decimal("91")
    assert order_amend(user=alice, order_id=order.pk, quantity="2").order.quantity == Decimal("2")


def test_a_market_order_stops_at_the_band_and_its_remainder_expires(market, alice, bob, carol):
    print_trade(alice, bob, "100")
    sell(carol, "1", at="105")
    sell(carol, "1", at="110")
    sell(carol, "1", at="111")  # rested before the band was set
    rules(market, price_band=Decimal("0.10"))

    result = buy(alice, "3")
    assert result.order.status == OrderStatus.EXPIRED
    assert result.order.filled_quantity == Decimal("2")
    assert [fill.price for fill in result.fills] == [Decimal("105"), Decimal("110")]
    assert Order.objects.get(price=Decimal("111")).remaining_quantity == Decimal("1")


def test_a_market_sell_stops_at_the_lower_bound(market, alice, bob, carol):
    print_trade(alice, bob, "100")
    buy(carol, "1", at="95")
    buy(carol, "1", at="85")
    rules(market, price_band=Decimal("0.10"))
    result = sell(alice, "2")
    assert result.order.filled_quantity == Decimal("1")
    assert result.order.status == OrderStatus.EXPIRED


def test_a_triggered_stop_market_never_trades_outside_the_band(market, alice, bob, carol):
    print_trade(alice, bob, "100")
    buy(bob, "1", at="95")
    buy(bob, "1", at="85")  # rested before the band was set
    rules(market, price_band=Decimal("0.10"))
    stop = stop_sell(carol, "2", stop="99").order

    print_trade(alice, bob, "99")  # reaches the stop: it sells at 95, not at 85

    stop.refresh_from_db()
    assert stop.status == OrderStatus.EXPIRED
    assert stop.filled_quantity == Decimal("1")
    assert [fill.price for fill in stop.fills.all()] == [Decimal("95")]
    assert held(carol, "QTX") == 0


def test_a_triggered_stop_limit_outside_the_band_expires_and_releases_its_hold(market, alice, bob, carol):
    print_trade(alice, bob, "100")
    rules(market, price_band=Decimal("0.10"))
    # Accepted: a pending stop's prices are not judged by the band until it triggers.
    stop = stop_sell(carol, "1", stop="99", at="80").order
    assert stop.status == OrderStatus.PENDING
    assert held(carol, "QTX") == Decimal("1")
    buy(bob, "1", at="99")
    print_trade(alice, bob, "99")  # reaches the stop
    stop.refresh_from_db()
    assert stop.status == OrderStatus.EXPIRED
    assert stop.triggered_at is not None
    assert held(carol, "QTX") == Decimal("0")
    assert stop.fills.count() == 0


def test_a_stop_limit_inside_the_band_trades_when_triggered(market, alice, bob, carol):
    print_trade(alice, bob, "100")
    rules(market, price_band=Decimal("0.10"))
    stop = stop_buy(carol, "1", stop="101", at="102").order
    sell(alice, "1", at="102")
    print_trade(alice, bob, "101")
    stop.refresh_from_db()
    assert stop.status == OrderStatus.FILLED


# --- Size limits ---------------------------------------------------------------------


def test_an_order_above_the_quantity_limit_is_refused(market, alice):
    rules(market, max_order_quantity=Decimal("5"))
    error = refused(ErrorCode.ORDER_TOO_LARGE, buy, alice, "5.01", at="10")
    assert error.field == "quantity"
    assert error.status == 400
    assert "above this market's limit of 5 QTX per order" in error.message
    buy(alice, "5", at="10")


def test_an_order_above_the_notional_limit_is_refused(market, alice):
    rules(market, max_order_notional=Decimal("1000"))
    error = refused(ErrorCode.ORDER_TOO_LARGE, buy, alice, "10.01", at="100")
    assert error.message == "price x quantity is 1001, above this market's limit of 1000 USD per order."
    buy(alice, "10", at="100")
    refused(ErrorCode.ORDER_TOO_LARGE, stop_buy, alice, "10", stop="101")  # a stop-market: at its stop
    refused(ErrorCode.ORDER_TOO_LARGE, stop_buy, alice, "10", stop="90", at="101")


def test_a_market_orders_notional_is_judged_at_the_band_else_the_last_trade(market, alice, bob, carol):
    sell(carol, "20", at="100")
    rules(market, max_order_notional=Decimal("1000"))
    # No trade yet: no price to judge it at.
    assert buy(alice, "10.5").order.filled_quantity == Decimal("10.5")
    # The last trade, 100: 10.01 x 100 > 1000.
    refused(ErrorCode.ORDER_TOO_LARGE, buy, alice, "10.01")
    # With a band, its far bound: 110 x 9.1 > 1000.
    rules(market, price_band=Decimal("0.10"))
    refused(ErrorCode.ORDER_TOO_LARGE, buy, alice, "9.1")
    assert buy(alice, "9").order.filled_quantity == Decimal("9")


def test_a_rule_changed_since_the_cached_copy_is_judged_under_the_lock(market, alice):
    buy(alice, "1", at="10")  # the engine now holds a copy of the market
    Market.objects.filter(pk=market.pk).update(max_order_quantity=Decimal("2"))  # its copy is not told
    refused(ErrorCode.ORDER_TOO_LARGE, buy, alice, "3", at="10")


def test_an_amend_above_the_limits_is_refused(market, alice):
    order = buy(alice, "1", at="10").order
    rules(market, max_order_quantity=Decimal("5"))
    refused(ErrorCode.ORDER_TOO_LARGE, order_amend, user=alice, order_id=order.pk, quantity="6")
    stop = stop_buy(alice, "1", stop="20").order
    refused(ErrorCode.ORDER_TOO_LARGE, order_amend, user=alice, order_id=stop.pk, quantity="6")


# --- Open orders ---------------------------------------------------------------------


@override_settings(MAX_OPEN_ORDERS=3)
def test_the_open_order_limit_counts_every_market_and_pending_stops(market, btc_market, alice, bob):
    buy(alice, "1", at="10")
    stop_buy(alice, "1", stop="20")
    buy(alice, "0.1", at="100", market="BTC-USD")
    error = refused(ErrorCode.TOO_MANY_OPEN_ORDERS, buy, alice, "1", at="11")
    assert error.status == 409
    assert "You already have 3 open orders" in error.message
    refused(ErrorCode.TOO_MANY_OPEN_ORDERS, stop_sell, alice, "1", stop="5")
    # An order that cannot rest (IOC, market) is not counted against the limit.
    sell(bob, "1", at="12")
    assert buy(alice, "1", at="12", time_in_force="IOC").order.status == OrderStatus.FILLED
    assert buy(alice, "1", at="12", time_in_force="IOC").order.status == OrderStatus.EXPIRED
    # Another user is not affected; a cancel frees a place.
    buy(bob, "1", at="10")
    order_cancel(user=alice, order_id=Order.objects.filter(user=alice, status="open").first().pk)
    buy(alice, "1", at="11")


def test_a_users_own_limit_overrides_the_setting(market, alice):
    alice.max_open_orders = 1
    alice.save(update_fields=["max_open_orders"])
    buy(alice, "1", at="10")
    refused(ErrorCode.TOO_MANY_OPEN_ORDERS, buy, alice, "1", at="10")


# --- The kill switch -----------------------------------------------------------------


def test_the_kill_switch_cancels_every_order_on_every_market_and_refuses_new_ones(
    market, btc_market, alice, bob, operator_user
):
    buy(alice, "1", at="10")
    stop_buy(alice, "1", stop="20")
    buy(alice, "0.1", at="100", market="BTC-USD")
    buy(alice, "1", at="9")

    result = trading_disable(operator=operator_user, user=alice, reason="runaway algorithm")

    assert len(result.cancelled) == 4
    assert not Order.objects.active().filter(user=alice).exists()
    assert held(alice, "USD") == 0
    # The request's user object may be stale: the engine reads the flag itself.
    stale = type(alice).objects.get(pk=alice.pk)
    stale.trading_enabled = True
    error = refused(ErrorCode.TRADING_DISABLED, buy, stale, "1", at="10")
    assert isinstance(error, TradingDisabled) and error.status == 403
    refused(ErrorCode.TRADING_DISABLED, stop_buy, stale, "1", stop="20")
    refused(ErrorCode.TRADING_DISABLED, buy, stale, "1")
    buy(bob, "1", at="10")  # others trade on

    trading_enable(operator=operator_user, user=alice)
    assert buy(alice, "1", at="10").order.status == OrderStatus.OPEN
    kinds = list(OperatorAction.objects.filter(user=alice).order_by("id").values_list("kind", "reason", "operator"))
    assert kinds == [
        ("trading_disabled", "runaway algorithm", operator_user.pk),
        ("trading_enabled", "", operator_user.pk),
    ]


def test_a_disabled_user_may_cancel_but_not_amend(market, alice, operator_user):
    order = buy(alice, "1", at="10").order
    # Switched off without the cancels (as if an order were left): amends are refused, cancels work.
    type(alice).objects.filter(pk=alice.pk).update(trading_enabled=False)
    refused(ErrorCode.TRADING_DISABLED, order_amend, user=alice, order_id=order.pk, price="11")
    refused(ErrorCode.TRADING_DISABLED, order_amend, user=alice, order_id=order.pk, quantity="0.5")
    assert order_cancel(user=alice, order_id=order.pk).status == OrderStatus.CANCELLED


def test_disabling_needs_a_reason(market, alice, operator_user):
    with pytest.raises(InvalidInput) as caught:
        trading_disable(operator=operator_user, user=alice, reason="  ")
    assert caught.value.field == "reason"


# --- Self-trade prevention -----------------------------------------------------------


def test_expire_taker_leaves_the_maker_and_expires_the_taker(market, alice, bob):
    sell(bob, "1", at="100")
    mine = sell(alice, "1", at="101").order
    result = buy(alice, "3", at="102", stp="expire_taker")
    assert result.order.filled_quantity == Decimal("1")
    assert result.order.status == OrderStatus.EXPIRED
    mine.refresh_from_db()
    assert mine.status == OrderStatus.OPEN


def test_expire_maker_cancels_the_resting_order_and_goes_on(market, alice, bob):
    mine = sell(alice, "1", at="100").order
    sell(bob, "1", at="100")
    sell(bob, "1", at="101")
    usd = available(alice, "USD")
    result = buy(alice, "3", at="102", stp="expire_maker")

    mine.refresh_from_db()
    assert mine.status == OrderStatus.CANCELLED
    assert mine.held == 0
    assert held(alice, "QTX") == 0
    assert result.order.filled_quantity == Decimal("2")
    assert result.order.status == OrderStatus.PARTIALLY_FILLED  # the rest rests at 102
    assert available(alice, "USD") < usd
    assert not BookLevel.objects.filter(market=market, side="sell", price=Decimal("100"), quantity__gt=0).exists()


def test_expire_both_cancels_the_maker_and_expires_the_taker(market, alice, bob):
    sell(bob, "1", at="99")
    mine = sell(alice, "1", at="100").order
    sell(bob, "1", at="101")
    result = buy(alice, "3", at="102", stp="expire_both")
    mine.refresh_from_db()
    assert mine.status == OrderStatus.CANCELLED
    assert result.order.filled_quantity == Decimal("1")
    assert result.order.status == OrderStatus.EXPIRED
    assert Order.objects.get(price=Decimal("101")).status == OrderStatus.OPEN


@pytest.mark.parametrize(("stp", "filled"), [("expire_taker", "0"), ("expire_both", "0"), ("expire_maker", "2")])
def test_fill_or_kill_agrees_with_each_mode(market, alice, bob, stp, filled):
    sell(bob, "1", at="100")
    sell(alice, "1", at="100")
    sell(bob, "1", at="101")
    result = buy(alice, "2", at="101", time_in_force="FOK", stp=stp)
    assert result.order.filled_quantity == Decimal(filled)
    # A killed order touches nothing, the resting order of its own user included.
    assert Order.objects.filter(user=alice, side="sell", status=OrderStatus.OPEN).exists() == (stp != "expire_maker")


def test_a_market_buy_with_expire_maker_spends_only_on_others(market, alice, bob):
    sell(alice, "1", at="100")
    sell(bob, "1", at="100")
    result = buy(alice, "1", stp="expire_maker")
    assert result.order.status == OrderStatus.FILLED
    assert result.fills[0].price == Decimal("100")


# --- Source --------------------------------------------------------------------------


def test_the_source_is_recorded(market, alice):
    order = order_place(
        user=alice, market="QTX-USD", side="buy", quantity=Decimal("1"), price=Decimal("10"), source=OrderSource.REST
    ).order
    assert Order.objects.get(pk=order.pk).source == "rest"
    assert buy(alice, "1", at="10").order.source == "system"
