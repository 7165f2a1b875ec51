"""The database itself refuses what would break the money model, whatever the code above it does.

Each refusal is provoked with a raw `QuerySet.update()` or `create()`, which skips Django's
validation, inside its own `atomic()` block so the test's transaction survives it.
"""

from decimal import Decimal

import pytest
from django.apps import apps
from django.db import DatabaseError, IntegrityError, connection, transaction

from accounts.models import Asset, Balance, LedgerEntry, User
from accounts.services import balance_deposit

pytestmark = pytest.mark.django_db


@pytest.fixture
def alice():
    return User.objects.create_user(username="alice")


@pytest.fixture
def bob():
    return User.objects.create_user(username="bob")


@pytest.fixture
def usd():
    return Asset.objects.create(code="USD", name="US Dollar")


@pytest.fixture
def alice_usd(alice, usd):
    balance_deposit(user=alice, asset=usd, amount=Decimal("100"))
    return Balance.objects.get(user=alice, asset=usd)


@pytest.fixture
def market(usd):
    # accounts sits below marketdata and orders: its tests reach them through the app
    # registry rather than by importing them.
    Market = apps.get_model("marketdata", "Market")
    qtx = Asset.objects.create(code="QTX", name="QuantumTrades Token")
    return Market.objects.create(
        symbol="QTX-USD", base=qtx, quote=usd, tick_size=Decimal("0.01"), lot_size=Decimal("0.01"), min_notional=1
    )


def place_order(*, user, market, client_order_id):
    Order = apps.get_model("orders", "Order")
    return Order.objects.create(
        user=user,
        market=market,
        client_order_id=client_order_id,
        side="buy",
        price=Decimal("10.00"),
        quantity=Decimal("1"),
        remaining_quantity=Decimal("1"),
    )


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


# --- Order ------------------------------------------------------------------------------


def test_database_refuses_a_repeated_client_order_id_from_one_user(alice, market):
    place_order(user=alice, market=market, client_order_id="alice-1")

    with pytest.raises(IntegrityError), transaction.atomic():
        place_order(user=alice, market=market, client_order_id="alice-1")

    assert apps.get_model("orders", "Order").objects.filter(user=alice).count() == 1


def test_two_users_may_use_the_same_client_order_id(alice, bob, market):
    place_order(user=alice, market=market, client_order_id="my-order-1")
    place_order(user=bob, market=market, client_order_id="my-order-1")

    assert apps.get_model("orders", "Order").objects.filter(client_order_id="my-order-1").count() == 2


def test_orders_without_client_order_id_may_repeat(alice, market):
    place_order(user=alice, market=market, client_order_id=None)
    place_order(user=alice, market=market, client_order_id=None)

    assert apps.get_model("orders", "Order").objects.filter(user=alice, client_order_id=None).count() == 2


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
