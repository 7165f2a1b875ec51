"""GTD expiry racing fills, on PostgreSQL with real threads: each GTD order is either
filled before its expire_at or expired at or after it, never both, never traded past its
time; the money is exact (`reconcile()`).
"""

import time
from datetime import timedelta
from decimal import Decimal

import pytest
from django.utils import timezone

from accounts.models import Balance
from orders.expiry import orders_expire_due
from orders.models import Fill, Order
from orders.selectors import reconcile

from .stories import buy, sell, trader
from .test_concurrency import no_negative_balances, no_overfills, together

D = Decimal

pytestmark = [pytest.mark.postgres, pytest.mark.django_db(transaction=True), pytest.mark.timeout(300)]


@pytest.fixture(autouse=True)
def postgres_only(on_postgres):
    pass


def test_gtd_expiry_racing_fills_one_wins_each_order_and_the_money_is_exact(market, bob):
    owners = [trader(f"owner{index}", QTX="1") for index in range(10)]
    gtds = [
        sell(owner, "1", at="100", time_in_force="GTD", expire_at=timezone.now() + timedelta(seconds=60)).order
        for owner in owners
    ]
    buyers = [trader(f"buyer{index}", USD="1000") for index in range(3)]
    # Their times come one after another, 15 ms apart, from just after the threads start:
    # the buyers take the oldest first, so fills and the expiry meet around each one.
    start = timezone.now() + timedelta(milliseconds=40)
    for index, order in enumerate(gtds):
        Order.objects.filter(pk=order.pk).update(expire_at=start + timedelta(milliseconds=15 * index))
    deadline = time.monotonic() + 20

    def work(index):
        if index == 0:  # the scheduler's job, again and again until no GTD order is left
            expired = 0
            while Order.objects.filter(pk__in=[o.pk for o in gtds], status="open").exists():
                assert time.monotonic() < deadline, "the expiry never finished"
                expired += sum(len(orders) for orders in orders_expire_due().values())
            return expired
        fills = 0
        for _ in range(2):
            fills += len(buy(buyers[index - 1], "1", at="100", time_in_force="IOC").fills)
        return fills

    outcomes = together(1 + len(buyers), work)

    assert not any(isinstance(outcome, Exception) for outcome in outcomes), outcomes
    expired_by_job, bought = outcomes[0], sum(outcomes[1:])
    filled = expired = 0
    for order, owner in zip(gtds, owners, strict=True):
        order = Order.objects.get(pk=order.pk)
        fills = list(Fill.objects.filter(order=order))
        qtx = Balance.objects.get(user=owner, asset_id="QTX")
        assert qtx.held == 0
        if order.status == "filled":
            filled += 1
            [fill] = fills
            assert fill.created_at < order.expire_at, "traded at or past its time"
            assert qtx.available == 0
        else:
            expired += 1
            assert order.status == "expired" and not fills, (order.status, fills)
            assert order.updated_at >= order.expire_at, "expired before its time"
            assert qtx.available == 1
    assert filled == bought and filled + expired == len(gtds)
    assert expired_by_job <= expired  # the rest expired when a buyer met them past their time
    assert not Balance.objects.filter(user__in=buyers, held__gt=0).exists()
    assert no_negative_balances() and no_overfills()
    assert reconcile() == []
