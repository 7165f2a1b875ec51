"""Test data that every suite builds the same way."""

from decimal import Decimal

from django.conf import settings

from accounts.models import Asset, User
from marketdata.models import Market


def fee_account() -> User:
    """The fee account. Migration accounts.0002 creates it, but a `transaction=True` test
    flushes the database, so it is recreated when missing (each test starts with the
    engine's copy of its id forgotten: the root conftest)."""
    return User.objects.get_or_create(username=settings.FEE_ACCOUNT_USERNAME, defaults={"is_active": False})[0]


def qtx_usd_market(**rules) -> Market:
    """QTX-USD: tick 0.01, lot 0.01, minimum notional 1 USD, maker 0.1%, taker 0.2%.

    No price band and no circuit breaker unless `rules` set them: the engine's tests move
    prices freely; the market integrity tests set the rules they test.
    """
    usd = Asset.objects.get_or_create(code="USD", defaults={"name": "US Dollar"})[0]
    qtx = Asset.objects.get_or_create(code="QTX", defaults={"name": "QuantumTrades Token"})[0]
    return Market.objects.create(
        symbol="QTX-USD",
        base=qtx,
        quote=usd,
        tick_size=Decimal("0.01"),
        lot_size=Decimal("0.01"),
        min_notional=Decimal("1"),
        maker_fee=Decimal("0.001"),
        taker_fee=Decimal("0.002"),
        **{"price_band": None, "circuit_breaker": None, **rules},
    )
