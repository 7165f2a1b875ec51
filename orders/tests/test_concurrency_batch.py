"""Batches racing other clients' orders, on PostgreSQL with real threads and connections.

A batch holds the book lock for all its orders: another client's order on the market waits
for the batch's commit or goes before it, never between two of its orders, and money stays
exact (`reconcile()`), however the market's queue groups them.
"""

import threading
from decimal import Decimal

import pytest

from accounts.models import Balance
from marketdata.models import Trade
from orders.models import Fill, Order
from orders.selectors import reconcile
from orders.services import orders_cancel_batch, orders_place_batch

from .stories import sell
from .test_concurrency import no_negative_balances, no_overfills, together

D = Decimal

pytestmark = [pytest.mark.postgres, pytest.mark.django_db(transaction=True), pytest.mark.timeout(300)]


@pytest.fixture(autouse=True)
def postgres_only(on_postgres):
    pass


def ladder(side, first, step, count=10):
    return [
        {"market": "QTX-USD", "side": side, "type": "limit", "quantity": D("1"), "price": first + step * n}
        for n in range(count)
    ]


def test_batches_and_single_orders_racing_on_one_market_keep_book_and_money_exact(market, make_trader):
    makers = [make_trader(f"maker{n}", USD="1000", QTX="50") for n in range(2)]
    takers = [make_trader(f"taker{n}", USD="1000", QTX="50") for n in range(2)]
    seqs: dict[int, list[int]] = {}
    lock = threading.Lock()

    def work(index):
        if index < 2:  # a batch of ten bids, 9.91 to 10.00, and a batch of ten asks above them
            placed = orders_place_batch(user=makers[index], orders=ladder("buy", D("9.91"), D("0.01")))
            placed += orders_place_batch(user=makers[index], orders=ladder("sell", D("10.01"), D("0.01")))
            with lock:
                seqs[index] = [result.order.priority for result in placed]
            return placed
        # Another client's orders, one at a time, crossing whatever rests.
        return [sell(takers[index - 2], "1", at="9.95") for _ in range(5)]

    outcomes = together(4, work)

    assert not [outcome for outcome in outcomes if isinstance(outcome, Exception)]
    assert all(not isinstance(result, Exception) for outcome in outcomes for result in outcome)
    # Each batch's orders took consecutive places in the book's sequence: nothing came between them.
    for priorities in seqs.values():
        for half in (priorities[:10], priorities[10:]):
            assert [b - a for a, b in zip(half, half[1:], strict=False)] == [1000] * 9
    assert Trade.objects.count() == 10  # every single sell met a bid of 9.95 or better
    assert Fill.objects.count() == 20
    assert no_negative_balances() and no_overfills()
    assert reconcile() == []

    # Cancelling the makers' orders in batches, racing more sells, leaves it exact too.
    open_ids = [list(Order.objects.active().filter(user=maker).values_list("id", flat=True)) for maker in makers]

    def unwind(index):
        if index < 2:
            return orders_cancel_batch(user=makers[index], order_ids=open_ids[index])
        return [sell(takers[index - 2], "1", at="9.91") for _ in range(3)]

    outcomes = together(4, unwind)
    assert not [outcome for outcome in outcomes if isinstance(outcome, Exception)]
    # Each of the makers' orders was cancelled, or filled by a sell first (409 in its place).
    assert all(isinstance(result, Order) or result.status == 409 for outcome in outcomes[:2] for result in outcome)
    assert not Order.objects.active().filter(user__in=makers).exists()
    assert not Balance.objects.filter(user__in=makers).exclude(held=0).exists()
    assert no_negative_balances() and no_overfills()
    assert reconcile() == []
