"""The database itself refuses what would break the money model, whatever the code above it does.

Each refusal is provoked with a raw `QuerySet.update()` or `create()`, which skips Django's
validation, inside its own `atomic()` block so the test's transaction survives it.
"""

from decimal import Decimal

import pytest
from django.db import DatabaseError, IntegrityError, connection, transaction

from accounts.models import Asset, Balance, LedgerEntry, User
from accounts.services import balance_deposit

pytestmark = pytest.mark.django_db


@pytest.fixture
def alice():
    return User.objects.create_user(username="alice")


@pytest.fixture
def usd():
    return Asset.objects.create(code="USD", name="US Dollar")


@pytest.fixture
def alice_usd(alice, usd):
    balance_deposit(user=alice, asset=usd, amount=Decimal("100"))
    return Balance.objects.get(user=alice, asset=usd)


# --- Balance ----------------------------------------------------------------------------


def test_database_refuses_negative_available(alice_usd):
    with pytest.raises(IntegrityError), transaction.atomic():
        Balance.objects.filter(pk=alice_usd.pk).update(available=Decimal("-0.00000001"))

    alice_usd.refresh_from_db()
    assert alice_usd.available == Decimal("100")


def test_database_refuses_negative_held(alice_usd):
    with pytest.raises(IntegrityError), transaction.atomic():
        Balance.objects.filter(pk=alice_usd.pk).update(held=Decimal("-1"))

    alice_usd.refresh_from_db()
    assert alice_usd.held == Decimal("0")


# --- Ledger -----------------------------------------------------------------------------


def test_database_refuses_to_update_a_ledger_entry(alice_usd):
    entry = LedgerEntry.objects.get(user=alice_usd.user)

    with pytest.raises(DatabaseError, match="append-only"), transaction.atomic():
        LedgerEntry.objects.filter(pk=entry.pk).update(available_delta=Decimal("1000000"), available_after=1000000)

    entry.refresh_from_db()
    assert entry.available_delta == Decimal("100")


@pytest.mark.skipif(connection.vendor != "postgresql", reason="SQLite's trigger covers UPDATE only (see 0002)")
def test_postgresql_refuses_to_delete_a_ledger_entry(alice_usd):
    entry = LedgerEntry.objects.get(user=alice_usd.user)

    with pytest.raises(DatabaseError, match="append-only"), transaction.atomic():
        LedgerEntry.objects.filter(pk=entry.pk).delete()

    assert LedgerEntry.objects.filter(pk=entry.pk).exists()


def test_the_database_refuses_a_username_that_differs_only_in_case(alice):
    with pytest.raises(IntegrityError), transaction.atomic():
        User.objects.create_user(username="Alice")
