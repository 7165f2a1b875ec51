"""Trailing stops (docs/API.md, "Trailing stops"): a stop whose stop price trails the best
trade price since acceptance (a sell's the highest, minus the distance; a buy's the
lowest, plus it), moved in the transaction of the trade that moved it, and triggered like
any stop, as a market order or as a limit `limit_offset` beyond its stop.

alice, bob and carol each start with 10,000 USD and 100 QTX on QTX-USD (tick 0.01, lot
0.01; maker 0.1%, taker 0.2%). A trade at 100 is on the tape before each test.
"""

from decimal import Decimal

import pytest

from marketdata.models import Trade
from orders.engine import rules
from orders.events import OrderChanged
from orders.models import Order
from orders.selectors import reconcile
from orders.services import order_amend, order_place
from quantumtrades.core.errors import InvalidInput

from .stories import STARTING_QTX, STARTING_USD, available, buy, held, print_trade, sell, stop_sell

D = Decimal


@pytest.fixture(autouse=True)
def books_balance_afterwards(db):
    yield
    assert reconcile() == []


@pytest.fixture
def tape_at_100(market, bob, carol):
    print_trade(bob, carol, "100")
    return Trade.objects.order_by("-id").values_list("id", flat=True).first()


def trailing(user, side, quantity="1", **terms):
    terms = {key: D(value) if key != "time_in_force" else value for key, value in terms.items()}
    return order_place(user=user, market="QTX-USD", side=side, type="trailing_stop", quantity=D(quantity), **terms)


def fresh(order):
    return Order.objects.get(pk=getattr(order, "order", order).pk)


def tape_after(first_id):
    return [(t.price, t.quantity) for t in Trade.objects.filter(id__gt=first_id).order_by("id")]


@pytest.mark.parametrize(
    ("terms", "field"),
    [
        pytest.param({}, "trailing_delta", id="no distance"),
        pytest.param({"trailing_delta": "1", "trailing_percent": "1"}, "trailing_delta", id="both distances"),
        pytest.param({"trailing_delta": "0.005"}, "trailing_delta", id="delta off the tick"),
        pytest.param({"trailing_percent": "0"}, "trailing_percent", id="percent zero"),
        pytest.param({"trailing_percent": "50.5"}, "trailing_percent", id="percent above 50"),
        pytest.param({"trailing_percent": "1.0005"}, "trailing_percent", id="percent with 4 decimals"),
        pytest.param({"trailing_delta": "1", "stop_price": "95"}, "stop_price", id="a stop price"),
        pytest.param({"trailing_delta": "1", "price": "95"}, "price", id="a price"),
        pytest.param({"trailing_delta": "1", "time_in_force": "GTC"}, "time_in_force", id="market GTC"),
        pytest.param({"trailing_delta": "1", "limit_offset": "0.001"}, "limit_offset", id="offset off the tick"),
        pytest.param({"trailing_delta": "1", "limit_offset": "200"}, "limit_offset", id="a limit below zero"),
        pytest.param({"trailing_delta": "150"}, "trailing_delta", id="a stop below zero"),
    ],
)
def test_a_trailing_stop_is_refused_with_the_field_at_fault(tape_at_100, alice, terms, field):
    with pytest.raises(InvalidInput) as refused:
        trailing(alice, "sell", **terms)
    assert refused.value.field == field
    assert not Order.objects.filter(type="trailing_stop").exists()


def test_trailing_fields_on_another_order_and_a_market_that_never_traded_are_refused(market, alice):
    with pytest.raises(InvalidInput) as refused:
        buy(alice, "1", at="100", trailing_delta=D("1"))
    assert refused.value.field == "trailing_delta"
    with pytest.raises(InvalidInput, match="has not traded yet") as refused:
        trailing(alice, "sell", trailing_delta="1")
    assert refused.value.field == "type"


def test_a_trailing_sell_starts_below_the_last_trade_and_follows_the_highest_price(
    tape_at_100, alice, bob, carol, django_capture_on_commit_callbacks, published
):
    stop = trailing(alice, "sell", trailing_delta="2").order
    assert (stop.status, stop.stop_price, stop.trailing_reference, held(alice, "QTX")) == ("pending", 98, 100, 1)

    sell(bob, "1", at="103")
    published.clear()
    with django_capture_on_commit_callbacks(execute=True):
        buy(carol, "1", at="103")  # prints 103: the stop moves to 101, in this transaction

    moved = fresh(stop)
    assert (moved.stop_price, moved.trailing_reference, moved.status) == (101, 103, "pending")
    [changed] = [e for batch in published for e in batch if isinstance(e, OrderChanged) and e.order["id"] == stop.pk]
    assert changed.order["stop_price"] == "101.00000000"

    print_trade(bob, carol, "102")  # lower: the stop stays
    assert fresh(stop).stop_price == 101


def test_a_trailing_buy_follows_the_lowest_price_and_its_hold_covers_every_stop(tape_at_100, alice, bob, carol):
    stop = trailing(alice, "buy", "2", trailing_percent="1").order
    hold_price = rules.stop_market_buy_price(stop.market, D("101"))  # 101 + 5 %, to the tick
    needed = rules.hold_for(market=stop.market, side="buy", price=hold_price, quantity=D("2"))
    assert (stop.stop_price, held(alice, "USD")) == (101, needed)

    print_trade(bob, carol, "95.03")  # 95.03 x 1.01 = 95.9803: down to the tick, 95.98

    assert (fresh(stop).stop_price, fresh(stop).trailing_reference, held(alice, "USD")) == (
        D("95.98"),
        D("95.03"),
        needed,
    )
    sell(bob, "2", at="96")
    print_trade(bob, carol, "96")  # reaches 95.98: triggered as a market buy of 2 at 96

    order = fresh(stop)
    assert (order.status, order.filled_quantity, order.triggered_at is not None) == ("filled", 2, True)
    assert held(alice, "USD") == 0
    assert available(alice, "USD") == STARTING_USD - D("192") - D("0.384")


def test_a_trailing_stop_in_a_cascade(tape_at_100, alice, bob, carol, make_trader):
    dave, erin = make_trader("dave", QTX="10"), make_trader("erin", QTX="10")
    stop = trailing(alice, "sell", trailing_delta="2").order  # stop 98
    plain = stop_sell(dave, "1", stop="99.50").order
    buy(bob, "1", at="105")
    buy(bob, "1", at="101")
    buy(carol, "1", at="99.50")
    buy(carol, "1", at="98")
    first = Trade.objects.order_by("-id").values_list("id", flat=True).first()

    sell(erin, "2", at="101")  # one command

    # 105 moves the trailing stop to 103; 101, later in the same command, reaches it: a
    # market sell that prints 99.50, which reaches dave's stop, which prints 98.
    assert tape_after(first) == [(D("105"), 1), (D("101"), 1), (D("99.50"), 1), (D("98"), 1)]
    order = fresh(stop)
    assert (order.status, order.stop_price, order.trailing_reference, order.average_price) == (
        "filled",
        103,
        105,
        D("99.50"),
    )
    assert fresh(plain).status == "filled"
    assert fresh(plain).triggered_at == order.triggered_at
    assert (available(alice, "QTX"), held(alice, "QTX")) == (STARTING_QTX - 1, 0)


def test_a_trade_that_reaches_the_stop_before_a_higher_one_triggers_it_where_it_stood(tape_at_100, alice, bob, carol):
    stop = trailing(alice, "sell", trailing_delta="2").order  # stop 98
    sell(bob, "1", at="97")
    sell(bob, "1", at="104")
    buy(bob, "5", at="90")

    buy(carol, "2", at="104")  # prints 97 (reaching 98), then 104: triggered at 98, never moved

    order = fresh(stop)
    assert (order.status, order.stop_price, order.trailing_reference) == ("filled", 98, 100)


def test_a_trailing_stop_with_a_limit_offset_triggers_as_a_limit_beyond_its_stop(tape_at_100, alice, bob, carol):
    stop = trailing(alice, "sell", trailing_delta="2", limit_offset="0.50").order  # stop 98, limit 97.50
    assert (stop.time_in_force, stop.price) == ("GTC", None)

    print_trade(bob, carol, "98")

    order = fresh(stop)
    assert (order.status, order.price, order.stop_price) == ("open", D("97.50"), 98)
    assert (held(alice, "QTX"), order.held) == (1, 1)


def test_a_pending_trailing_stop_cannot_be_amended(tape_at_100, alice):
    stop = trailing(alice, "sell", trailing_delta="2").order

    with pytest.raises(InvalidInput, match="cannot be amended") as refused:
        order_amend(user=alice, order_id=stop.pk, quantity=D("2"))

    assert refused.value.field == "quantity"
    assert (fresh(stop).quantity, held(alice, "QTX")) == (1, 1)
