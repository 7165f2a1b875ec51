"""Stop orders (docs/API.md, "Orders"): they wait off the book, holding their funds, until a
trade prints at or through their stop price, and then trade as a limit or market order in
the same command, in the order they were accepted.

alice, bob and carol each start with 10,000 USD and 100 QTX; QTX-USD charges the maker
0.1% and the taker 0.2%. A buy holds notional + 0.2% (the higher rate); a sell its
quantity. `print_trade(seller, buyer, price)` puts one trade on the tape.
"""

from decimal import Decimal

import pytest
from django.utils import timezone

from marketdata.events import BookChanged
from marketdata.models import BookLevel, Market, Trade
from marketdata.services import market_halt, market_resume
from orders.auctions import auction_end
from orders.engine import rules
from orders.events import OrderChanged
from orders.models import Order
from orders.selectors import reconcile
from orders.services import order_amend, order_cancel, order_place, orders_cancel_all
from quantumtrades.core.errors import Conflict, InsufficientFunds, InvalidInput

from .stories import STARTING_QTX, STARTING_USD, available, buy, held, print_trade, sell, stop_buy, stop_sell

D = Decimal


@pytest.fixture(autouse=True)
def books_balance_afterwards(db):
    yield
    assert reconcile() == []


@pytest.fixture
def dave(make_trader):
    return make_trader("dave", USD="10000", QTX="100")


@pytest.fixture
def tape_at_100(market, bob, carol):
    """One trade at 100 on the tape: the last price every stop is judged against."""
    print_trade(bob, carol, "100")


def refreshed(result_or_order):
    order = getattr(result_or_order, "order", result_or_order)
    return Order.objects.get(pk=order.pk)


def trades_since(first_id=0):
    """The tape after `first_id`, oldest first: (price, quantity, taker side, taker order, seq)."""
    return [
        (t.price, t.quantity, t.taker_side, t.taker_order_id, t.seq)
        for t in Trade.objects.filter(id__gt=first_id).order_by("id")
    ]


def last_trade_id():
    return Trade.objects.order_by("-id").values_list("id", flat=True).first() or 0


def level(side, price):
    found = BookLevel.objects.filter(side=side, price=D(price)).first()
    return found.quantity if found else D(0)


def book_seq():
    return Market.objects.values_list("book_seq", flat=True).get(symbol="QTX-USD")


# --- Acceptance -----------------------------------------------------------------------


def test_a_stop_limit_waits_off_the_book_holding_what_its_limit_order_will_need(tape_at_100, alice):
    result = stop_buy(alice, "2", stop="101", at="102")

    order = refreshed(result)
    assert (order.status, order.stop_price, order.triggered_at) == ("pending", D("101"), None)
    assert result.fills == [] and result.created
    # 2 x 102 = 204, plus the fee reserve at the higher rate (0.2%): 0.408.
    assert held(alice, "USD") == D("204.408") == order.held
    assert available(alice, "USD") == STARTING_USD - D("204.408")
    assert level("buy", "102") == 0


def test_a_stop_market_buy_holds_for_its_stop_price_plus_the_margin(tape_at_100, alice):
    stop_buy(alice, "2", stop="101")

    # 101 + 5% = 106.05 a unit: 212.10, plus 0.2% fee reserve 0.4242.
    assert D("0.05") == rules.STOP_MARKET_BUY_MARGIN
    assert held(alice, "USD") == D("212.5242")


def test_a_sell_stop_holds_its_quantity(tape_at_100, alice):
    stop_sell(alice, "3", stop="99")
    stop_sell(alice, "2", stop="98", at="97")

    assert held(alice, "QTX") == D("5")
    assert available(alice, "QTX") == STARTING_QTX - D("5")


def test_a_stop_the_last_trade_already_reached_is_refused(tape_at_100, alice):
    for place in (
        lambda: stop_buy(alice, "1", stop="100", at="101"),
        lambda: stop_buy(alice, "1", stop="99.99"),
        lambda: stop_sell(alice, "1", stop="100"),
        lambda: stop_sell(alice, "1", stop="100.01", at="99"),
    ):
        with pytest.raises(InvalidInput) as refused:
            place()
        assert refused.value.field == "stop_price"
        assert "last trade" in refused.value.message
    assert held(alice, "USD") == held(alice, "QTX") == 0
    assert not Order.objects.filter(user=alice).exists()


def test_before_any_trade_a_stop_at_any_price_is_accepted(market, alice):
    assert stop_buy(alice, "1", stop="50", at="51").order.status == "pending"
    assert stop_sell(alice, "1", stop="150").order.status == "pending"


def test_a_stop_needs_the_funds_its_hold_asks(tape_at_100, make_trader):
    poor = make_trader("poor", USD="100")
    with pytest.raises(InsufficientFunds):
        stop_buy(poor, "1", stop="101", at="101")  # 101 + 0.202 > 100
    assert available(poor, "USD") == D("100")


def test_a_stop_order_is_checked_like_any_order(tape_at_100, alice):
    cases = [
        ({"type": "stop_limit", "price": "101"}, "stop_price"),  # no stop price
        ({"type": "limit", "price": "101", "stop_price": "101"}, "stop_price"),  # not a stop
        ({"type": "stop_limit", "price": "101", "stop_price": "101.005"}, "stop_price"),  # off tick
        ({"type": "stop_limit", "stop_price": "101"}, "price"),  # a stop-limit needs a price
        ({"type": "stop_market", "price": "101", "stop_price": "101"}, "price"),
        ({"type": "stop_market", "stop_price": "101", "time_in_force": "GTC"}, "time_in_force"),
        ({"type": "stop_limit", "price": "101", "stop_price": "101", "post_only": True}, "post_only"),
        ({"type": "stop_market", "stop_price": "-1"}, "stop_price"),
        ({"type": "stop_market", "stop_price": "101", "quantity": "0.005"}, "quantity"),  # under min notional
    ]
    for fields, field in cases:
        order = {"side": "buy", "quantity": "1", **fields}
        with pytest.raises(InvalidInput) as refused:
            order_place(user=alice, market="QTX-USD", **order)
        assert refused.value.field == field, (fields, refused.value.message)


# --- Triggering -----------------------------------------------------------------------


def test_a_trade_at_the_stop_price_triggers_it_in_the_same_command(tape_at_100, alice, bob, carol):
    stop = stop_buy(alice, "1", stop="101", at="101.50")
    print_trade(bob, carol, "100.99")
    assert refreshed(stop).status == "pending"  # below the stop: nothing

    sell(bob, "1", at="101")
    sell(bob, "2", at="101.50")
    before, seq_before = last_trade_id(), book_seq()
    carols = buy(carol, "1", at="101")

    order = refreshed(stop)
    assert order.status == "filled" and order.triggered_at is not None
    # Carol's trade at the stop, then alice's stop-limit taking bob's 101.50, one command.
    assert trades_since(before) == [
        (D("101"), D("1"), "buy", carols.order.pk, seq_before + 1),
        (D("101.50"), D("1"), "buy", stop.order.pk, seq_before + 1),
    ]
    assert book_seq() == seq_before + 1
    assert held(alice, "USD") == 0
    # 101.50 + taker fee 0.203; the rest of the hold was released.
    assert available(alice, "USD") == STARTING_USD - D("101.703")
    assert level("sell", "101.50") == D("1")


def test_a_sweep_through_the_stop_price_triggers_it(tape_at_100, alice, bob, carol):
    stop = stop_buy(alice, "1", stop="101", at="103")
    sell(bob, "1", at="100.50")
    sell(bob, "1", at="102")
    sell(bob, "1", at="103")

    buy(carol, "2", at="102")  # prints 100.50 and 102: never at 101, but through it

    assert refreshed(stop).status == "filled"
    assert [t[:3] for t in trades_since()][-3:] == [
        (D("100.50"), D("1"), "buy"),
        (D("102"), D("1"), "buy"),
        (D("103"), D("1"), "buy"),
    ]


def test_a_stop_limit_gapped_past_its_limit_rests_in_the_book(tape_at_100, alice, bob, carol):
    stop = stop_sell(alice, "1", stop="99", at="98")
    buy(bob, "1", at="95")

    sell(carol, "1", at="95")  # the price gaps from 100 to 95, past the stop and the limit

    order = refreshed(stop)
    assert (order.status, order.filled_quantity) == ("open", 0)
    assert order.triggered_at is not None
    assert level("sell", "98") == D("1")
    assert held(alice, "QTX") == D("1")  # the hold stays with the order now resting


def test_a_stop_market_sell_gapped_fills_at_whatever_bids_there_are(tape_at_100, alice, bob, carol):
    stop = stop_sell(alice, "2", stop="99")
    buy(bob, "1", at="95")
    buy(bob, "3", at="90")

    sell(carol, "1", at="95")

    order = refreshed(stop)
    assert (order.status, order.filled_quantity, order.average_price) == ("filled", D("2"), D("90"))
    assert held(alice, "QTX") == 0


def test_a_triggered_stop_market_buy_spends_what_it_held_and_releases_the_rest(tape_at_100, alice, bob, carol):
    stop = stop_buy(alice, "2", stop="101")  # holds 212.5242
    sell(bob, "1", at="101")
    sell(bob, "1", at="102")
    sell(bob, "5", at="110")

    buy(carol, "1", at="101")

    order = refreshed(stop)
    # 1 at 102 (102.204 with fee) and 1 at 110 (110.22): past the margin, still within the hold.
    assert (order.status, order.filled_quantity) == ("filled", D("2"))
    assert held(alice, "USD") == 0
    assert available(alice, "USD") == STARTING_USD - D("102.204") - D("110.22")


def test_a_stop_market_buy_gapped_far_past_its_margin_buys_only_what_its_hold_pays_for(tape_at_100, alice, bob, carol):
    stop = stop_buy(alice, "2", stop="101")  # holds 212.5242; alice has far more USD, unspent
    sell(bob, "1", at="101")
    sell(bob, "5", at="120")

    buy(carol, "1", at="101")

    order = refreshed(stop)
    # 1.76 x 120 = 211.20 + 0.4224 fee fits 212.5242; 1.77 would not.
    assert (order.status, order.filled_quantity) == ("expired", D("1.76"))
    assert held(alice, "USD") == 0
    assert available(alice, "USD") == STARTING_USD - D("211.6224")


def test_stops_trigger_in_the_order_they_were_accepted(tape_at_100, alice, bob, carol, dave):
    first = stop_sell(dave, "1", stop="99")
    second = stop_sell(alice, "1", stop="99.50")  # crossed first by price, accepted later
    buy(bob, "1", at="99")
    buy(bob, "1", at="98")
    buy(bob, "1", at="97")

    sell(carol, "1", at="99")

    assert refreshed(first).average_price == D("98")
    assert refreshed(second).average_price == D("97")


def test_a_cascade_runs_in_one_command(tape_at_100, alice, bob, carol, dave):
    first = stop_sell(alice, "1", stop="99")
    second = stop_sell(dave, "1", stop="98")  # only the first stop's trade at 97 reaches it
    buy(bob, "1", at="99")
    buy(bob, "1", at="97")
    buy(bob, "1", at="96")
    before, seq_before = last_trade_id(), book_seq()

    sell(carol, "1", at="99")

    assert trades_since(before) == [
        (D("99"), D("1"), "sell", trades_since(before)[0][3], seq_before + 1),
        (D("97"), D("1"), "sell", first.order.pk, seq_before + 1),
        (D("96"), D("1"), "sell", second.order.pk, seq_before + 1),
    ]
    assert book_seq() == seq_before + 1
    assert refreshed(first).status == refreshed(second).status == "filled"


def test_a_cascade_past_the_bound_continues_in_the_commands_that_follow(
    tape_at_100, alice, bob, carol, dave, monkeypatch
):
    monkeypatch.setattr("orders.engine.stops.MAX_TRIGGERS_PER_COMMAND", 2)
    stops = [stop_sell(owner, "1", stop="99") for owner in (alice, dave, alice, dave, alice)]
    for price in ("99", "98", "97", "96", "95", "94"):
        buy(bob, "1", at=price)
    before, seq_before = last_trade_id(), book_seq()

    sell(carol, "1", at="99")

    # Each command triggers at most two stops; the rest ran in the commands after it,
    # before order_place returned.
    assert [(t[0], t[4] - seq_before) for t in trades_since(before)] == [
        (D("99"), 1),
        (D("98"), 1),
        (D("97"), 1),
        (D("96"), 2),
        (D("95"), 2),
        (D("94"), 3),
    ]
    assert book_seq() == seq_before + 3
    assert [refreshed(stop).status for stop in stops] == ["filled"] * 5


def test_a_triggered_stop_does_not_trade_with_its_owner(tape_at_100, alice, bob, carol):
    own_bid = buy(alice, "1", at="98")
    buy(bob, "1", at="97")
    stop = stop_sell(alice, "1", stop="99")

    print_trade(carol, bob, "99")  # bob's bid at 99 met by carol: the tape says 99

    order = refreshed(stop)
    # Alice's own bid at 98 is the best: self-trade prevention expires her stop.
    assert (order.status, order.filled_quantity) == ("expired", 0)
    assert refreshed(own_bid).status == "open"
    assert level("buy", "97") == D("1")
    assert held(alice, "QTX") == 0


def test_a_triggered_stop_limit_takes_its_place_behind_the_orders_already_there(tape_at_100, alice, bob, carol, dave):
    stop = stop_buy(alice, "1", stop="101", at="101")
    sell(bob, "1", at="101")

    carols = buy(carol, "3", at="101")  # trades 1 at 101, rests 2, then alice's stop rests behind

    order = refreshed(stop)
    assert order.status == "open"
    assert order.priority > refreshed(carols).priority
    assert level("buy", "101") == D("3")
    fills = sell(dave, "3", at="101").fills
    assert [fill.quantity for fill in fills] == [D("2"), D("1")]
    assert refreshed(carols).status == refreshed(stop).status == "filled"


def test_on_a_halted_market_stops_wait_and_can_be_cancelled(tape_at_100, market, alice, bob, carol, dave):
    kept = stop_sell(alice, "1", stop="99")
    dropped = stop_sell(dave, "1", stop="99")
    market_halt(market=market)

    with pytest.raises(Conflict) as halted:
        stop_sell(alice, "1", stop="98")
    assert halted.value.code == "MARKET_HALTED"
    with pytest.raises(Conflict):
        order_amend(user=alice, order_id=kept.order.pk, stop_price="98")
    assert order_cancel(user=dave, order_id=dropped.order.pk).status == "cancelled"
    assert held(dave, "QTX") == 0
    assert refreshed(kept).status == "pending"

    market_resume(market=market)  # through a call auction (docs/API.md, "Call auctions")
    Market.objects.filter(pk=market.pk).update(auction_ends_at=timezone.now())
    assert auction_end(market_id=market.pk)
    buy(bob, "1", at="98")
    print_trade(carol, bob, "99")
    assert refreshed(kept).status == "filled"


# --- Cancel and amend ------------------------------------------------------------------


def test_cancelling_a_pending_stop_releases_its_hold(tape_at_100, alice):
    stop = stop_buy(alice, "1", stop="101")
    order = order_cancel(user=alice, order_id=stop.order.pk)

    assert order.status == "cancelled"
    assert held(alice, "USD") == 0 and available(alice, "USD") == STARTING_USD


def test_cancel_all_takes_pending_stops_too(tape_at_100, alice):
    stop_buy(alice, "1", stop="101")
    stop_sell(alice, "1", stop="99", at="98")
    buy(alice, "1", at="95")

    cancelled = orders_cancel_all(user=alice)

    assert sorted(order.type for order in cancelled) == ["limit", "stop_limit", "stop_market"]
    assert held(alice, "USD") == held(alice, "QTX") == 0


def test_a_pending_stop_shrinks_and_keeps_its_place(tape_at_100, alice):
    stop = stop_buy(alice, "2", stop="101", at="102")
    before = refreshed(stop).priority

    order_amend(user=alice, order_id=stop.order.pk, quantity="1")

    order = refreshed(stop)
    assert (order.status, order.quantity, order.remaining_quantity, order.priority) == ("pending", 1, 1, before)
    assert held(alice, "USD") == D("102.204")


def test_a_new_stop_price_takes_a_new_place_and_a_new_hold(tape_at_100, alice, dave):
    stop = stop_buy(alice, "1", stop="101")
    later = stop_buy(dave, "1", stop="102")

    result = order_amend(user=alice, order_id=stop.order.pk, stop_price="103", quantity="2")

    order = refreshed(result)
    assert (order.status, order.stop_price, order.quantity) == ("pending", D("103"), D("2"))
    assert order.priority > refreshed(later).priority
    # 103 + 5% = 108.15 a unit, x2 = 216.30, + 0.4326 fee reserve.
    assert held(alice, "USD") == D("216.7326")


def test_a_pending_stop_limit_gets_a_new_limit_price(tape_at_100, alice):
    stop = stop_buy(alice, "1", stop="101", at="102")

    order_amend(user=alice, order_id=stop.order.pk, price="105")

    assert (refreshed(stop).price, refreshed(stop).status) == (D("105"), "pending")
    assert held(alice, "USD") == D("105.21")


def test_a_pending_stop_cannot_be_moved_to_a_stop_price_already_reached(tape_at_100, alice):
    stop = stop_sell(alice, "1", stop="99")
    with pytest.raises(InvalidInput) as refused:
        order_amend(user=alice, order_id=stop.order.pk, stop_price="100")
    assert refused.value.field == "stop_price"
    with pytest.raises(InvalidInput) as refused:
        order_amend(user=alice, order_id=stop.order.pk, price="98")
    assert refused.value.field == "price"  # a stop-market has no limit price
    assert refreshed(stop).stop_price == D("99")


def test_a_pending_stop_amended_beyond_the_funds_is_refused(tape_at_100, make_trader):
    poor = make_trader("poor", USD="250")
    stop = stop_buy(poor, "1", stop="101", at="102")
    with pytest.raises(InsufficientFunds):
        order_amend(user=poor, order_id=stop.order.pk, quantity="3")
    assert held(poor, "USD") == D("102.204")


def test_a_triggered_stop_has_no_stop_price_to_amend(tape_at_100, alice, bob, carol):
    stop = stop_sell(alice, "1", stop="99", at="98")
    print_trade(carol, bob, "99")  # triggers; no bid at 98 or better: it rests
    assert refreshed(stop).status == "open"

    with pytest.raises(Conflict) as refused:
        order_amend(user=alice, order_id=stop.order.pk, stop_price="97")
    assert (refused.value.code, refused.value.field) == ("STOP_TRIGGERED", "stop_price")
    order_amend(user=alice, order_id=stop.order.pk, price="98.50")  # a limit order now
    assert level("sell", "98.50") == D("1")


def test_limit_orders_have_no_stop_price(tape_at_100, alice):
    order = buy(alice, "1", at="95").order
    with pytest.raises(InvalidInput) as refused:
        order_amend(user=alice, order_id=order.pk, stop_price="101")
    assert refused.value.field == "stop_price"


# --- What is announced -----------------------------------------------------------------


def test_the_owner_hears_the_stop_pending_then_triggered(
    tape_at_100, alice, bob, carol, django_capture_on_commit_callbacks, published
):
    with django_capture_on_commit_callbacks(execute=True):
        stop = stop_sell(alice, "1", stop="99")
    [accepted] = [e for batch in published for e in batch if isinstance(e, OrderChanged)]
    assert (accepted.order["status"], accepted.order["stop_price"]) == ("pending", "99.00000000")
    assert accepted.order["triggered_at"] is None
    buy(bob, "1", at="98")
    sell(bob, "1", at="99")
    published.clear()

    with django_capture_on_commit_callbacks(execute=True):
        buy(carol, "1", at="99")

    [batch] = published
    [book] = [e for e in batch if isinstance(e, BookChanged)]
    assert book.seq == book.prev_seq + 1  # one command, one book message
    changed = {e.order["id"]: e.order for e in batch if isinstance(e, OrderChanged)}
    assert changed[stop.order.pk]["status"] == "filled"
    assert changed[stop.order.pk]["triggered_at"] is not None
    assert changed[stop.order.pk]["type"] == "stop_market"


def test_a_stop_left_triggered_but_pending_runs_with_the_next_trade(tape_at_100, alice, bob, carol, dave):
    # As a command past the cascade bound leaves it, had its follow-up never run.
    stop = stop_sell(alice, "1", stop="90")
    Order.objects.filter(pk=stop.order.pk).update(triggered_at=refreshed(stop).created_at)
    buy(dave, "1", at="95")

    print_trade(bob, carol, "100.50")  # nowhere near 90: the stop runs because it was due

    order = refreshed(stop)
    assert (order.status, order.average_price) == ("filled", D("95"))
