"""Every way the engine refuses a command, and that a refusal changes nothing.

Bad input is an InvalidInput naming the `field` at fault (the API's 400); a state that
does not allow the command is a Conflict with a code (409); someone else's order is a
NotFound, exactly like a missing one (404).
"""

from decimal import Decimal

import pytest

from accounts.models import LedgerEntry
from marketdata.models import Market
from orders.models import Order
from orders.selectors import reconcile
from orders.services import order_amend, order_cancel, order_place, order_validate, orders_cancel_all
from quantumtrades.core.errors import Conflict, InsufficientFunds, InvalidInput, NotFound

from .stories import STARTING_USD, available, buy, held, sell

D = Decimal


@pytest.fixture(autouse=True)
def nothing_changed_on_a_refusal(db):
    yield
    assert reconcile() == []


def place(user, **order):
    order = {"market": "QTX-USD", "side": "buy", "type": "limit", "quantity": "1", "price": "100", **order}
    return order_place(user=user, **order)


@pytest.mark.parametrize(
    ("order", "field"),
    [
        pytest.param({"side": "hold"}, "side", id="unknown side"),
        pytest.param({"side": None}, "side", id="missing side"),
        pytest.param({"type": "stop"}, "type", id="unknown type"),
        pytest.param({"time_in_force": "DAY"}, "time_in_force", id="unknown time in force"),
        pytest.param({"time_in_force": "gtc"}, "time_in_force", id="time in force in lower case"),
        pytest.param({"price": None}, "price", id="limit order without a price"),
        pytest.param({"type": "market", "price": "100"}, "price", id="market order with a price"),
        pytest.param({"type": "market", "price": None, "time_in_force": "GTC"}, "time_in_force", id="market GTC"),
        pytest.param({"type": "market", "price": None, "post_only": True}, "post_only", id="post-only market"),
        pytest.param({"time_in_force": "IOC", "post_only": True}, "post_only", id="post-only IOC"),
        pytest.param({"time_in_force": "FOK", "post_only": True}, "post_only", id="post-only FOK"),
        pytest.param({"post_only": "yes"}, "post_only", id="post only not a boolean"),
        pytest.param({"price": "100.005"}, "price", id="price off the tick"),
        pytest.param({"quantity": "1.005"}, "quantity", id="quantity off the lot"),
        pytest.param({"quantity": "0.000000001"}, "quantity", id="more than 8 decimals"),
        pytest.param({"price": "100.000000001"}, "price", id="price with more than 8 decimals"),
        pytest.param({"quantity": "0"}, "quantity", id="zero quantity"),
        pytest.param({"quantity": "-1"}, "quantity", id="negative quantity"),
        pytest.param({"price": "0"}, "price", id="zero price"),
        pytest.param({"price": "-100"}, "price", id="negative price"),
        pytest.param({"quantity": "NaN"}, "quantity", id="NaN quantity"),
        pytest.param({"quantity": "sNaN"}, "quantity", id="signalling NaN quantity"),
        pytest.param({"price": "Infinity"}, "price", id="infinite price"),
        pytest.param({"price": "-Infinity"}, "price", id="minus infinite price"),
        pytest.param({"quantity": "one"}, "quantity", id="quantity not a number"),
        pytest.param({"quantity": 1.5}, "quantity", id="quantity as a float"),
        pytest.param({"quantity": True}, "quantity", id="quantity as a boolean"),
        pytest.param({"quantity": "0.01", "price": "50"}, "quantity", id="below the minimum notional"),
        pytest.param({"quantity": "1e21"}, "quantity", id="quantity too large"),
        pytest.param({"price": "1e12", "quantity": "1e10"}, "quantity", id="notional too large"),
        pytest.param({"client_order_id": ""}, "client_order_id", id="empty client order id"),
        pytest.param({"client_order_id": "x" * 65}, "client_order_id", id="client order id too long"),
        pytest.param({"client_order_id": "a\nb"}, "client_order_id", id="client order id not printable"),
        pytest.param({"client_order_id": 7}, "client_order_id", id="client order id not text"),
        pytest.param({"market": "NOPE-USD"}, "symbol", id="unknown symbol"),
        pytest.param({"market": 7}, "symbol", id="symbol not text"),
    ],
)
def test_bad_input_is_refused_naming_the_field(market, alice, order, field):
    with pytest.raises(InvalidInput) as refused:
        place(alice, **order)

    assert refused.value.field == field
    assert Order.objects.count() == 0
    assert Market.objects.get().book_seq == 0
    assert available(alice, "USD") == STARTING_USD


def test_order_validate_accepts_a_good_order_and_fills_in_defaults(market):
    limit = order_validate(market=market, side="buy", quantity="1.5", price="100.25")
    at_market = order_validate(market=market, side="sell", type="market", quantity="2")

    assert (limit.time_in_force, limit.quantity, limit.price) == ("GTC", D("1.5"), D("100.25"))
    assert (at_market.time_in_force, at_market.price) == ("IOC", None)


def test_an_order_beyond_the_available_funds_is_refused(market, make_trader):
    dave = make_trader("dave", USD="100")

    # 1 x 100 plus the 0.2 reserved for the taker fee.
    with pytest.raises(InsufficientFunds) as refused:
        buy(dave, "1", at="100")

    assert refused.value.field == "quantity"
    assert Order.objects.count() == 0
    assert LedgerEntry.objects.filter(user=dave).count() == 1  # the deposit, nothing else


def test_a_sell_beyond_the_available_base_is_refused(market, alice, bob):
    sell(alice, "60", at="100")

    with pytest.raises(InsufficientFunds):
        sell(alice, "41", at="101")

    assert held(alice, "QTX") == 60


# --- Cancel -----------------------------------------------------------------------------


def test_cancelling_someone_elses_order_looks_like_a_missing_order(market, alice, bob):
    bid = buy(alice, "1", at="99")

    with pytest.raises(NotFound):
        order_cancel(user=bob, order_id=bid.order.pk)

    assert Order.objects.get(pk=bid.order.pk).status == "open"
    assert held(alice, "USD") == D("99.198")


@pytest.mark.parametrize("order_id", [987654, -1, 10**20, "not-a-number", None])
def test_cancelling_a_missing_order_is_not_found(market, alice, order_id):
    with pytest.raises(NotFound):
        order_cancel(user=alice, order_id=order_id)


def test_cancelling_a_filled_order_is_a_conflict(market, alice, bob):
    ask = sell(bob, "1", at="100")
    buy(alice, "1", at="100")

    with pytest.raises(Conflict) as refused:
        order_cancel(user=bob, order_id=ask.order.pk)

    assert refused.value.code == "ORDER_NOT_OPEN"


def test_cancelling_twice_is_a_conflict_and_releases_once(market, alice):
    bid = buy(alice, "1", at="99")
    order_cancel(user=alice, order_id=bid.order.pk)

    with pytest.raises(Conflict) as refused:
        order_cancel(user=alice, order_id=bid.order.pk)

    assert refused.value.code == "ORDER_NOT_OPEN"
    assert (available(alice, "USD"), held(alice, "USD")) == (STARTING_USD, 0)


def test_cancel_all_on_an_unknown_market_is_bad_input(market, alice):
    with pytest.raises(InvalidInput) as refused:
        orders_cancel_all(user=alice, market="NOPE-USD")

    assert refused.value.field == "symbol"


# --- Amend ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("change", "field"),
    [
        pytest.param({}, "price", id="nothing to change"),
        pytest.param({"price": "99.999"}, "price", id="price off the tick"),
        pytest.param({"quantity": "1.005"}, "quantity", id="quantity off the lot"),
        pytest.param({"quantity": "0"}, "quantity", id="zero quantity"),
        pytest.param({"price": "NaN"}, "price", id="NaN price"),
        pytest.param({"price": "-1"}, "price", id="negative price"),
        pytest.param({"quantity": "0.000000001"}, "quantity", id="more than 8 decimals"),
        pytest.param({"quantity": "0.01"}, "quantity", id="below the minimum notional"),
        pytest.param({"price": "1e19", "quantity": "100"}, "quantity", id="notional too large"),
    ],
)
def test_a_bad_amendment_is_refused_naming_the_field(market, alice, change, field):
    bid = buy(alice, "2", at="99")

    with pytest.raises(InvalidInput) as refused:
        order_amend(user=alice, order_id=bid.order.pk, **change)

    assert refused.value.field == field
    order = Order.objects.get(pk=bid.order.pk)
    assert (order.price, order.quantity, order.held) == (D("99"), D("2"), D("198.396"))


def test_amending_to_no_more_than_the_filled_quantity_is_refused(market, alice, bob):
    ask = sell(bob, "3", at="100")
    buy(alice, "2", at="100")

    with pytest.raises(InvalidInput) as refused:
        order_amend(user=bob, order_id=ask.order.pk, quantity=D("2"))

    assert refused.value.field == "quantity"
    assert Order.objects.get(pk=ask.order.pk).remaining_quantity == 1


def test_amending_someone_elses_order_looks_like_a_missing_order(market, alice, bob):
    bid = buy(alice, "1", at="99")

    with pytest.raises(NotFound):
        order_amend(user=bob, order_id=bid.order.pk, price=D("98"))


def test_amending_a_cancelled_order_is_a_conflict(market, alice):
    bid = buy(alice, "1", at="99")
    order_cancel(user=alice, order_id=bid.order.pk)

    with pytest.raises(Conflict) as refused:
        order_amend(user=alice, order_id=bid.order.pk, price=D("98"))

    assert refused.value.code == "ORDER_NOT_OPEN"


def test_an_order_is_checked_against_rules_changed_since_this_process_read_the_market(market, alice):
    place(alice, price="100.05")  # the process now remembers QTX-USD's rules: tick 0.01
    Market.objects.filter(pk=market.pk).update(tick_size=D("0.10"))

    with pytest.raises(InvalidInput) as refused:
        place(alice, price="100.05")
    assert refused.value.field == "price"
    assert place(alice, price="100.10").order.price == D("100.10")
