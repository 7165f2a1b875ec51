"""`reconcile()` and `manage.py reconcile` catch books that do not balance.

Each story trades a little, then corrupts one thing behind the services' back with a raw
UPDATE, the way a bug or a hand-edit in the database would, and expects the checker to
name the broken invariant. Without these, a checker that always said "fine" would pass.
"""

from decimal import Decimal

import pytest
from django.core.management import call_command, execute_from_command_line

from accounts.models import Balance, LedgerEntry
from marketdata.models import BookLevel
from orders.models import Order
from orders.selectors import reconcile

from .stories import buy, sell, stop_buy

D = Decimal


@pytest.fixture
def some_trading(market, alice, bob):
    """bob's ask partly filled by alice, alice's bid resting: every invariant has something to check."""
    ask = sell(bob, "3", at="100")
    buy(alice, "1", at="100")
    bid = buy(alice, "2", at="99")
    assert reconcile() == []
    return ask.order, bid.order


def broken(breaches):
    return sorted({breach.invariant for breach in breaches})


def test_a_balance_edited_without_a_ledger_entry_breaks_invariants_1_and_2(some_trading, alice):
    Balance.objects.filter(user=alice, asset="USD").update(available=D("1000000"))

    breaches = reconcile()

    assert broken(breaches) == [1, 2]
    assert any(f"user {alice.pk} USD" in str(breach) for breach in breaches)


def test_money_moved_between_balances_without_its_counterpart_breaks_invariant_2(some_trading, alice):
    # A "trade" entry that credits alice, with her balance updated to match: the entries
    # still explain the balance, but USD was created from nothing.
    balance = Balance.objects.get(user=alice, asset="USD")
    LedgerEntry.objects.create(
        user=alice,
        asset_id="USD",
        kind="trade",
        available_delta=D("5"),
        available_after=balance.available + 5,
        held_after=balance.held,
    )
    Balance.objects.filter(pk=balance.pk).update(available=balance.available + 5)

    assert broken(reconcile()) == [2]


def test_an_order_holding_the_wrong_amount_breaks_invariant_3(some_trading):
    _, bid = some_trading
    Order.objects.filter(pk=bid.pk).update(held=D("1"))

    assert broken(reconcile()) == [3]


def test_a_balance_holding_more_than_its_orders_need_breaks_invariant_3(some_trading, alice):
    balance = Balance.objects.get(user=alice, asset="USD")
    LedgerEntry.objects.create(
        user=alice,
        asset_id="USD",
        kind="hold",
        available_delta=D("-10"),
        held_delta=D("10"),
        available_after=balance.available - 10,
        held_after=balance.held + 10,
    )
    Balance.objects.filter(pk=balance.pk).update(available=balance.available - 10, held=balance.held + 10)

    assert broken(reconcile()) == [3]


def test_funds_held_without_any_open_order_breaks_invariant_3(some_trading, bob):
    ask, _ = some_trading
    Order.objects.filter(pk=ask.pk).update(status="cancelled")

    assert 3 in broken(reconcile())


def test_a_pending_stops_hold_counts_as_what_its_owner_needs(some_trading, alice):
    stop = stop_buy(alice, "1", stop="101").order  # holds at 101 + 5%, off the book
    assert reconcile() == []

    Order.objects.filter(pk=stop.pk).update(held=stop.held - D("0.01"))
    assert broken(reconcile()) == [3]
    Order.objects.filter(pk=stop.pk).update(held=stop.held, status="cancelled")
    assert broken(reconcile()) == [3]  # the hold is still on the balance, no order needs it


def test_a_book_level_that_differs_from_the_orders_breaks_invariant_4(some_trading):
    BookLevel.objects.filter(side="buy").update(quantity=D("7"))

    assert broken(reconcile()) == [4]


def test_a_crossed_book_breaks_invariant_4(some_trading):
    _, bid = some_trading
    # The bid is moved above bob's ask (its level too), with its hold still correct.
    Order.objects.filter(pk=bid.pk).update(price=D("101"), held=D("202.404"))
    BookLevel.objects.filter(side="buy").update(price=D("101"))
    Balance.objects.filter(user=bid.user, asset="USD").update(held=D("202.404"))

    breaches = [breach for breach in reconcile() if breach.invariant == 4]

    assert any("crossed book" in str(breach) for breach in breaches)


def test_manage_py_reconcile_passes_on_balanced_books(some_trading, capsys):
    call_command("reconcile")

    assert "Reconciled" in capsys.readouterr().out


def test_manage_py_reconcile_exits_non_zero_on_a_breach(some_trading, alice, capsys):
    Balance.objects.filter(user=alice, asset="USD").update(available=D("1"))

    with pytest.raises(SystemExit) as exit:
        execute_from_command_line(["manage.py", "reconcile"])

    assert exit.value.code != 0
    assert "invariant 1" in capsys.readouterr().err
