"""The dead man's switch and cancel on disconnect, as services and scheduler jobs
(orders.protection; docs/API.md, section 8): arming, firing, a re-arm racing the firing,
sockets closed, sockets whose process died, sockets swept while their process lived.

The jobs run as a server process's scheduler runs them (`scheduler.run_due()`), with the
time moved: a switch armed, then its time set in the past; a socket's `seen_at` set back.
"""

from datetime import timedelta
from decimal import Decimal

import pytest
from django.utils import timezone

from accounts.models import User
from orders import protection
from orders.models import LiveSocket, Order, OrderStatus
from orders.selectors import reconcile
from quantumtrades.core import scheduler
from quantumtrades.core.errors import InvalidInput

from .stories import buy, held, sell, stop_sell

pytestmark = pytest.mark.django_db


def status(result) -> str:
    return Order.objects.get(pk=result.order.pk).status


def armed_at(user):
    return User.objects.get(pk=user.pk).cancel_orders_at


def due(user, seconds_ago=1):
    """The user's switch, armed earlier, reaches its time now."""
    User.objects.filter(pk=user.pk).update(cancel_orders_at=timezone.now() - timedelta(seconds=seconds_ago))


# --- Arming ------------------------------------------------------------------------------------


def test_arming_stores_the_time_and_zero_disarms(alice):
    before = timezone.now()
    armed_until = protection.dead_mans_switch_arm(user=alice, seconds=60)
    assert before + timedelta(seconds=60) <= armed_until <= timezone.now() + timedelta(seconds=60)
    assert armed_at(alice) == armed_until
    again = protection.dead_mans_switch_arm(user=alice, seconds=5)
    assert again < armed_until and armed_at(alice) == again  # arming again replaces the time
    assert protection.dead_mans_switch_arm(user=alice, seconds=0) is None
    assert armed_at(alice) is None


@pytest.mark.parametrize("seconds", [5, 600])
def test_the_bounds_arm(alice, seconds):
    assert protection.dead_mans_switch_arm(user=alice, seconds=seconds) is not None


@pytest.mark.parametrize("seconds", [-1, 1, 4, 601, 10**20, True, False, "10", 10.0, None, Decimal("10")])
def test_anything_else_is_refused_on_the_seconds_field(alice, seconds):
    protection.dead_mans_switch_arm(user=alice, seconds=30)
    armed = armed_at(alice)
    with pytest.raises(InvalidInput) as refused:
        protection.dead_mans_switch_arm(user=alice, seconds=seconds)
    assert refused.value.field == "seconds" and refused.value.code == "INVALID"
    assert armed_at(alice) == armed  # a refusal changes nothing


# --- Firing ------------------------------------------------------------------------------------


def test_a_switch_that_is_due_cancels_every_open_order_and_pending_stop(alice, bob, market, btc_market):
    resting = buy(alice, "1", at="9.00")
    partly = sell(alice, "2", at="11.00")
    buy(bob, "1", at="11.00")  # fills half of alice's sell
    elsewhere = buy(alice, "0.01", at="20000", market="BTC-USD")
    stop = stop_sell(alice, "1", stop="8.00")
    bobs = buy(bob, "1", at="9.00")
    protection.dead_mans_switch_arm(user=alice, seconds=30)
    assert protection.dead_mans_switches_fire() == {}  # not yet
    assert status(resting) == OrderStatus.OPEN

    due(alice)
    assert "orders.dead_mans_switches" in scheduler.run_due()
    for order in (resting, partly, elsewhere, stop):
        assert status(order) == OrderStatus.CANCELLED
    assert status(bobs) == OrderStatus.OPEN  # only the user's own
    assert held(alice, "USD") == 0 and held(alice, "QTX") == 0
    assert armed_at(alice) is None  # fired once: disarmed
    assert protection.dead_mans_switches_fire() == {}
    assert reconcile() == []


def test_a_switch_armed_again_before_its_time_does_not_fire(alice, market):
    order = buy(alice, "1", at="9.00")
    due(alice)
    protection.dead_mans_switch_arm(user=alice, seconds=30)  # the heartbeat came in time
    scheduler.run_due()
    assert status(order) == OrderStatus.OPEN and armed_at(alice) is not None


def test_a_disarmed_switch_never_fires(alice, market):
    order = buy(alice, "1", at="9.00")
    protection.dead_mans_switch_arm(user=alice, seconds=5)
    protection.dead_mans_switch_arm(user=alice, seconds=0)
    scheduler.run_due()
    assert status(order) == OrderStatus.OPEN


def test_a_switch_with_nothing_open_fires_and_disarms(alice, market):
    due(alice)
    assert protection.dead_mans_switches_fire() == {alice.pk: []}
    assert armed_at(alice) is None


def test_a_rearm_during_the_firing_keeps_the_new_time(alice, market, monkeypatch):
    """The trader's heartbeat arrives while a process is cancelling: the orders that were
    due go, and the new arming stands (the lease ends only where it is still the time)."""
    order = buy(alice, "1", at="9.00")
    due(alice)
    rearmed = []
    cancel_all = protection.orders_cancel_all

    def cancel_and_meanwhile_rearm(**kwargs):
        rearmed.append(protection.dead_mans_switch_arm(user=User.objects.get(pk=alice.pk), seconds=30))
        return cancel_all(**kwargs)

    monkeypatch.setattr(protection, "orders_cancel_all", cancel_and_meanwhile_rearm)
    assert [o.pk for o in protection.dead_mans_switches_fire()[alice.pk]] == [order.order.pk]
    assert armed_at(alice) == rearmed[0]  # not lost
    assert status(order) == OrderStatus.CANCELLED


def test_a_process_that_died_while_firing_leaves_the_switch_to_the_next(alice, market, monkeypatch):
    """The claim moved the time forward as a lease; the process died before cancelling.
    Once the lease runs out, the next process fires the switch."""
    order = buy(alice, "1", at="9.00")
    due(alice)

    def die(**kwargs):
        raise SystemExit  # stands for a process killed between its claim and its cancel

    monkeypatch.setattr(protection, "orders_cancel_all", die)
    with pytest.raises(SystemExit):
        protection.dead_mans_switches_fire()
    monkeypatch.undo()
    lease = armed_at(alice)
    assert lease > timezone.now()  # claimed: the other processes leave it alone meanwhile
    assert protection.dead_mans_switches_fire() == {}
    User.objects.filter(pk=alice.pk).update(cancel_orders_at=lease - timedelta(seconds=protection.CLAIM_SECONDS + 1))
    assert protection.dead_mans_switches_fire()[alice.pk][0].pk == order.order.pk
    assert status(order) == OrderStatus.CANCELLED and armed_at(alice) is None


def test_many_users_due_at_once_all_fire(make_trader, market):
    traders = [make_trader(f"t{index}", USD="100") for index in range(5)]
    orders = [buy(user, "1", at="9.00") for user in traders]
    for user in traders:
        due(user)
    assert sorted(protection.dead_mans_switches_fire()) == sorted(user.pk for user in traders)
    assert {status(order) for order in orders} == {OrderStatus.CANCELLED}
    assert reconcile() == []


# --- Cancel on disconnect ----------------------------------------------------------------------


@pytest.fixture
def mine():
    """This process's sockets, empty before and after the test."""
    protection._sockets.clear()
    yield protection._sockets
    protection._sockets.clear()


def test_closing_a_socket_cancels_its_active_orders_only(alice, bob, market, mine):
    socket_id = protection.live_socket_open(user=alice)
    other = protection.live_socket_open(user=alice)
    row = LiveSocket.objects.get(pk=socket_id)
    assert row.user_id == alice.pk and row.process == protection.process_name()
    placed = buy(alice, "1", at="9.00", socket_id=socket_id)
    stop = stop_sell(alice, "1", stop="8.00", socket_id=socket_id)
    filled = sell(alice, "1", at="12.00", socket_id=socket_id)
    buy(bob, "1", at="12.00")
    elsewhere = buy(alice, "1", at="9.10", socket_id=other)
    unprotected = buy(alice, "1", at="9.20")

    cancelled = protection.live_socket_close(socket_id=socket_id)
    assert sorted(o.pk for o in cancelled) == sorted([placed.order.pk, stop.order.pk])
    assert status(placed) == status(stop) == OrderStatus.CANCELLED
    assert status(filled) == OrderStatus.FILLED
    assert status(elsewhere) == status(unprotected) == OrderStatus.OPEN
    assert not LiveSocket.objects.filter(pk=socket_id).exists() and socket_id not in mine
    assert protection.live_socket_close(socket_id=socket_id) == []  # twice is harmless
    assert reconcile() == []


def test_this_process_refreshes_its_sockets_and_sweeps_nothing_alive(alice, market, settings, mine):
    socket_id = protection.live_socket_open(user=alice)
    order = buy(alice, "1", at="9.00", socket_id=socket_id)
    long_ago = timezone.now() - timedelta(seconds=settings.CANCEL_ON_DISCONNECT_SECONDS)
    LiveSocket.objects.filter(pk=socket_id).update(seen_at=long_ago)
    scheduler.run_due()  # refresh first, then the sweep: its own live socket is not stale
    assert LiveSocket.objects.get(pk=socket_id).seen_at > long_ago
    assert status(order) == OrderStatus.OPEN


def test_the_sockets_of_a_dead_process_are_swept(alice, bob, market, settings, mine):
    # Sockets of another process (no longer refreshed: it died), one stale, one not yet.
    seen = timezone.now() - timedelta(seconds=settings.CANCEL_ON_DISCONNECT_SECONDS * 0.6 + 0.5)
    dead = LiveSocket.objects.create(user=alice, process="elsewhere:1", seen_at=seen)
    recent = LiveSocket.objects.create(user=bob, process="elsewhere:1", seen_at=timezone.now())
    lost = buy(alice, "1", at="9.00", socket_id=dead.pk)
    kept = buy(bob, "1", at="9.00", socket_id=recent.pk)
    assert "orders.live_sockets_sweep" in scheduler.run_due()
    assert status(lost) == OrderStatus.CANCELLED and not LiveSocket.objects.filter(pk=dead.pk).exists()
    assert status(kept) == OrderStatus.OPEN and LiveSocket.objects.filter(pk=recent.pk).exists()
    assert reconcile() == []


def test_a_socket_swept_while_its_process_lived_is_protected_again(alice, market, settings, mine):
    """A process that stalls longer than the sweepers wait is taken for dead: its socket's
    orders are cancelled. Once it runs again, the socket protects what it places next."""
    socket_id = protection.live_socket_open(user=alice)
    before = buy(alice, "1", at="9.00", socket_id=socket_id)
    stale = timezone.now() - timedelta(seconds=settings.CANCEL_ON_DISCONNECT_SECONDS)
    LiveSocket.objects.filter(pk=socket_id).update(seen_at=stale)
    protection.live_sockets_sweep()  # another process's sweeper, while this one stalled
    assert status(before) == OrderStatus.CANCELLED and not LiveSocket.objects.filter(pk=socket_id).exists()
    protection.live_sockets_refresh()
    assert LiveSocket.objects.get(pk=socket_id).user_id == alice.pk
    after = buy(alice, "1", at="9.00", socket_id=socket_id)
    protection.live_socket_close(socket_id=socket_id)
    assert status(after) == OrderStatus.CANCELLED


def test_a_sweeper_that_died_leaves_the_socket_to_the_next(alice, market, settings, monkeypatch, mine):
    dead = LiveSocket.objects.create(user=alice, process="elsewhere:1", seen_at=timezone.now() - timedelta(hours=1))
    order = buy(alice, "1", at="9.00", socket_id=dead.pk)

    def die(**kwargs):
        raise SystemExit

    monkeypatch.setattr(protection, "orders_cancel_all", die)
    with pytest.raises(SystemExit):
        protection.live_sockets_sweep()
    monkeypatch.undo()
    assert protection.live_sockets_sweep() == {}  # claimed: looks seen just now
    LiveSocket.objects.filter(pk=dead.pk).update(seen_at=timezone.now() - timedelta(hours=1))
    assert [o.pk for o in protection.live_sockets_sweep()[dead.pk]] == [order.order.pk]
