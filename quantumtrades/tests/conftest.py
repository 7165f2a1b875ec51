"""Fixtures for the foundation's tests: named users and one market with a little history."""

from decimal import Decimal

import pytest

from accounts.keys import api_key_create
from accounts.models import OperatorAction, User
from accounts.services import balance_deposit
from marketdata.models import Trade
from marketdata.services import candles_rebuild
from orders.models import Fill, Order, OrderList
from tests.factories import qtx_usd_market


@pytest.fixture(autouse=True)
def fast_password_hashing(settings):
    # Argon2 is deliberately slow; these tests log users in, they do not test hashing.
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]


@pytest.fixture
def alice(db):
    """A trader: logs in, owns balances, is no operator."""
    return User.objects.create_user(username="alice", password="alice-pass-2026")


@pytest.fixture
def bob(db):
    return User.objects.create_user(username="bob", password="bob-pass-2026")


@pytest.fixture
def operator(db):
    """Staff with every permission: what runs the admin."""
    return User.objects.create_superuser(username="operator", password="operator-pass-2026")


@pytest.fixture
def market(db):
    return qtx_usd_market()


@pytest.fixture
def trading_history(alice, bob, market):
    """One row in every table the admin shows: balances, ledger, two orders, a trade and its fills.

    Written straight to the tables, not through the engine: these tests are about what
    the admin shows, and the engine's own tests cover how the rows come about.
    """
    balance_deposit(user=alice, asset="USD", amount=Decimal("1000"), reason="test funding")
    balance_deposit(user=bob, asset="QTX", amount=Decimal("100"), reason="test funding")
    maker = Order.objects.create(
        user=bob,
        market=market,
        side="sell",
        price=Decimal("10.00"),
        quantity=Decimal("2"),
        filled_quantity=Decimal("2"),
        remaining_quantity=Decimal("0"),
        filled_notional=Decimal("20"),
        status="filled",
    )
    # The taker is the entry of a bracket (its exits would come with the fill).
    bracket = OrderList.objects.create(
        user=alice,
        market=market,
        kind=OrderList.Kind.BRACKET,
        status=OrderList.Status.DONE,
        take_profit_price=Decimal("12.00"),
        stop_loss_stop_price=Decimal("9.00"),
    )
    taker = Order.objects.create(
        user=alice,
        order_list=bracket,
        leg="entry",
        market=market,
        side="buy",
        price=Decimal("10.00"),
        quantity=Decimal("2"),
        filled_quantity=Decimal("2"),
        remaining_quantity=Decimal("0"),
        filled_notional=Decimal("20"),
        status="filled",
    )
    trade = Trade.objects.create(
        market=market,
        price=Decimal("10.00"),
        quantity=Decimal("2"),
        taker_side="buy",
        maker_order_id=maker.pk,
        taker_order_id=taker.pk,
        seq=1,
    )
    for order, role, fee in [(maker, Fill.Role.MAKER, Decimal("0.02")), (taker, Fill.Role.TAKER, Decimal("0.04"))]:
        Fill.objects.create(
            order=order,
            trade=trade,
            user=order.user,
            market=market,
            side=order.side,
            role=role,
            price=trade.price,
            quantity=trade.quantity,
            fee=fee,
        )
    # The engine would have kept the candles with the trade; this history was written by hand.
    candles_rebuild(market=market)
    api_key_create(user=alice, name="alice's bot", scopes=["read", "trade"])
    OperatorAction.objects.create(kind=OperatorAction.Kind.TRADING_DISABLED, user=bob, reason="desk request")
