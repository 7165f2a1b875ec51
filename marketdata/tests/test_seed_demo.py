"""`manage.py seed_demo`: demo markets with a day of history and users, no orders; running it
again changes nothing."""

import io
from datetime import timedelta
from decimal import Decimal

import pytest
from django.conf import settings
from django.core.management import call_command

from accounts.models import Asset, Balance, LedgerEntry, User
from marketdata.management.commands.seed_demo import DEMO_PASSWORD, HISTORY_TRADES
from marketdata.models import Market, Trade
from marketdata.selectors import candles, ticker

from .tape import assert_candles_match_tape

pytestmark = pytest.mark.django_db

SEEDED_MODELS = [Asset, Market, User, Balance, LedgerEntry]


def snapshot():
    """Every row of every table seed_demo writes, as plain values in primary-key order."""
    return {model.__name__: list(model.objects.order_by("pk").values()) for model in SEEDED_MODELS}


@pytest.fixture(autouse=True)
def fast_password_hashing(settings):
    # seed_demo creates seven users; Argon2 would spend most of the run hashing their passwords.
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]


def seed():
    """Run seed_demo and return what it printed."""
    out = io.StringIO()
    call_command("seed_demo", stdout=out)
    return out.getvalue()


def test_second_run_changes_nothing():
    seed()
    first = snapshot()

    seed()

    assert snapshot() == first


def test_second_run_reports_nothing_new():
    seed()

    assert "Nothing new" in seed()


@pytest.mark.parametrize("symbol", ["QTX-USD", "BTC-USD", "ETH-USD"])
def test_demo_market_exists_with_positive_tick_and_lot(symbol):
    seed()

    market = Market.objects.get(symbol=symbol)
    assert market.tick_size > 0
    assert market.lot_size > 0
    assert market.is_trading


def test_demo_trader_alice_holds_the_paper_grant():
    seed()

    balances = {b.asset_id: b for b in Balance.objects.filter(user__username="alice")}
    assert {code: balance.available for code, balance in balances.items()} == {
        code: Decimal(amount) for code, amount in settings.PAPER_GRANT.items()
    }
    assert all(balance.held == 0 for balance in balances.values())


def test_demo_trader_alice_can_log_in():
    seed()

    alice = User.objects.get(username="alice")
    assert alice.is_active
    assert alice.check_password(DEMO_PASSWORD)


@pytest.mark.parametrize("symbol", ["QTX-USD", "BTC-USD", "ETH-USD"])
def test_each_demo_market_starts_with_a_day_of_history_its_charts_agree_with(symbol):
    seed()

    market = Market.objects.get(symbol=symbol)
    trades = Trade.objects.filter(market=market)
    assert trades.count() == HISTORY_TRADES
    oldest, newest = trades.order_by("id").first().created_at, trades.order_by("-id").first().created_at
    assert timedelta(hours=23) < newest - oldest <= timedelta(days=1)
    assert_candles_match_tape(market)
    # The overview's sparkline (24 hourly candles) has a day to draw, and the ticker a day to sum.
    assert len(candles(market=market, interval="1h", limit=24)) >= 23
    assert ticker(market=market).trades_24h > HISTORY_TRADES * 0.9


def test_second_run_adds_no_history():
    seed()
    tape = list(Trade.objects.order_by("id").values_list("id", flat=True))

    assert "History" not in seed()

    assert list(Trade.objects.order_by("id").values_list("id", flat=True)) == tape
