"""What the matching engine promises traders (docs/API.md, "Orders"), one rule per story.

alice, bob and carol each start with 10,000 USD, 100 QTX and 2 BTC. QTX-USD charges the
maker 0.1% and the taker 0.2%, in USD. After every story the books must still balance:
`reconcile()` finds nothing (see the autouse fixture below).
"""

from decimal import Decimal

import pytest

from marketdata.models import BookLevel, Market, Trade
from marketdata.services import market_halt
from orders.models import Fill, Order
from orders.selectors import reconcile
from orders.services import order_amend, order_cancel, orders_cancel_all
from quantumtrades.core.errors import Conflict, InsufficientFunds

from .stories import STARTING_QTX, STARTING_USD, available, buy, held, sell

D = Decimal


@pytest.fixture(autouse=True)
def books_balance_afterwards(db):
    yield
    assert reconcile() == []


def trades():
    """The public tape, oldest first, as (price, quantity, taker side)."""
    return [(t.price, t.quantity, t.taker_side) for t in Trade.objects.order_by("id")]


def refreshed(result_or_order):
    order = getattr(result_or_order, "order", result_or_order)
    return Order.objects.get(pk=order.pk)


def level(side, price):
    found = BookLevel.objects.filter(side=side, price=D(price)).first()
    return found.quantity if found else D(0)


# --- Price-time priority ----------------------------------------------------------------


def test_two_asks_at_one_price_fill_in_arrival_order(market, alice, bob, carol):
    first = sell(bob, "1", at="100")
    second = sell(carol, "1", at="100")

    buy(alice, "1", at="100")

    assert refreshed(first).status == "filled"
    assert refreshed(second).status == "open"
    assert available(bob, "USD") == STARTING_USD + D("100") - D("0.1")
    assert available(carol, "USD") == STARTING_USD


def test_the_better_price_fills_first_whatever_arrived_earlier(market, alice, bob, carol):
    dearer = sell(bob, "1", at="101")
    cheaper = sell(carol, "1", at="100")

    result = buy(alice, "1", at="101")

    assert [(f.price, f.quantity) for f in result.fills] == [(D("100"), D("1"))]
    assert refreshed(cheaper).status == "filled"
    assert refreshed(dearer).status == "open"


def test_bids_fill_highest_price_first(market, alice, bob, carol):
    sell_side = bob
    low = buy(alice, "1", at="99")
    high = buy(carol, "1", at="100")

    result = sell(sell_side, "1", at="99")

    assert [f.price for f in result.fills] == [D("100")]
    assert refreshed(high).status == "filled"
    assert refreshed(low).status == "open"


# --- Price, partial fills, price improvement --------------------------------------------


def test_the_taker_trades_at_the_makers_price(market, alice, bob):
    sell(bob, "2", at="99")

    result = buy(alice, "2", at="100")

    assert trades() == [(D("99"), D("2"), "buy")]
    assert result.order.average_price == D("99")


def test_price_improvement_is_never_paid_or_held(market, alice, bob):
    sell(bob, "2", at="100")

    result = buy(alice, "2", at="101")

    # 2 x 100 = 200 plus the 0.2% taker fee 0.4, not 2 x 101 plus its fee.
    assert result.order.status == "filled"
    assert available(alice, "USD") == D("9799.6")
    assert held(alice, "USD") == 0
    assert available(alice, "QTX") == STARTING_QTX + 2


def test_a_large_resting_order_is_partially_filled_by_a_small_taker(market, alice, bob):
    ask = sell(bob, "5", at="100")

    buy(alice, "2", at="100")

    ask = refreshed(ask)
    assert (ask.status, ask.filled_quantity, ask.remaining_quantity) == ("partially_filled", 2, 3)
    assert held(bob, "QTX") == 3
    assert available(bob, "QTX") == STARTING_QTX - 5
    assert available(bob, "USD") == STARTING_USD + D("200") - D("0.2")
    assert level("sell", "100") == 3


def test_a_large_taker_fills_partially_and_rests_the_rest(market, alice, bob):
    sell(bob, "2", at="100")

    result = buy(alice, "5", at="100")

    order = refreshed(result)
    assert (order.status, order.filled_quantity, order.remaining_quantity) == ("partially_filled", 2, 3)
    # Paid 200 + 0.4 fee; holds 300 + 0.6 reserved fee for the 3 still resting.
    assert held(alice, "USD") == D("300.6")
    assert available(alice, "USD") == D("9499.0")
    assert level("buy", "100") == 3
    assert level("sell", "100") == 0


def test_a_taker_walks_several_levels(market, alice, bob, carol):
    sell(bob, "1", at="100")
    sell(carol, "1", at="101")
    sell(bob, "1", at="102")

    result = buy(alice, "3", at="101")

    assert [(f.price, f.quantity) for f in result.fills] == [(D("100"), D("1")), (D("101"), D("1"))]
    assert refreshed(result).status == "partially_filled"
    assert level("buy", "101") == 1
    assert level("sell", "102") == 1


# --- Time in force ----------------------------------------------------------------------


def test_a_gtc_limit_order_that_does_not_cross_rests_and_holds(market, alice):
    result = buy(alice, "1", at="99")

    assert result.order.status == "open"
    assert result.fills == []
    assert held(alice, "USD") == D("99") + D("0.198")
    assert available(alice, "USD") == STARTING_USD - D("99.198")
    assert level("buy", "99") == 1


def test_an_ioc_remainder_expires_and_holds_nothing(market, alice, bob):
    sell(bob, "1", at="100")

    result = buy(alice, "3", at="100", time_in_force="IOC")

    order = refreshed(result)
    assert (order.status, order.filled_quantity, order.remaining_quantity) == ("expired", 1, 2)
    assert held(alice, "USD") == 0
    assert available(alice, "USD") == STARTING_USD - D("100.2")
    assert level("buy", "100") == 0


def test_fok_that_cannot_fill_completely_trades_nothing(market, alice, bob):
    ask = sell(bob, "1", at="100")

    result = buy(alice, "2", at="100", time_in_force="FOK")

    assert result.order.status == "expired"
    assert result.fills == []
    assert trades() == []
    assert available(alice, "USD") == STARTING_USD
    assert held(alice, "USD") == 0
    assert refreshed(ask).status == "open"


def test_fok_that_can_fill_completely_fills_across_levels(market, alice, bob, carol):
    sell(bob, "1", at="100")
    sell(carol, "1", at="101")

    result = buy(alice, "2", at="101", time_in_force="FOK")

    assert result.order.status == "filled"
    assert trades() == [(D("100"), D("1"), "buy"), (D("101"), D("1"), "buy")]
    assert available(alice, "USD") == STARTING_USD - D("201") - D("0.402")


# --- Post only --------------------------------------------------------------------------


def test_post_only_rests_when_it_does_not_cross(market, alice, bob):
    sell(bob, "1", at="100")

    result = buy(alice, "1", at="99", post_only=True)

    assert result.order.status == "open"
    assert held(alice, "USD") == D("99.198")


def test_post_only_that_would_take_is_rejected_and_holds_nothing(market, alice, bob):
    ask = sell(bob, "1", at="100")

    result = buy(alice, "1", at="100", post_only=True)

    assert refreshed(result).status == "rejected"
    assert result.fills == []
    assert trades() == []
    assert (available(alice, "USD"), held(alice, "USD")) == (STARTING_USD, 0)
    assert refreshed(ask).remaining_quantity == 1
    assert level("buy", "100") == 0


# --- Market orders ----------------------------------------------------------------------


def test_a_market_buy_never_rests(market, alice, bob):
    sell(bob, "1", at="100")

    result = buy(alice, "3")

    order = refreshed(result)
    assert (order.status, order.filled_quantity) == ("expired", 1)
    assert order.time_in_force == "IOC"
    assert held(alice, "USD") == 0
    assert BookLevel.objects.filter(side="buy").count() == 0


def test_a_market_buy_spends_at_most_the_available_quote(market, make_trader, bob):
    dave = make_trader("dave", USD="250")
    sell(bob, "5", at="100")

    result = buy(dave, "5")

    # 2.49 QTX cost 249 + 0.498 fee; one more lot (2.50) would cost 250.50.
    order = refreshed(result)
    assert (order.status, order.filled_quantity) == ("expired", D("2.49"))
    assert available(dave, "USD") == D("0.502")
    assert available(dave, "QTX") == D("2.49")


def test_a_market_buy_affords_what_the_rounded_down_fee_lets_it_pay(btc_market, make_trader, bob):
    sell(bob, "0.0004", at="30000.01", market="BTC-USD")
    # One lot (0.0001 BTC) costs 3.000001 plus the fee 0.006000002, charged as 0.00600000.
    dave = make_trader("dave", USD="3.006001")

    result = buy(dave, "0.0004", market="BTC-USD")

    assert result.order.filled_quantity == D("0.0001")
    assert available(dave, "USD") == 0
    assert available(dave, "BTC") == D("0.0001")


def test_a_market_buy_that_cannot_afford_one_lot_is_refused(market, make_trader, bob):
    dave = make_trader("dave", USD="1")
    sell(bob, "1", at="100")

    # One lot (0.01 QTX) costs 1 + 0.002 fee.
    with pytest.raises(InsufficientFunds) as refused:
        buy(dave, "1")

    assert "needs 1.002, 1 is available" in refused.value.message
    assert Order.objects.filter(user=dave).count() == 0
    assert available(dave, "USD") == 1


def test_a_market_sell_needs_the_whole_base_quantity(market, make_trader, alice):
    dave = make_trader("dave", QTX="0.5")
    buy(alice, "1", at="100")

    with pytest.raises(InsufficientFunds) as refused:
        sell(dave, "1")

    assert refused.value.field == "quantity"
    assert trades() == []
    assert available(dave, "QTX") == D("0.5")


def test_a_market_sell_fills_against_the_bids_and_pays_the_taker_fee(market, alice, bob):
    buy(alice, "1", at="100")
    buy(alice, "1", at="99")

    result = sell(bob, "2")

    assert refreshed(result).status == "filled"
    assert available(bob, "USD") == STARTING_USD + D("199") - D("0.398")
    assert available(bob, "QTX") == STARTING_QTX - 2


@pytest.mark.parametrize("side", ["buy", "sell"])
def test_a_market_order_on_an_empty_book_expires_without_a_fill(market, alice, side):
    place = buy if side == "buy" else sell

    result = place(alice, "1")

    assert result.order.status == "expired"
    assert result.fills == []
    assert (available(alice, "USD"), available(alice, "QTX")) == (STARTING_USD, STARTING_QTX)


def test_a_market_fok_buy_that_cannot_fill_completely_trades_nothing(market, alice, bob):
    sell(bob, "1", at="100")

    result = buy(alice, "2", time_in_force="FOK")

    assert result.order.status == "expired"
    assert trades() == []


# --- Self-trade prevention --------------------------------------------------------------


def test_a_taker_meeting_its_own_resting_order_does_not_trade(market, alice):
    own = sell(alice, "1", at="100")

    result = buy(alice, "1", at="100")

    assert result.order.status == "expired"
    assert result.fills == []
    assert trades() == []
    own = refreshed(own)
    assert (own.status, own.remaining_quantity, own.held) == ("open", 1, 1)
    assert held(alice, "USD") == 0
    assert available(alice, "USD") == STARTING_USD


def test_self_trade_prevention_stops_the_taker_after_better_orders_filled(market, alice, carol):
    sell(carol, "1", at="99")
    own = sell(alice, "1", at="100")

    result = buy(alice, "2", at="100")

    order = refreshed(result)
    assert (order.status, order.filled_quantity) == ("expired", 1)
    assert trades() == [(D("99"), D("1"), "buy")]
    assert refreshed(own).status == "open"
    assert held(alice, "USD") == 0


def test_fok_meeting_its_own_order_before_it_could_fill_trades_nothing(market, alice, bob):
    sell(alice, "1", at="100")
    sell(bob, "1", at="101")

    result = buy(alice, "1", at="101", time_in_force="FOK")

    assert result.order.status == "expired"
    assert trades() == []


# --- Fees -------------------------------------------------------------------------------


def test_maker_and_taker_fees_are_exact_and_paid_to_the_fee_account(market, fees, alice, bob):
    sell(bob, "2", at="100")

    result = buy(alice, "2", at="100")

    [taker_fill] = result.fills
    maker_fill = Fill.objects.get(role="maker")
    assert (taker_fill.role, taker_fill.fee) == ("taker", D("0.4"))
    assert (maker_fill.user, maker_fill.fee) == (bob, D("0.2"))
    assert available(alice, "USD") == STARTING_USD - D("200.4")
    assert available(bob, "USD") == STARTING_USD + D("199.8")
    assert available(fees, "USD") == D("0.6")


def test_a_fee_with_more_than_eight_decimals_is_charged_rounded_down(btc_market, fees, alice, bob):
    sell(bob, "0.0007", at="30000.01", market="BTC-USD")

    result = buy(alice, "0.0007", at="30000.01", market="BTC-USD")

    # Notional 21.000007: taker fee 0.042000014 -> 0.04200001, maker fee 0.021000007 -> 0.02100000.
    assert result.fills[0].fee == D("0.04200001")
    assert Fill.objects.get(role="maker").fee == D("0.021")
    assert available(alice, "USD") == D("9978.95799299")
    assert available(bob, "USD") == D("10020.979007")
    assert available(fees, "USD") == D("0.06300001")


def test_a_resting_buy_reserves_its_fee_rounded_up(btc_market, alice):
    buy(alice, "0.0007", at="30000.01", market="BTC-USD")

    # 21.000007 plus the taker fee 0.042000014 rounded up to 0.04200002.
    assert held(alice, "USD") == D("21.04200702")


def test_a_filled_maker_buy_gets_back_what_its_fee_reserve_did_not_need(btc_market, alice, bob):
    bid = buy(alice, "0.0007", at="30000.01", market="BTC-USD")

    sell(bob, "0.0007", at="30000.01", market="BTC-USD")

    # Paid 21.000007 + maker fee 0.021; the rest of the 21.04200702 held comes back.
    assert refreshed(bid).status == "filled"
    assert held(alice, "USD") == 0
    assert available(alice, "USD") == STARTING_USD - D("21.021007")


def test_a_maker_fee_above_the_taker_fee_is_covered_by_the_hold(assets, fees, make_trader, bob):
    Market.objects.create(
        symbol="QTX-USD",
        base=assets["QTX"],
        quote=assets["USD"],
        tick_size=D("0.01"),
        lot_size=D("0.01"),
        min_notional=D("1"),
        price_band=None,
        circuit_breaker=None,
        maker_fee=D("0.003"),
        taker_fee=D("0.001"),
    )
    dave = make_trader("dave", USD="100.3")
    buy(dave, "1", at="100")

    # dave's resting bid pays the 0.3 maker fee out of what it holds; bob is not refused for it.
    sell(bob, "1", at="100")

    assert (available(dave, "USD"), held(dave, "USD")) == (0, 0)
    assert available(dave, "QTX") == 1
    assert available(fees, "USD") == D("0.4")


# --- Amend ------------------------------------------------------------------------------


def test_reducing_quantity_keeps_the_place_in_the_queue(market, alice, bob, carol):
    first = sell(alice, "3", at="100")
    sell(bob, "1", at="100")

    order_amend(user=alice, order_id=first.order.pk, quantity=D("2"))
    result = buy(carol, "1", at="100")

    assert Fill.objects.get(role="maker").user == alice
    assert result.fills[0].price == D("100")
    assert held(alice, "QTX") == 1
    assert available(alice, "QTX") == STARTING_QTX - 2


def test_reducing_a_buy_releases_its_share_of_the_hold(market, alice):
    bid = buy(alice, "3", at="100")

    order_amend(user=alice, order_id=bid.order.pk, quantity=D("1"))

    assert held(alice, "USD") == D("100.2")
    assert available(alice, "USD") == STARTING_USD - D("100.2")


def test_a_price_change_loses_the_place_in_the_queue(market, alice, bob, carol):
    first = sell(alice, "1", at="101")
    sell(bob, "1", at="100")

    order_amend(user=alice, order_id=first.order.pk, price=D("100"))
    buy(carol, "1", at="100")

    assert Fill.objects.get(role="maker").user == bob
    assert refreshed(first).status == "open"


def test_a_quantity_increase_loses_the_place_in_the_queue(market, alice, bob, carol):
    first = sell(alice, "1", at="100")
    sell(bob, "1", at="100")

    order_amend(user=alice, order_id=first.order.pk, quantity=D("2"))
    buy(carol, "1", at="100")

    assert Fill.objects.get(role="maker").user == bob
    assert held(alice, "QTX") == 2


def test_a_repriced_order_that_crosses_trades_at_once_as_taker(market, alice, bob):
    bid = buy(alice, "1", at="99")
    sell(bob, "1", at="100")

    result = order_amend(user=alice, order_id=bid.order.pk, price=D("100"))

    assert result.order.status == "filled"
    assert [(f.role, f.price) for f in result.fills] == [("taker", D("100"))]
    assert held(alice, "USD") == 0
    assert available(alice, "USD") == STARTING_USD - D("100.2")


def test_a_post_only_reprice_that_would_take_is_refused(market, alice, bob):
    bid = buy(alice, "1", at="99", post_only=True)
    sell(bob, "1", at="100")

    with pytest.raises(Conflict) as refused:
        order_amend(user=alice, order_id=bid.order.pk, price=D("100"))

    assert refused.value.code == "POST_ONLY_WOULD_TAKE"
    bid = refreshed(bid)
    assert (bid.price, bid.status) == (D("99"), "open")
    assert held(alice, "USD") == D("99.198")


def test_an_amend_needing_more_funds_than_available_is_refused(market, make_trader):
    dave = make_trader("dave", USD="200")
    bid = buy(dave, "1", at="100")

    with pytest.raises(InsufficientFunds):
        order_amend(user=dave, order_id=bid.order.pk, quantity=D("2"))

    assert refreshed(bid).quantity == 1
    assert held(dave, "USD") == D("100.2")


# --- Cancel and halt --------------------------------------------------------------------


def test_cancel_releases_what_the_order_held(market, alice):
    bid = buy(alice, "2", at="100")

    cancelled = order_cancel(user=alice, order_id=bid.order.pk)

    assert cancelled.status == "cancelled"
    assert (available(alice, "USD"), held(alice, "USD")) == (STARTING_USD, 0)
    assert level("buy", "100") == 0


def test_cancel_all_cancels_every_open_order_of_the_user_only(market, alice, bob):
    buy(alice, "1", at="99")
    sell(alice, "1", at="101")
    theirs = sell(bob, "1", at="102")

    cancelled = orders_cancel_all(user=alice, market="QTX-USD")

    assert {order.status for order in cancelled} == {"cancelled"}
    assert len(cancelled) == 2
    assert (held(alice, "USD"), held(alice, "QTX")) == (0, 0)
    assert refreshed(theirs).status == "open"


def test_a_halted_market_refuses_new_orders_but_cancels(market, alice):
    bid = buy(alice, "1", at="99")
    market_halt(market=market)

    with pytest.raises(Conflict) as refused:
        buy(alice, "1", at="99")
    order_cancel(user=alice, order_id=bid.order.pk)

    assert refused.value.code == "MARKET_HALTED"
    assert refreshed(bid).status == "cancelled"
    assert held(alice, "USD") == 0


def test_a_halted_market_refuses_a_reprice(market, alice):
    bid = buy(alice, "1", at="99")
    market_halt(market=market)

    with pytest.raises(Conflict) as refused:
        order_amend(user=alice, order_id=bid.order.pk, price=D("98"))

    assert refused.value.code == "MARKET_HALTED"


# --- Idempotency and the book sequence ---------------------------------------------------


def test_a_repeated_client_order_id_returns_the_original_order(market, alice):
    first = buy(alice, "1", at="99", client_order_id="my-bid-1")

    again = buy(alice, "1", at="99", client_order_id="my-bid-1")

    assert (first.created, again.created) == (True, False)
    assert again.order.pk == first.order.pk
    assert Order.objects.filter(user=alice).count() == 1
    assert held(alice, "USD") == D("99.198")
    assert Market.objects.get().book_seq == 1


def test_the_same_client_order_id_is_free_for_another_user(market, alice, bob):
    mine = buy(alice, "1", at="99", client_order_id="bid-1")

    theirs = buy(bob, "1", at="99", client_order_id="bid-1")

    assert theirs.created
    assert theirs.order.pk != mine.order.pk


def test_every_command_bumps_the_book_sequence_by_one(market, alice, bob):
    def seq():
        return Market.objects.get().book_seq

    bid = buy(alice, "1", at="99")
    assert seq() == 1
    sell(bob, "1", at="100", post_only=True)
    assert seq() == 2
    buy(alice, "1", at="100", post_only=True)  # rejected: still a command
    assert seq() == 3
    order_amend(user=alice, order_id=bid.order.pk, quantity=D("2"))
    assert seq() == 4
    order_amend(user=alice, order_id=bid.order.pk, price=D("100"))  # trades
    assert seq() == 5
    order_cancel(user=alice, order_id=bid.order.pk)
    assert seq() == 6


def test_a_refused_command_leaves_the_book_sequence_alone(market, make_trader):
    dave = make_trader("dave", USD="1")

    with pytest.raises(InsufficientFunds):
        buy(dave, "1", at="100")

    assert Market.objects.get().book_seq == 0
