"""The dead man's switch against real concurrency: threads with their own connections, the
switch firing while orders arrive, and a trader's heartbeat racing the firing.

What must hold: every order placed before the firing is cancelled by it (none placed before
it remains active afterwards), nothing else is touched, the money reconciles; and a re-arm
is never lost, whichever of the two statements the database runs first.
"""

import threading
import time
from datetime import timedelta
from decimal import Decimal

import pytest
from django.db import connection
from django.utils import timezone

from accounts.models import User
from accounts.services import balance_deposit
from orders import protection
from orders.models import Order, OrderStatus
from orders.selectors import reconcile
from quantumtrades.core import scheduler

from .stories import buy, sell

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.timeout(120)]


def in_thread(work):
    """Run `work()` in a thread with its own connection; returns (thread, outcome list)."""
    outcome = []

    def run():
        try:
            outcome.append(work())
        except Exception as error:  # the test reads it
            outcome.append(error)
        finally:
            connection.close()

    thread = threading.Thread(target=run)
    thread.start()
    return thread, outcome


def test_the_switch_fires_while_orders_arrive(alice, bob, market):
    # As many orders as the threads can place in a second or two.
    User.objects.filter(pk=alice.pk).update(max_open_orders=100_000)
    balance_deposit(user=alice, asset="USD", amount=Decimal("1000000"), reason="test funding")
    stop = threading.Event()
    placed = []  # (monotonic time the placement returned, order id), alice's
    placed_lock = threading.Lock()

    def alice_quotes(offset):
        def work():
            count = 0
            while not stop.is_set():
                count += 1
                result = buy(alice, "1", at=f"{9 + (count % 5) / 100 + offset:.2f}")
                with placed_lock:
                    placed.append((time.monotonic(), result.order.pk))
            return count

        return work

    def bob_takes():
        trades = 0
        while not stop.is_set():
            trades += len(sell(bob, "1").fills)  # a market sell: takes alice's best bid
            time.sleep(0.02)
        return trades

    workers = [in_thread(alice_quotes(0.1 * index)) for index in range(2)] + [in_thread(bob_takes)]
    time.sleep(0.5)
    protection.dead_mans_switch_arm(user=alice, seconds=5)
    User.objects.filter(pk=alice.pk).update(cancel_orders_at=timezone.now())
    fired_at = time.monotonic()
    assert "orders.dead_mans_switches" in scheduler.run_due()
    done_at = time.monotonic()
    time.sleep(0.3)  # orders keep coming after the firing
    stop.set()
    for thread, _ in workers:
        thread.join(60)
    outcomes = [outcome[0] for _, outcome in workers]
    assert not any(isinstance(outcome, Exception) for outcome in outcomes), outcomes

    before = [order_id for at, order_id in placed if at < fired_at]
    after = [order_id for at, order_id in placed if at > done_at]
    assert before and after, (len(before), len(after))
    active = set(Order.objects.active().filter(pk__in=before).values_list("pk", flat=True))
    assert active == set(), f"{len(active)} orders placed before the firing are still active"
    # Those placed after it stand (or traded): the switch fired once, and is disarmed.
    assert Order.objects.filter(pk__in=after, status=OrderStatus.CANCELLED).count() == 0
    assert User.objects.get(pk=alice.pk).cancel_orders_at is None
    assert reconcile() == []


@pytest.mark.parametrize("rounds", [20])
def test_a_heartbeat_racing_the_firing_is_never_lost(alice, market, rounds):
    fired_rounds = 0
    for _ in range(rounds):
        order = buy(alice, "1", at="9.00")
        User.objects.filter(pk=alice.pk).update(cancel_orders_at=timezone.now() - timedelta(milliseconds=1))
        barrier = threading.Barrier(2)

        def fire(barrier=barrier):
            barrier.wait(10)
            return protection.dead_mans_switches_fire()

        def heartbeat(barrier=barrier):
            barrier.wait(10)
            return protection.dead_mans_switch_arm(user=User.objects.get(pk=alice.pk), seconds=30)

        (firing, fired), (beating, armed) = in_thread(fire), in_thread(heartbeat)
        firing.join(30)
        beating.join(30)
        assert not isinstance(fired[0], Exception) and not isinstance(armed[0], Exception), (fired, armed)
        # Whichever ran first, the heartbeat's time stands.
        assert User.objects.get(pk=alice.pk).cancel_orders_at == armed[0]
        status = Order.objects.get(pk=order.order.pk).status
        if alice.pk in fired[0]:
            fired_rounds += 1
            assert status == OrderStatus.CANCELLED
        else:  # the heartbeat came first: the switch was no longer due
            assert status == OrderStatus.OPEN
    assert reconcile() == []
    print(f"the firing won {fired_rounds} of {rounds} rounds")
