"""The kill switch against orders racing it, on PostgreSQL, with real threads.

Threads place orders for one trader on two markets while another thread switches the
trader's trading off. Nothing may slip through: afterwards the trader has no active order,
every order accepted was accepted before the switch committed, and every attempt that
started after it was refused TRADING_DISABLED. (The switch's sequential stories run on
both databases: test_market_controls.)
"""

import threading
import time

import pytest
from django.db import connection
from django.utils import timezone

from accounts.models import User
from orders.controls import trading_disable
from orders.models import Order
from orders.selectors import reconcile
from quantumtrades.core.errors import ErrorCode, ServiceError

from .stories import buy, stop_buy, trader

pytestmark = [pytest.mark.postgres, pytest.mark.django_db(transaction=True), pytest.mark.timeout(300)]


@pytest.fixture(autouse=True)
def postgres_only(on_postgres):
    pass


def test_nothing_slips_through_after_the_kill_switch_commits(market, btc_market, assets):
    alice = trader("alice", USD="1000000")
    User.objects.filter(pk=alice.pk).update(max_open_orders=100000)
    operator = User.objects.create_user(username="olivia", is_staff=True)
    placers = 4
    start = threading.Barrier(placers + 1)
    attempts = [[] for _ in range(placers)]  # (started at, order or error)
    switched = {}

    def place(index):
        try:
            start.wait(timeout=60)
            refused_in_a_row = 0
            for turn in range(400):
                started = timezone.now()
                try:
                    if turn % 5 == 4:
                        order = stop_buy(alice, "1", stop="50").order
                    elif index % 2:
                        order = buy(alice, "0.1", at="100", market="BTC-USD").order
                    else:
                        order = buy(alice, "1", at="10").order
                    attempts[index].append((started, order))
                except ServiceError as error:
                    attempts[index].append((started, error))
                    refused_in_a_row += 1
                    if refused_in_a_row == 10:
                        return
        finally:
            connection.close()

    def switch():
        try:
            start.wait(timeout=60)
            time.sleep(0.2)
            switched["result"] = trading_disable(operator=operator, user=alice, reason="race")
        finally:
            connection.close()

    threads = [threading.Thread(target=place, args=(index,)) for index in range(placers)]
    threads.append(threading.Thread(target=switch))
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=240)
    assert not any(thread.is_alive() for thread in threads)

    switched_at = switched["result"].switched_at
    outcomes = [outcome for attempts_of_one in attempts for outcome in attempts_of_one]
    accepted = [order for _, order in outcomes if isinstance(order, Order)]
    refusals = [error for _, error in outcomes if isinstance(error, ServiceError)]
    assert accepted and refusals
    assert {error.code for error in refusals} == {ErrorCode.TRADING_DISABLED}, {e.message for e in refusals}
    # Every order sent after the switch committed is refused. (An order's created_at is no
    # witness: it is its command's time, taken once the lock and the trader's standing were
    # read, so an order whose standing was read just before the switch committed may carry a
    # later time; the switch then cancels it under that market's book lock, below.)
    assert all(isinstance(outcome, ServiceError) for started, outcome in outcomes if started > switched_at)
    assert not Order.objects.active().filter(user=alice).exists()
    assert Order.objects.filter(user=alice).count() == len(accepted)
    assert {order.pk for order in switched["result"].cancelled} <= {order.pk for order in accepted}
    assert reconcile() == []
