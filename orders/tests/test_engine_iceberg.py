"""Iceberg orders (docs/API.md, "Iceberg orders"): a limit order with a `display_quantity`
shows at most that much in the book; when the shown slice fills, the next slice,
min(display, remaining), shows with a new time priority, behind the orders already at its
price. It holds for the whole order, and its owner sees the whole order.

alice, bob and carol each start with 10,000 USD and 100 QTX on QTX-USD (tick 0.01, lot
0.01, minimum notional 1; maker 0.1%, taker 0.2%).
"""

from datetime import timedelta
from decimal import Decimal

import pytest
from django.utils import timezone

from marketdata.events import BookChanged
from marketdata.models import BookLevel, Market, Trade
from orders.auctions import auction_end
from orders.expiry import orders_expire_due
from orders.models import Order
from orders.payloads import order_payload
from orders.selectors import reconcile
from orders.services import order_amend, order_cancel
from quantumtrades.core.errors import InvalidInput

from .stories import STARTING_QTX, available, buy, held, sell

D = Decimal


@pytest.fixture(autouse=True)
def books_balance_afterwards(db):
    yield
    assert reconcile() == []


def level(side, price):
    found = BookLevel.objects.filter(side=side, price=D(price)).first()
    return found.quantity if found else D(0)


def tape(first_id=0):
    """(price, quantity, maker order, taker order) of each trade after `first_id`, oldest first."""
    return [
        (t.price, t.quantity, t.maker_order_id, t.taker_order_id)
        for t in Trade.objects.filter(id__gt=first_id).order_by("id")
    ]


def iceberg(user, side, quantity, display, at="100", **options):
    place = sell if side == "sell" else buy
    return place(user, quantity, at=at, display_quantity=D(display), **options).order


def fresh(order):
    return Order.objects.get(pk=order.pk)


@pytest.mark.parametrize(
    ("order", "message"),
    [
        pytest.param({"type": "market", "price": None, "time_in_force": "IOC"}, "limit order", id="market"),
        pytest.param({"time_in_force": "IOC"}, "rests", id="IOC"),
        pytest.param({"time_in_force": "FOK"}, "rests", id="FOK"),
        pytest.param({"display_quantity": D("0.005")}, "lot size", id="off the lot"),
        pytest.param({"display_quantity": D("6")}, "at most", id="more than the quantity"),
        pytest.param(
            {"price": D("50"), "display_quantity": D("0.01")},
            "minimum notional",
            id="a slice below the minimum notional",
        ),
        pytest.param({"display_quantity": D("0")}, "positive", id="zero"),
    ],
)
def test_an_iceberg_is_refused_with_the_field_display_quantity(market, alice, order, message):
    from orders.services import order_place

    body = {"side": "sell", "type": "limit", "price": D("100"), "quantity": D("5"), "display_quantity": D("1")}
    with pytest.raises(InvalidInput, match=message) as refused:
        order_place(user=alice, market="QTX-USD", **{**body, **order})
    assert refused.value.field == "display_quantity"


def test_an_iceberg_shows_its_slice_in_the_book_and_holds_for_the_whole_order(
    market, alice, django_capture_on_commit_callbacks, published
):
    with django_capture_on_commit_callbacks(execute=True):
        order = iceberg(alice, "sell", "5", "1")

    assert level("sell", "100") == 1
    [book] = [event for batch in published for event in batch if isinstance(event, BookChanged)]
    assert book.asks == [(D("100"), D("1"))]
    assert (held(alice, "QTX"), fresh(order).held) == (5, 5)
    payload = order_payload(fresh(order))
    assert (payload["quantity"], payload["remaining_quantity"], payload["display_quantity"]) == (
        "5.00000000",
        "5.00000000",
        "1.00000000",
    )


def test_a_sweeping_taker_meets_the_other_orders_at_the_price_before_the_next_slice(market, alice, bob, carol):
    hidden = iceberg(alice, "sell", "5", "1")
    shown = sell(bob, "2", at="100").order

    taker = buy(carol, "4", at="100").order

    # The slice (1), then bob (2), who was there before the refill, then the next slice.
    assert tape() == [
        (D("100"), D("1"), hidden.pk, taker.pk),
        (D("100"), D("2"), shown.pk, taker.pk),
        (D("100"), D("1"), hidden.pk, taker.pk),
    ]
    order = fresh(hidden)
    assert (order.remaining_quantity, order.visible_quantity, order.held) == (3, 1, 3)
    assert order.priority > taker.priority  # each refill took a new place
    assert level("sell", "100") == 1


def test_a_taker_with_no_one_else_at_the_price_takes_several_slices_in_one_trade(market, alice, carol):
    hidden = iceberg(alice, "sell", "5", "2")
    placed_priority = hidden.priority

    buy(carol, "3", at="100")

    assert [(price, quantity) for price, quantity, *_ in tape()] == [(D("100"), D("3"))]
    order = fresh(hidden)
    # Slice one (2) and one of the next (2): 1 of it still shows.
    assert (order.remaining_quantity, order.visible_quantity) == (2, 1)
    assert order.priority != placed_priority
    assert level("sell", "100") == 1
    assert (available(alice, "QTX"), held(alice, "QTX")) == (STARTING_QTX - 5, 2)


def test_the_last_slice_is_what_remains_and_a_filled_iceberg_leaves_the_level(market, alice, bob):
    hidden = iceberg(alice, "sell", "2.5", "1")
    buy(bob, "2", at="100")
    assert (fresh(hidden).visible_quantity, level("sell", "100")) == (D("0.5"), D("0.5"))

    buy(bob, "0.5", at="100")

    order = fresh(hidden)
    assert (order.status, order.visible_quantity, level("sell", "100")) == ("filled", 0, 0)


def test_an_iceberg_taker_trades_all_it_can_then_shows_a_slice_of_the_rest(market, alice, bob):
    sell(bob, "2", at="100")

    order = iceberg(alice, "buy", "5", "1")

    assert (order.filled_quantity, order.status) == (2, "partially_filled")
    assert (fresh(order).visible_quantity, level("buy", "100")) == (1, 1)


@pytest.mark.parametrize("stp", ["expire_taker", "expire_maker", "expire_both"])
def test_an_iceberg_hit_by_a_self_trade(market, alice, bob, carol, stp):
    hidden = iceberg(alice, "sell", "5", "1")
    behind = sell(bob, "1", at="100").order
    buy(carol, "1", at="100")  # takes the slice: the next goes behind bob's order

    taker = buy(alice, "3", at="100", stp=stp).order

    # Time priority decides what alice's buy meets: bob first, then her own iceberg.
    assert tape()[-1] == (D("100"), D("1"), behind.pk, taker.pk)
    order, taker = fresh(hidden), fresh(taker)
    if stp == "expire_taker":
        assert (order.status, order.visible_quantity, order.remaining_quantity) == ("partially_filled", 1, 4)
        assert level("sell", "100") == 1
    else:
        assert (order.status, order.held) == ("cancelled", 0)
        assert level("sell", "100") == 0
    if stp == "expire_maker":  # matching went on: nothing else to buy, the rest rests
        assert (taker.status, taker.remaining_quantity, level("buy", "100")) == ("partially_filled", 2, 2)
    else:
        assert (taker.status, taker.remaining_quantity) == ("expired", 2)
    assert held(alice, "QTX") == (4 if stp == "expire_taker" else 0)


def test_fill_or_kill_counts_an_icebergs_slices_in_the_order_it_would_meet_them(market, alice, bob, carol):
    iceberg(bob, "sell", "5", "1")
    sell(alice, "1", at="100")  # alice's own order, before the iceberg's next slice

    killed = buy(alice, "3", at="100", time_in_force="FOK")  # would meet her own order after 1

    assert (killed.order.status, killed.fills) == ("expired", [])
    filled = buy(carol, "3", at="100", time_in_force="FOK")
    assert filled.order.status == "filled"


def test_amending_an_iceberg(market, alice, bob):
    hidden = iceberg(alice, "sell", "5", "2")
    buy(bob, "1", at="100")  # 1 of the slice of 2 left

    order_amend(user=alice, order_id=hidden.pk, quantity=D("2.5"))  # remaining 1.5: the slice stays 1
    assert (fresh(hidden).visible_quantity, level("sell", "100")) == (1, 1)
    with pytest.raises(InvalidInput, match="below its display_quantity") as refused:
        order_amend(user=alice, order_id=hidden.pk, quantity=D("1.5"))
    assert refused.value.field == "quantity"

    order_amend(user=alice, order_id=hidden.pk, price=D("101"))  # a new price: a new slice

    order = fresh(hidden)
    assert (order.price, order.remaining_quantity, order.visible_quantity) == (101, D("1.5"), D("1.5"))
    assert (level("sell", "100"), level("sell", "101")) == (0, D("1.5"))


def test_cancelling_or_expiring_an_iceberg_takes_its_slice_off_the_level(market, alice, bob):
    cancelled = iceberg(alice, "sell", "5", "1")
    gtd = iceberg(bob, "sell", "4", "2", time_in_force="GTD", expire_at=timezone.now() + timedelta(minutes=1))
    assert level("sell", "100") == 3

    order_cancel(user=alice, order_id=cancelled.pk)
    Order.objects.filter(pk=gtd.pk).update(expire_at=timezone.now())
    orders_expire_due()

    assert level("sell", "100") == 0
    assert (held(alice, "QTX"), held(bob, "QTX")) == (0, 0)


def test_all_of_an_iceberg_may_trade_in_an_auctions_uncross(market, alice, bob):
    Market.objects.filter(pk=market.pk).update(
        status=Market.Status.AUCTION, auction_ends_at=timezone.now() + timedelta(seconds=30)
    )
    hidden = iceberg(alice, "sell", "5", "1")
    buy(bob, "4", at="100")
    assert (level("sell", "100"), level("buy", "100")) == (1, 4)  # the book may cross in an auction

    Market.objects.filter(pk=market.pk).update(auction_ends_at=timezone.now() - timedelta(seconds=1))
    assert auction_end(market_id=market.pk)

    assert [(price, quantity) for price, quantity, *_ in tape()] == [(D("100"), D("4"))]
    order = fresh(hidden)
    assert (order.remaining_quantity, order.visible_quantity) == (1, 1)
    assert (level("sell", "100"), level("buy", "100")) == (1, 0)
