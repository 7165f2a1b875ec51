"""The cast of the engine's stories: alice, bob and carol trading QTX-USD (and BTC-USD).

Every trader starts with STARTING_USD and STARTING_QTX, deposited through the ledger, so a
test can say exactly what a trader should see afterwards. The verbs the stories use
(`buy`, `sell`, `available`, `held`) live in `stories.py`.
"""

from decimal import Decimal

import pytest
from django.db import connection

from accounts.models import Asset
from marketdata.models import Market
from quantumtrades.core import events
from tests.factories import fee_account, qtx_usd_market

from .stories import STARTING_BTC, STARTING_QTX, STARTING_USD, trader


@pytest.fixture
def fees(db):
    """The fee account (recreated after a transactional test's flush)."""
    return fee_account()


@pytest.fixture
def assets(db):
    return {
        code: Asset.objects.get_or_create(code=code, defaults={"name": name})[0]
        for code, name in [("USD", "US Dollar"), ("QTX", "QuantumTrades Token"), ("BTC", "Bitcoin")]
    }


@pytest.fixture
def market(assets, fees):
    return qtx_usd_market()


@pytest.fixture
def btc_market(assets, fees):
    """BTC-USD: a second market quoted in USD; its fine lot makes fees carry more than 8 decimals."""
    return Market.objects.create(
        symbol="BTC-USD",
        base=assets["BTC"],
        quote=assets["USD"],
        tick_size=Decimal("0.01"),
        lot_size=Decimal("0.0001"),
        min_notional=Decimal("10"),
        price_band=None,
        circuit_breaker=None,
        maker_fee=Decimal("0.001"),
        taker_fee=Decimal("0.002"),
    )


@pytest.fixture
def make_trader(assets):
    """A trader with the given deposits, e.g. make_trader("dave", USD="50")."""
    return trader


@pytest.fixture
def alice(assets):
    return trader("alice", USD=STARTING_USD, QTX=STARTING_QTX, BTC=STARTING_BTC)


@pytest.fixture
def bob(assets):
    return trader("bob", USD=STARTING_USD, QTX=STARTING_QTX, BTC=STARTING_BTC)


@pytest.fixture
def carol(assets):
    return trader("carol", USD=STARTING_USD, QTX=STARTING_QTX, BTC=STARTING_BTC)


@pytest.fixture
def published():
    """Every event batch delivered to subscribers (that is: after commit), in order."""
    batches = []
    subscriber = events.subscribe(batches.append)
    yield batches
    events.unsubscribe(subscriber)


@pytest.fixture
def on_postgres():
    if connection.vendor != "postgresql":
        pytest.skip("needs PostgreSQL: row locks and real concurrency")
