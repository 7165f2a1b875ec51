"""Money moved one step at a time: deposits and adjustments through their services, and
withdrawals, holds and releases as the engine posts them (`ledger_post`).

Each writes exactly one ledger entry that explains the change it made, or refuses and
writes nothing. alice starts with 100 USD.
"""

from decimal import Decimal

import pytest
from django.db import transaction

from accounts.events import BalanceChanged
from accounts.models import Asset, Balance, LedgerEntry, User
from accounts.selectors import ledger_breaches, supply_breaches
from accounts.services import Posting, balance_adjust, balance_deposit, balances_lock, ledger_post, user_register
from quantumtrades.core import events
from quantumtrades.core.errors import InsufficientFunds, InvalidInput
from quantumtrades.core.money import ZERO

D = Decimal
Kind = LedgerEntry.Kind

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def ledger_explains_every_balance_afterwards():
    yield
    assert ledger_breaches() == []
    assert supply_breaches() == []


@pytest.fixture
def usd():
    return Asset.objects.create(code="USD", name="US Dollar")


@pytest.fixture
def alice(usd):
    user = User.objects.create_user(username="alice")
    balance_deposit(user=user, asset="USD", amount=D("100"))
    return user


@pytest.fixture
def operator():
    return User.objects.create_user(username="operator", is_staff=True)


def balance(user, asset="USD"):
    found = Balance.objects.get(user=user, asset_id=asset)
    return found.available, found.held


@transaction.atomic
def post(user, kind, available=ZERO, held=ZERO, reference=""):
    """One posting to the user's USD balance, as the engine makes them."""
    posting = Posting(user.pk, "USD", kind, available_delta=available, held_delta=held, reference=reference)
    [entry] = ledger_post([posting], balances_lock([posting.key]), field="amount")
    return entry


def withdraw(user, amount):
    return post(user, Kind.WITHDRAWAL, available=-amount)


def hold(user, amount, reference=""):
    return post(user, Kind.HOLD, available=-amount, held=amount, reference=reference)


def release(user, amount):
    return post(user, Kind.RELEASE, available=amount, held=-amount)


def entries(user):
    """alice's statement after her opening deposit, oldest first."""
    return list(LedgerEntry.objects.filter(user=user).order_by("id"))[1:]


def test_a_deposit_writes_one_entry_and_credits_available(alice):
    entry = balance_deposit(user=alice, asset="USD", amount=D("25.5"), reference="wire:1", reason="top up")

    assert entries(alice) == [entry]
    assert (entry.kind, entry.available_delta, entry.held_delta) == ("deposit", D("25.5"), 0)
    assert (entry.available_after, entry.held_after) == (D("125.5"), 0)
    assert (entry.reference, entry.reason) == ("wire:1", "top up")
    assert balance(alice) == (D("125.5"), 0)


def test_a_first_deposit_opens_the_balance(usd):
    bob = User.objects.create_user(username="bob")

    balance_deposit(user=bob, asset=usd, amount="0.00000001")

    assert balance(bob) == (D("0.00000001"), 0)


def test_a_withdrawal_writes_one_entry_and_debits_available(alice):
    entry = withdraw(alice, D("40"))

    assert entries(alice) == [entry]
    assert (entry.kind, entry.available_delta, entry.available_after, entry.held_after) == (
        "withdrawal",
        D("-40"),
        D("60"),
        0,
    )
    assert balance(alice) == (D("60"), 0)


def test_withdrawing_everything_leaves_zero(alice):
    withdraw(alice, D("100"))

    assert balance(alice) == (0, 0)


def test_withdrawing_more_than_available_is_refused_and_writes_nothing(alice):
    with pytest.raises(InsufficientFunds):
        withdraw(alice, D("100.00000001"))

    assert entries(alice) == []
    assert balance(alice) == (D("100"), 0)


def test_a_hold_moves_available_to_held_in_one_entry(alice):
    entry = hold(alice, D("30"), reference="order:7")

    assert entries(alice) == [entry]
    assert (entry.kind, entry.available_delta, entry.held_delta) == ("hold", D("-30"), D("30"))
    assert (entry.available_after, entry.held_after) == (D("70"), D("30"))
    assert balance(alice) == (D("70"), D("30"))


def test_holding_more_than_available_is_refused_and_writes_nothing(alice):
    with pytest.raises(InsufficientFunds):
        hold(alice, D("101"))

    assert entries(alice) == []


def test_a_withdrawal_can_not_touch_held_funds(alice):
    hold(alice, D("30"))

    with pytest.raises(InsufficientFunds):
        withdraw(alice, D("71"))

    assert balance(alice) == (D("70"), D("30"))


def test_a_release_moves_held_back_to_available_in_one_entry(alice):
    hold(alice, D("30"))

    entry = release(alice, D("12.5"))

    assert entries(alice)[-1] == entry
    assert (entry.kind, entry.available_delta, entry.held_delta) == ("release", D("12.5"), D("-12.5"))
    assert (entry.available_after, entry.held_after) == (D("82.5"), D("17.5"))


def test_an_adjustment_credits_with_its_reason_and_operator(alice, operator):
    entry = balance_adjust(user=alice, asset="USD", amount=D("5"), reason="  goodwill  ", created_by=operator)

    assert entries(alice) == [entry]
    assert (entry.kind, entry.available_delta, entry.available_after) == ("adjustment", D("5"), D("105"))
    assert (entry.reason, entry.created_by) == ("goodwill", operator)


def test_a_negative_adjustment_debits(alice, operator):
    balance_adjust(user=alice, asset="USD", amount=D("-99.99"), reason="correction", created_by=operator)

    assert balance(alice) == (D("0.01"), 0)


def test_a_negative_adjustment_can_not_overdraw(alice, operator):
    with pytest.raises(InsufficientFunds):
        balance_adjust(user=alice, asset="USD", amount=D("-100.01"), reason="correction", created_by=operator)

    assert entries(alice) == []


@pytest.mark.parametrize("reason", ["", "   ", None])
def test_an_adjustment_needs_a_reason(alice, operator, reason):
    with pytest.raises(InvalidInput) as refused:
        balance_adjust(user=alice, asset="USD", amount=D("5"), reason=reason, created_by=operator)

    assert refused.value.field == "reason"
    assert entries(alice) == []


BAD_AMOUNTS = [
    pytest.param(D("0"), id="zero"),
    pytest.param(D("-1"), id="negative"),
    pytest.param(D("NaN"), id="NaN"),
    pytest.param(D("Infinity"), id="infinity"),
    pytest.param(D("0.000000001"), id="9 decimals"),
    pytest.param(D("1e21"), id="too large"),
    pytest.param("ten", id="not a number"),
    pytest.param(None, id="missing"),
]


@pytest.mark.parametrize("amount", BAD_AMOUNTS)
def test_a_bad_deposit_amount_is_refused(alice, amount):
    with pytest.raises(InvalidInput) as refused:
        balance_deposit(user=alice, asset="USD", amount=amount)

    assert refused.value.field == "amount"
    assert entries(alice) == []


@pytest.mark.parametrize("amount", [D("0"), D("NaN"), D("-0.000000001"), "ten"])
def test_a_bad_adjustment_amount_is_refused(alice, operator, amount):
    with pytest.raises(InvalidInput) as refused:
        balance_adjust(user=alice, asset="USD", amount=amount, reason="correction", created_by=operator)

    assert refused.value.field == "amount"


def test_each_change_is_announced_after_commit(alice, django_capture_on_commit_callbacks):
    received = []
    events.subscribe(received.append)
    try:
        with django_capture_on_commit_callbacks(execute=True):
            hold(alice, D("30"))
    finally:
        events.unsubscribe(received.append)

    last_entry = LedgerEntry.objects.filter(user=alice, asset="USD").latest("pk").pk
    assert received == [
        [BalanceChanged(user_id=alice.pk, asset="USD", available=D("70"), held=D("30"), version=last_entry)]
    ]


# --- Registration -----------------------------------------------------------------------


def test_a_new_user_gets_the_paper_grant_for_the_assets_that_exist(usd, settings):
    Asset.objects.create(code="QTX", name="QuantumTrades Token")
    settings.PAPER_GRANT = {"USD": "100000", "QTX": "1000", "ETH": "20"}

    carol = user_register(username="carol", email="carol@example.com")

    deposits = {entry.asset_id: entry for entry in LedgerEntry.objects.filter(user=carol)}
    assert set(deposits) == {"USD", "QTX"}
    assert {entry.kind for entry in deposits.values()} == {"deposit"}
    assert deposits["USD"].reason == "paper-trading grant"
    assert balance(carol, "USD") == (D("100000"), 0)
    assert balance(carol, "QTX") == (D("1000"), 0)
    assert not Balance.objects.filter(user=carol, asset_id="ETH").exists()


def test_an_empty_paper_grant_registers_without_money(usd, settings):
    settings.PAPER_GRANT = {}

    dave = user_register(username="dave")

    assert not LedgerEntry.objects.filter(user=dave).exists()


def test_releasing_more_than_is_held_is_refused_and_changes_nothing(alice):
    hold(alice, D("10"))
    before = Balance.objects.get(user=alice, asset="USD")
    entries = LedgerEntry.objects.count()

    with pytest.raises(InsufficientFunds) as refused:
        release(alice, D("10.01"))

    assert refused.value.field == "amount"
    after = Balance.objects.get(user=alice, asset="USD")
    assert (after.available, after.held) == (before.available, D("10"))
    assert LedgerEntry.objects.count() == entries
