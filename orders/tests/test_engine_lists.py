"""Order lists (docs/API.md, "Order lists"): an OCO is a limit and a stop on one side with
one hold for both; the first to act (a fill, even partial, or the stop's trigger) cancels
the other, and cancelling either cancels the list.

alice, bob and carol each start with 10,000 USD and 100 QTX; QTX-USD charges the maker
0.1% and the taker 0.2%. A buy holds notional + 0.2%; a sell its quantity. Every story
starts with one trade at 100 on the tape (`tape_at_100`), the price an OCO is judged by.
"""

from decimal import Decimal

import pytest

from accounts.models import LedgerEntry
from orders.models import Leg, Order, OrderList, OrderStatus
from orders.selectors import order_list_for_user, orders_of_list, reconcile
from orders.services import bracket_place, oco_place, order_amend, order_cancel, order_list_cancel
from quantumtrades.core.errors import Conflict, InsufficientFunds, InvalidInput, NotFound

from .stories import STARTING_QTX, STARTING_USD, available, buy, held, print_trade, sell, stop_sell

D = Decimal


@pytest.fixture(autouse=True)
def books_balance_afterwards(db):
    yield
    assert reconcile() == []


@pytest.fixture
def tape_at_100(market, bob, carol):
    print_trade(bob, carol, "100")


def oco(user, side, quantity, price, stop_price, stop_limit_price=None, **options):
    return oco_place(
        user=user,
        market="QTX-USD",
        side=side,
        quantity=D(quantity),
        price=D(price),
        stop_price=D(stop_price),
        stop_limit_price=None if stop_limit_price is None else D(stop_limit_price),
        **options,
    )


def legs(result):
    """The list's orders as the database has them: {leg: order}."""
    return {order.leg: order for order in Order.objects.filter(order_list=result.order_list)}


def list_status(result):
    return OrderList.objects.get(pk=result.order_list.pk).status


def test_a_sell_oco_holds_its_quantity_once(tape_at_100, alice):
    result = oco(alice, "sell", "2", "110", "95")

    orders = legs(result)
    limit, stop = orders[Leg.LIMIT], orders[Leg.STOP]
    assert (limit.type, limit.status, limit.price, limit.held) == ("limit", "open", D("110"), D("2"))
    assert (stop.type, stop.status, stop.stop_price, stop.held) == ("stop_market", "pending", D("95"), D("0"))
    assert {o.order_list_id for o in orders.values()} == {result.order_list.pk}
    assert held(alice, "QTX") == D("2")
    assert available(alice, "QTX") == STARTING_QTX - 2
    assert result.order_list.kind == "oco" and list_status(result) == "active"


def test_a_buy_oco_holds_the_larger_need_on_its_limit(tape_at_100, alice):
    # The limit: 2 x 90 + 0.2% = 180.36. The stop-limit: 2 x 112 + 0.2% = 224.448 -> 224.448.
    result = oco(alice, "buy", "2", "90", "110", stop_limit_price="112")

    orders = legs(result)
    assert orders[Leg.LIMIT].held == D("224.448")
    assert orders[Leg.STOP].held == 0
    assert held(alice, "USD") == D("224.448")


def test_a_partial_fill_of_the_limit_cancels_the_stop_and_shrinks_the_hold(tape_at_100, alice, bob):
    result = oco(alice, "buy", "2", "90", "110", stop_limit_price="112")

    sell(bob, "0.5", at="90")

    orders = legs(result)
    limit, stop = orders[Leg.LIMIT], orders[Leg.STOP]
    assert (limit.status, limit.remaining_quantity) == ("partially_filled", D("1.5"))
    assert stop.status == "cancelled"
    # What remains holds its own need only: 1.5 x 90 + 0.2% = 135.27.
    assert limit.held == D("135.27") == held(alice, "USD")
    # alice paid 45 + the maker fee 0.045 for her 0.5 QTX: nothing else left her.
    assert available(alice, "USD") == STARTING_USD - D("45.045") - D("135.27")
    assert list_status(result) == "active"


def test_the_stops_trigger_cancels_the_limit_and_moves_the_hold(tape_at_100, alice, bob, carol):
    result = oco(alice, "sell", "2", "110", "95")
    buy(bob, "3", at="94")

    sell(carol, "0.5", at="95")  # no trade: bob bids 94
    assert legs(result)[Leg.STOP].status == "pending"
    sell(carol, "0.5", at="94")  # a trade at 94 reaches the stop

    orders = legs(result)
    limit, stop = orders[Leg.LIMIT], orders[Leg.STOP]
    assert limit.status == "cancelled"
    assert (stop.status, stop.filled_quantity) == ("filled", D("2"))
    assert held(alice, "QTX") == 0
    assert available(alice, "QTX") == STARTING_QTX - 2
    # The hold moved in the ledger: released by the limit, held by the stop, in one command.
    references = list(
        LedgerEntry.objects.filter(user=alice, asset_id="QTX", kind__in=["hold", "release"])
        .order_by("id")
        .values_list("kind", "reference")
    )
    assert references[-3:] == [
        ("release", f"order:{limit.pk}"),
        ("hold", f"order:{stop.pk}"),
        ("release", f"order:{stop.pk}"),
    ]
    assert list_status(result) == "done"


def test_a_sweep_that_fills_the_limit_and_reaches_the_stop_acts_once(tape_at_100, alice, bob, carol):
    """The limit leg fills in the same command whose other trade reaches the stop: the
    fill came first, so the stop is cancelled and never triggers."""
    result = oco(alice, "sell", "1", "101", "99")
    sell(bob, "1", at="99")  # an ask below the last trade: the sweep's first trade reaches the stop

    outcome = buy(carol, "2", at="101")

    assert [(f.price, f.quantity) for f in outcome.fills] == [(D("99"), D("1")), (D("101"), D("1"))]
    orders = legs(result)
    assert orders[Leg.LIMIT].status == "filled"
    assert (orders[Leg.STOP].status, orders[Leg.STOP].triggered_at) == ("cancelled", None)
    # alice sold exactly 1 QTX, at 101, less the maker fee 0.101.
    assert available(alice, "QTX") == STARTING_QTX - 1 and held(alice, "QTX") == 0
    assert available(alice, "USD") == STARTING_USD + D("101") - D("0.101")
    assert list_status(result) == "done"


def test_a_stop_crossed_by_an_earlier_stage_does_not_trigger_once_its_limit_filled(
    tape_at_100, alice, bob, carol, make_trader
):
    """Two stages of one command. dave's buy trades at 99 and 101: that reaches carol's
    sell stop at 99 and alice's buy stop at 101. carol's, accepted first, triggers first
    and sells into alice's limit at 98: the fill cancels alice's stop, which had been
    reached too. Exactly one leg acts, though an ask at 102 would have filled the stop."""
    dave = make_trader("dave", USD="10000")
    stop_sell(carol, "1", "99")
    result = oco(alice, "buy", "1", "98", "101")
    sell(bob, "1", at="99")
    sell(bob, "1", at="101")
    sell(bob, "1", at="102")

    buy(dave, "2", at="101")

    orders = legs(result)
    assert (orders[Leg.LIMIT].status, orders[Leg.LIMIT].filled_notional) == ("filled", D("98"))
    assert (orders[Leg.STOP].status, orders[Leg.STOP].filled_quantity) == ("cancelled", D("0"))
    assert available(alice, "QTX") == STARTING_QTX + 1
    assert available(alice, "USD") == STARTING_USD - D("98") - D("0.098") and held(alice, "USD") == 0
    assert list_status(result) == "done"


def test_a_limit_that_takes_at_once_cancels_the_stop(tape_at_100, alice, bob):
    sell(bob, "1", at="95")  # an ask below the last trade
    result = oco(alice, "buy", "2", "96", "110")

    assert [(f.price, f.quantity) for f in result.fills] == [(D("95"), D("1"))]
    orders = legs(result)
    assert (orders[Leg.LIMIT].status, orders[Leg.LIMIT].remaining_quantity) == ("partially_filled", D("1"))
    assert orders[Leg.STOP].status == "cancelled"
    # The rest holds its own need: 96 + 0.2% = 96.192.
    assert held(alice, "USD") == D("96.192")


def test_cancelling_one_leg_cancels_the_list(tape_at_100, alice):
    result = oco(alice, "buy", "1", "90", "110")
    stop = legs(result)[Leg.STOP]

    order_cancel(user=alice, order_id=stop.pk)

    assert {order.status for order in legs(result).values()} == {"cancelled"}
    assert held(alice, "USD") == 0 and available(alice, "USD") == STARTING_USD
    assert list_status(result) == "done"


def test_a_list_is_cancelled_as_one_and_only_by_its_owner(tape_at_100, alice, bob):
    result = oco(alice, "sell", "1", "110", "90", stop_limit_price="89")
    list_id = result.order_list.pk

    with pytest.raises(NotFound):
        order_list_cancel(user=bob, list_id=list_id)
    assert order_list_for_user(bob, list_id) is None

    order_list = order_list_cancel(user=alice, list_id=list_id)
    assert order_list.status == "done"
    assert [o.status for o in orders_of_list(order_list)] == ["cancelled", "cancelled"]
    assert held(alice, "QTX") == 0
    with pytest.raises(Conflict):
        order_list_cancel(user=alice, list_id=list_id)


def test_an_order_of_a_list_is_not_amended(tape_at_100, alice):
    result = oco(alice, "sell", "1", "110", "90")
    with pytest.raises(InvalidInput):
        order_amend(user=alice, order_id=legs(result)[Leg.LIMIT].pk, price=D("111"))


@pytest.mark.parametrize(
    ("side", "price", "stop_price", "field"),
    [
        ("sell", "100", "95", "price"),  # a sell's limit at the last trade would take at once
        ("sell", "110", "100", "stop_price"),  # ... and its stop would trigger at once
        ("buy", "100", "110", "price"),
        ("buy", "90", "99", "stop_price"),
    ],
)
def test_prices_that_would_act_at_once_are_refused(tape_at_100, alice, side, price, stop_price, field):
    with pytest.raises(InvalidInput) as refused:
        oco(alice, side, "1", price, stop_price)
    assert refused.value.field == field
    assert not OrderList.objects.exists()


def test_bad_terms_are_refused_with_their_field(tape_at_100, alice):
    with pytest.raises(InvalidInput) as refused:
        oco(alice, "sell", "1", "110", "90", stop_limit_price="89.001")
    assert refused.value.field == "stop_limit_price"
    with pytest.raises(InvalidInput) as refused:
        oco(alice, "sell", "1.001", "110", "90")
    assert refused.value.field == "quantity"
    with pytest.raises(InsufficientFunds):
        oco(alice, "sell", "101", "110", "90")


def test_a_market_that_never_traded_is_judged_by_its_book(market, alice, bob):
    with pytest.raises(InvalidInput) as refused:
        oco(alice, "sell", "1", "110", "90")
    assert refused.value.field == "price"
    buy(bob, "1", at="98")
    sell(bob, "1", at="102")  # middle 100
    result = oco(alice, "sell", "1", "101", "99")
    assert legs(result)[Leg.LIMIT].status == OrderStatus.OPEN


def test_a_repeated_client_order_id_answers_the_original_list(tape_at_100, alice):
    first = oco(alice, "sell", "1", "110", "90", client_order_id="oco-1")
    again = oco(alice, "sell", "1", "110", "90", client_order_id="oco-1")
    assert again.created is False and again.order_list.pk == first.order_list.pk
    assert OrderList.objects.count() == 1


# --- Brackets: an entry whose fills place an OCO of exits for the quantity filled ---------


def bracket(user, quantity, price, take_profit, stop, stop_limit=None, **options):
    return bracket_place(
        user=user,
        market="QTX-USD",
        side="buy",
        quantity=D(quantity),
        price=D(price),
        take_profit_price=D(take_profit),
        stop_loss_stop_price=D(stop),
        stop_loss_price=None if stop_limit is None else D(stop_limit),
        **options,
    )


def test_a_brackets_entry_filled_in_parts_grows_its_exits(tape_at_100, alice, bob):
    result = bracket(alice, "2", "100", take_profit="110", stop="95")
    assert [o.leg for o in result.orders] == [Leg.ENTRY] and list_status(result) == "active"

    sell(bob, "0.5", at="100")
    orders = legs(result)
    take_profit, stop_loss = orders[Leg.TAKE_PROFIT], orders[Leg.STOP_LOSS]
    assert (take_profit.side, take_profit.price, take_profit.quantity, take_profit.status) == (
        "sell", D("110"), D("0.5"), "open",
    )  # fmt: skip
    assert (stop_loss.type, stop_loss.stop_price, stop_loss.quantity, stop_loss.status) == (
        "stop_market", D("95"), D("0.5"), "pending",
    )  # fmt: skip
    # The exits hold the 0.5 QTX the fill delivered, once; the entry's rest its own need.
    assert (take_profit.held, stop_loss.held) == (D("0.5"), D("0"))
    assert held(alice, "QTX") == D("0.5") and available(alice, "QTX") == STARTING_QTX
    assert held(alice, "USD") == orders[Leg.ENTRY].held == D("150.3")  # 1.5 x 100 + 0.2%
    first_priority = take_profit.priority

    sell(bob, "1", at="100")
    orders = legs(result)
    take_profit, stop_loss = orders[Leg.TAKE_PROFIT], orders[Leg.STOP_LOSS]
    assert (take_profit.quantity, stop_loss.quantity) == (D("1.5"), D("1.5"))
    assert take_profit.held == held(alice, "QTX") == D("1.5")
    assert take_profit.priority > first_priority  # grown, it goes to the back of its level
    assert orders[Leg.ENTRY].remaining_quantity == D("0.5")
    assert Order.objects.filter(order_list=result.order_list).count() == 3


def test_a_take_profit_fill_cancels_the_stop_loss_and_the_entrys_rest(tape_at_100, alice, bob, carol):
    result = bracket(alice, "2", "100", take_profit="110", stop="95")
    sell(bob, "1", at="100")

    buy(carol, "0.5", at="110")

    orders = legs(result)
    assert (orders[Leg.TAKE_PROFIT].status, orders[Leg.TAKE_PROFIT].remaining_quantity) == (
        "partially_filled", D("0.5"),
    )  # fmt: skip
    assert orders[Leg.STOP_LOSS].status == "cancelled"
    assert orders[Leg.ENTRY].status == "cancelled"
    assert held(alice, "USD") == 0 and held(alice, "QTX") == D("0.5")


def test_a_stop_loss_trigger_cancels_the_take_profit(tape_at_100, alice, bob, carol):
    result = bracket(alice, "1", "100", take_profit="110", stop="95", stop_limit="94")
    sell(bob, "1", at="100")
    buy(carol, "2", at="94")

    sell(bob, "0.5", at="94")  # a trade at 94 reaches the stop-loss

    orders = legs(result)
    assert orders[Leg.TAKE_PROFIT].status == "cancelled"
    assert (orders[Leg.STOP_LOSS].status, orders[Leg.STOP_LOSS].filled_quantity) == ("filled", D("1"))
    assert held(alice, "QTX") == 0 and available(alice, "QTX") == STARTING_QTX
    assert list_status(result) == "done"


def test_a_stop_loss_already_reached_when_placed_triggers_at_once(tape_at_100, alice, bob, carol):
    """carol's sell sweeps alice's entry at 100 and goes on to 94: the stop-loss placed for
    that fill is already reached, and sells in the same command, into bob's bid at 93."""
    result = bracket(alice, "1", "100", take_profit="110", stop="95")
    buy(bob, "1", at="94")
    buy(bob, "1", at="93")

    sell(carol, "2", at="94")

    orders = legs(result)
    assert orders[Leg.ENTRY].status == "filled"
    assert (orders[Leg.STOP_LOSS].status, orders[Leg.STOP_LOSS].filled_notional) == ("filled", D("93"))
    assert orders[Leg.TAKE_PROFIT].status == "cancelled"
    assert held(alice, "QTX") == 0 and held(alice, "USD") == 0
    assert list_status(result) == "done"


def test_cancelling_the_entry_before_a_fill_cancels_the_list(tape_at_100, alice):
    result = bracket(alice, "1", "100", take_profit="110", stop="95")
    order_cancel(user=alice, order_id=result.orders[0].pk)
    assert list_status(result) == "done"
    assert held(alice, "USD") == 0 and available(alice, "USD") == STARTING_USD


def test_cancelling_the_entry_after_a_fill_leaves_the_exits(tape_at_100, alice, bob):
    result = bracket(alice, "2", "100", take_profit="110", stop="95")
    sell(bob, "1", at="100")

    order_cancel(user=alice, order_id=result.orders[0].pk)

    orders = legs(result)
    assert orders[Leg.ENTRY].status == "cancelled"
    assert (orders[Leg.TAKE_PROFIT].status, orders[Leg.STOP_LOSS].status) == ("open", "pending")
    assert list_status(result) == "active"

    order_cancel(user=alice, order_id=orders[Leg.STOP_LOSS].pk)  # an exit's cancel cancels the list
    assert legs(result)[Leg.TAKE_PROFIT].status == "cancelled"
    assert held(alice, "QTX") == 0 and list_status(result) == "done"


@pytest.mark.parametrize(
    ("changes", "field"),
    [
        ({"side": "sell"}, "entry.side"),
        ({"take_profit_price": D("100")}, "take_profit.price"),
        ({"stop_loss_stop_price": D("100")}, "stop_loss.stop_price"),
        ({"price": D("100.001")}, "entry.price"),
        ({"take_profit_price": D("110.001")}, "take_profit.price"),
        ({"stop_loss_price": D("0")}, "stop_loss.price"),
        ({"time_in_force": "GTX"}, "entry.time_in_force"),
    ],
)
def test_bad_brackets_are_refused_with_their_field(tape_at_100, alice, changes, field):
    terms = {
        "user": alice,
        "market": "QTX-USD",
        "side": "buy",
        "quantity": D("1"),
        "price": D("100"),
        "take_profit_price": D("110"),
        "stop_loss_stop_price": D("95"),
        **changes,
    }
    with pytest.raises(InvalidInput) as refused:
        bracket_place(**terms)
    assert refused.value.field == field
    assert not OrderList.objects.exists()
