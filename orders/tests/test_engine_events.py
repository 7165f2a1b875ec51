"""What the engine announces: one BookChanged per command, trades, orders, fills and
balances, delivered to subscribers only once the command's transaction has committed."""

from decimal import Decimal

import pytest
from django.db import transaction

from accounts.events import BalanceChanged
from marketdata.events import BookChanged, TradeExecuted
from orders.events import FillCreated, OrderChanged
from orders.selectors import reconcile
from orders.services import order_amend, order_cancel
from quantumtrades.core.errors import InsufficientFunds

from .stories import buy, sell

D = Decimal


@pytest.fixture(autouse=True)
def books_balance_afterwards(db):
    yield
    assert reconcile() == []


def of_type(batches, kind):
    return [event for batch in batches for event in batch if isinstance(event, kind)]


@pytest.fixture
def committed(django_capture_on_commit_callbacks, published):
    """Run a command as if its transaction committed; return what subscribers received."""

    def run(command, *args, **kwargs):
        published.clear()
        with django_capture_on_commit_callbacks(execute=True):
            command(*args, **kwargs)
        return list(published)

    return run


def test_a_trade_announces_the_new_absolute_level_and_the_trade(market, alice, bob, carol, committed):
    sell(bob, "2", at="100")
    sell(carol, "3", at="100")

    batches = committed(buy, alice, "1", at="100")

    [book] = of_type(batches, BookChanged)
    assert (book.symbol, book.prev_seq, book.seq) == ("QTX-USD", 2, 3)
    assert (book.bids, book.asks) == ([], [(D("100"), D("4"))])
    [trade] = of_type(batches, TradeExecuted)
    assert (trade.price, trade.quantity, trade.taker_side, trade.seq) == (D("100"), D("1"), "buy", 3)
    assert trade.id is not None


def test_an_emptied_level_is_announced_with_quantity_zero(market, alice, bob, committed):
    sell(bob, "1", at="100")

    batches = committed(buy, alice, "1", at="101")

    [book] = of_type(batches, BookChanged)
    assert (book.bids, book.asks) == ([], [(D("100"), D("0"))])
    assert book.as_message()["asks"] == [["100.00000000", "0.00000000"]]


def test_a_trade_tells_both_traders_about_their_orders_fills_and_balances(market, fees, alice, bob, committed):
    ask = sell(bob, "1", at="100")

    batches = committed(buy, alice, "1", at="100")

    orders = {event.user_id: event.order for event in of_type(batches, OrderChanged)}
    assert orders[bob.pk]["id"] == ask.order.pk
    assert (orders[bob.pk]["status"], orders[alice.pk]["status"]) == ("filled", "filled")
    fills = {(event.user_id, event.fill["role"], event.fill["fee"]) for event in of_type(batches, FillCreated)}
    assert fills == {(alice.pk, "taker", "0.20000000"), (bob.pk, "maker", "0.10000000")}
    balances = {(event.user_id, event.asset): event.available for event in of_type(batches, BalanceChanged)}
    assert balances[(alice.pk, "USD")] == D("9899.8")
    assert balances[(bob.pk, "USD")] == D("10099.9")
    assert balances[(fees.pk, "USD")] == D("0.3")


def test_every_command_announces_one_book_change_in_an_unbroken_sequence(market, alice, bob, committed):
    bid = buy(alice, "1", at="99")
    batches = committed(buy, alice, "1", at="98")
    batches += committed(sell, bob, "1", at="101")
    batches += committed(order_amend, user=alice, order_id=bid.order.pk, price=D("97"))
    batches += committed(order_cancel, user=alice, order_id=bid.order.pk)
    batches += committed(sell, bob, "1", at="98", post_only=True)  # rejected, still a command

    books = of_type(batches, BookChanged)
    assert [(book.prev_seq, book.seq) for book in books] == [(1, 2), (2, 3), (3, 4), (4, 5), (5, 6)]
    assert books[2].bids == [(D("97"), D("1")), (D("99"), D("0"))]


def test_nothing_is_announced_before_the_commit(market, alice, django_capture_on_commit_callbacks, published):
    with django_capture_on_commit_callbacks(execute=False) as callbacks:
        buy(alice, "1", at="99")

    assert published == []
    for callback in callbacks:
        callback()
    assert len(of_type(published, BookChanged)) == 1


@pytest.mark.django_db(transaction=True)
def test_events_reach_subscribers_only_after_the_transaction_commits(market, alice, bob, published):
    sell(bob, "1", at="100")
    published.clear()

    with transaction.atomic():
        buy(alice, "1", at="100")
        assert published == []

    assert [t.price for t in of_type(published, TradeExecuted)] == [D("100")]


@pytest.mark.django_db(transaction=True)
def test_a_rolled_back_command_announces_nothing(market, alice, make_trader, published):
    dave = make_trader("dave", USD="1")
    published.clear()

    with pytest.raises(InsufficientFunds):
        buy(dave, "1", at="100")
    with pytest.raises(RuntimeError), transaction.atomic():
        buy(alice, "1", at="99")
        raise RuntimeError("the caller's transaction fails after the order")

    assert published == []
