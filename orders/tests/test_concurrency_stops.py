"""Stop orders under real concurrency, on PostgreSQL: threads with their own connections,
released together. A stop is cancelled or triggered, never both; a stop placed while the
price runs through it is either refused as already reached or triggered, never left
waiting for a trade that has already happened. `reconcile()` is clean after each.
"""

from decimal import Decimal

import pytest

from accounts.models import Balance
from orders.models import Order
from orders.selectors import reconcile
from orders.services import order_cancel
from quantumtrades.core.errors import Conflict, InvalidInput

from .stories import buy, print_trade, sell, stop_buy, stop_sell, trader
from .test_concurrency import no_negative_balances, no_overfills, together

D = Decimal

pytestmark = [pytest.mark.postgres, pytest.mark.django_db(transaction=True), pytest.mark.timeout(300)]


@pytest.fixture(autouse=True)
def postgres_only(on_postgres):
    pass


def test_stops_racing_their_cancels_are_cancelled_or_triggered_never_both(market, bob, carol):
    print_trade(bob, carol, "100")
    owners = [trader(f"owner{index}", QTX="1") for index in range(10)]
    stops = [stop_sell(owner, "1", stop="99").order for owner in owners]
    for step in range(12):
        buy(bob, "1", at=str(D("99") - D("0.10") * step))

    def work(index):
        if index == len(stops):
            return sell(carol, "1", at="99")  # the trade at 99 that reaches every stop
        return order_cancel(user=owners[index], order_id=stops[index].pk)

    outcomes = together(len(stops) + 1, work)

    for stop, owner, outcome in zip(stops, owners, outcomes, strict=False):
        order = Order.objects.get(pk=stop.pk)
        qtx = Balance.objects.get(user=owner, asset_id="QTX")
        if isinstance(outcome, Exception):
            # The trade came first: the stop triggered, so there was nothing left to cancel.
            assert isinstance(outcome, Conflict) and outcome.code == "ORDER_NOT_OPEN", outcome
            assert (order.status, order.filled_quantity) == ("filled", 1)
            assert order.triggered_at is not None
            assert (qtx.available, qtx.held) == (0, 0)
        else:
            assert outcome.status == "cancelled"
            assert (order.status, order.filled_quantity, order.triggered_at) == ("cancelled", 0, None)
            assert not order.fills.exists()
            assert (qtx.available, qtx.held) == (1, 0)
    assert not isinstance(outcomes[-1], Exception), outcomes[-1]
    assert no_negative_balances() and no_overfills()
    assert reconcile() == []


def test_stops_placed_while_the_price_runs_through_them_never_wait_for_a_trade_already_made(market, bob, carol):
    print_trade(bob, carol, "100")
    sell(bob, "1", at="101")
    sell(bob, "20", at="102")
    buyers = [trader(f"buyer{index}", USD="1000") for index in range(10)]

    def work(index):
        if index == len(buyers):
            return buy(carol, "1", at="101")  # prints 101: every buy stop at 101 is reached
        return stop_buy(buyers[index], "1", stop="101", at="102")

    outcomes = together(len(buyers) + 1, work)

    assert not isinstance(outcomes[-1], Exception), outcomes[-1]
    refused = [outcome for outcome in outcomes[:-1] if isinstance(outcome, Exception)]
    assert all(isinstance(error, InvalidInput) and error.field == "stop_price" for error in refused), refused
    placed = [outcome.order.pk for outcome in outcomes[:-1] if not isinstance(outcome, Exception)]
    assert len(placed) + len(refused) == len(buyers)
    # Accepted before the print: triggered by it, a limit buy at 102 that filled.
    assert set(Order.objects.filter(pk__in=placed).values_list("status", flat=True)) <= {"filled"}
    assert not Order.objects.filter(status="pending").exists()
    assert not Balance.objects.filter(user__in=buyers, held__gt=0).exists()
    assert no_negative_balances() and no_overfills()
    assert reconcile() == []
