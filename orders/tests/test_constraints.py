"""The database itself keeps a user's client_order_id unique, whatever the code above it does.

Each refusal is provoked with a raw `create()`, which skips the engine, inside its own
`atomic()` block so the test's transaction survives it.
"""

import io
from decimal import Decimal

import pytest
from django.core.management import call_command
from django.db import IntegrityError, transaction

from orders.models import Order

pytestmark = pytest.mark.django_db


def place_order(*, user, market, client_order_id):
    return Order.objects.create(
        user=user,
        market=market,
        client_order_id=client_order_id,
        side="buy",
        price=Decimal("10.00"),
        quantity=Decimal("1"),
        remaining_quantity=Decimal("1"),
    )


def test_database_refuses_a_repeated_client_order_id_from_one_user(alice, market):
    place_order(user=alice, market=market, client_order_id="alice-1")

    with pytest.raises(IntegrityError), transaction.atomic():
        place_order(user=alice, market=market, client_order_id="alice-1")

    assert Order.objects.filter(user=alice).count() == 1


def test_two_users_may_use_the_same_client_order_id(alice, bob, market):
    place_order(user=alice, market=market, client_order_id="my-order-1")
    place_order(user=bob, market=market, client_order_id="my-order-1")

    assert Order.objects.filter(client_order_id="my-order-1").count() == 2


def test_orders_without_client_order_id_may_repeat(alice, market):
    place_order(user=alice, market=market, client_order_id=None)
    place_order(user=alice, market=market, client_order_id=None)

    assert Order.objects.filter(user=alice, client_order_id=None).count() == 2


def test_the_demo_seed_places_no_orders():
    call_command("seed_demo", stdout=io.StringIO())

    assert Order.objects.count() == 0
