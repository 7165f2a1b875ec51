"""GTD orders (docs/API.md, "Good till date"): a limit or stop-limit order with
`time_in_force` GTD rests until its `expire_at`, then expires (hold released, level gone,
the owner told) even on a market where nothing else happens; the engine never trades
with one past its time.

alice, bob and carol each start with 10,000 USD and 100 QTX; QTX-USD charges the maker
0.1% and the taker 0.2%. A buy holds notional + 0.2%. Orders are placed at least 5 s
ahead, as the rules ask; a test that needs one due moves its expire_at into the past.
"""

from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest
from django.utils import timezone

from marketdata.models import BookLevel
from orders.events import OrderChanged
from orders.expiry import orders_expire_due
from orders.models import Order
from orders.selectors import reconcile
from orders.services import order_amend, order_place
from quantumtrades.core import scheduler
from quantumtrades.core.errors import InvalidInput

from .stories import STARTING_QTX, STARTING_USD, available, buy, held, print_trade, sell, stop_sell

D = Decimal


@pytest.fixture(autouse=True)
def books_balance_afterwards(db):
    yield
    assert reconcile() == []


def ahead(seconds=60):
    return timezone.now() + timedelta(seconds=seconds)


def gtd(seconds=60):
    return {"time_in_force": "GTD", "expire_at": ahead(seconds)}


def make_due(order):
    """Move an order's expire_at into the past, as if its time had come."""
    Order.objects.filter(pk=order.pk).update(expire_at=timezone.now() - timedelta(milliseconds=1))


def level(side, price):
    found = BookLevel.objects.filter(side=side, price=D(price)).first()
    return found.quantity if found else D(0)


@pytest.mark.parametrize(
    ("order", "field"),
    [
        pytest.param({"time_in_force": "GTD"}, "expire_at", id="GTD without expire_at"),
        pytest.param({"expire_at": "2099-01-01T00:00:00Z"}, "expire_at", id="expire_at on a GTC order"),
        pytest.param({"time_in_force": "GTD", "expire_at": "tomorrow"}, "expire_at", id="not a time"),
        pytest.param({"time_in_force": "GTD", "expire_at": "2026-13-40T99:00:00"}, "expire_at", id="no such day"),
        pytest.param({"time_in_force": "GTD", "expire_at": 1767225600}, "expire_at", id="a number"),
        pytest.param({"time_in_force": "GTD", "expire_at": "2001-01-01T00:00:00Z"}, "expire_at", id="past"),
        pytest.param({"type": "market", "price": None, "time_in_force": "GTD"}, "time_in_force", id="market GTD"),
        pytest.param(
            {"type": "stop_market", "price": None, "stop_price": "90", "time_in_force": "GTD"},
            "time_in_force",
            id="stop-market GTD",
        ),
    ],
)
def test_a_gtd_order_is_refused_with_the_field_at_fault(market, alice, order, field):
    body = {"side": "buy", "type": "limit", "price": D("100"), "quantity": D("1"), **order}
    with pytest.raises(InvalidInput) as refused:
        order_place(user=alice, market="QTX-USD", **body)
    assert refused.value.field == field
    assert not Order.objects.exists()


def test_expire_at_must_be_five_seconds_ahead_and_is_read_as_utc_without_an_offset(market, alice):
    with pytest.raises(InvalidInput, match="at least 5 seconds ahead"):
        buy(alice, "1", at="100", time_in_force="GTD", expire_at=ahead(4))

    naive = (datetime.now(UTC) + timedelta(hours=1)).replace(tzinfo=None, microsecond=0)
    placed = buy(alice, "1", at="100", time_in_force="GTD", expire_at=naive.isoformat()).order

    assert Order.objects.get(pk=placed.pk).expire_at == naive.replace(tzinfo=UTC)


def test_a_gtd_order_rests_and_expires_on_a_quiet_market_releasing_its_hold(
    market, alice, django_capture_on_commit_callbacks, published
):
    placed = buy(alice, "2", at="100", **gtd()).order
    assert (placed.status, held(alice, "USD"), level("buy", "100")) == ("open", D("200.4"), 2)
    assert orders_expire_due() == {}  # not yet due: nothing changes

    make_due(placed)
    published.clear()
    with django_capture_on_commit_callbacks(execute=True):
        expired = orders_expire_due()

    assert [order.pk for order in expired[market.pk]] == [placed.pk]
    order = Order.objects.get(pk=placed.pk)
    assert (order.status, order.held, order.filled_quantity) == ("expired", 0, 0)
    assert (available(alice, "USD"), held(alice, "USD")) == (STARTING_USD, 0)
    assert level("buy", "100") == 0
    [changed] = [event for batch in published for event in batch if isinstance(event, OrderChanged)]
    assert (changed.order["id"], changed.order["status"]) == (placed.pk, "expired")
    # Idempotent: a second run (another process, the next tick) finds nothing to do.
    assert orders_expire_due() == {}


def test_the_scheduler_runs_the_expiry_in_every_process(market, alice):
    placed = sell(alice, "1", at="105", **gtd()).order
    make_due(placed)

    assert "orders.orders_expire_due" in scheduler.run_due()

    assert Order.objects.get(pk=placed.pk).status == "expired"
    assert (available(alice, "QTX"), held(alice, "QTX")) == (STARTING_QTX, 0)


def test_a_taker_never_trades_with_a_gtd_order_past_its_time_and_meets_the_next_one(market, alice, bob, carol):
    due = sell(alice, "1", at="100", **gtd()).order
    later = sell(bob, "1", at="100").order
    make_due(due)

    result = buy(carol, "1", at="101")

    assert [(fill.price, fill.quantity) for fill in result.fills] == [(D("100"), D("1"))]
    assert Order.objects.get(pk=later.pk).status == "filled"
    order = Order.objects.get(pk=due.pk)
    assert (order.status, order.filled_quantity, order.held) == ("expired", 0, 0)
    assert (available(alice, "QTX"), held(alice, "QTX")) == (STARTING_QTX, 0)
    assert level("sell", "100") == 0


def test_a_fill_or_kill_does_not_count_on_a_gtd_order_past_its_time(market, alice, bob, carol):
    due = sell(alice, "1", at="100", **gtd()).order
    sell(bob, "1", at="100")
    make_due(due)

    result = buy(carol, "2", at="100", time_in_force="FOK")

    assert (result.order.status, result.fills) == ("expired", [])
    assert Order.objects.get(pk=due.pk).status == "open"  # a kill trades nothing, expires nothing


def test_a_gtd_stop_limit_expires_pending_and_a_due_one_crossed_does_not_trigger(market, alice, bob, carol):
    print_trade(bob, carol, "100")
    waiting = stop_sell(alice, "1", stop="95", at="94", **gtd()).order
    crossed = stop_sell(alice, "1", stop="96", at="94", **gtd()).order
    assert (waiting.status, held(alice, "QTX")) == ("pending", 2)
    make_due(crossed)
    buy(bob, "1", at="96")

    sell(carol, "1", at="96")  # prints 96: reaches the due stop, which expires instead

    assert Order.objects.get(pk=crossed.pk).status == "expired"
    assert Order.objects.get(pk=crossed.pk).triggered_at is None
    make_due(waiting)
    orders_expire_due()
    assert Order.objects.get(pk=waiting.pk).status == "expired"
    assert (available(alice, "QTX"), held(alice, "QTX")) == (STARTING_QTX, 0)


def test_a_gtd_order_partly_filled_then_amended_keeps_its_expiry_and_expires_the_rest(market, alice, bob):
    placed = sell(alice, "3", at="100", **gtd()).order
    buy(bob, "1", at="100")
    order_amend(user=alice, order_id=placed.pk, price=D("101"))
    make_due(placed)

    orders_expire_due()

    order = Order.objects.get(pk=placed.pk)
    assert (order.status, order.filled_quantity, order.remaining_quantity) == ("expired", 1, 2)
    assert order.expire_at is not None and order.time_in_force == "GTD"
    assert (available(alice, "QTX"), held(alice, "QTX")) == (STARTING_QTX - 1, 0)
    assert level("sell", "101") == 0
