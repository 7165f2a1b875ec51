"""`manage.py seed_history` and `manage.py rebuild_candles`: synthesised history and its candles.

Everything derived from the tape must agree with it: every interval's candles equal an
aggregate over the trades (marketdata/tests/tape.py computes it in Python), and so does
the 24-hour ticker.
"""

import io
from datetime import timedelta
from decimal import Decimal

import pytest
from django.core.management import CommandError, call_command
from django.utils import timezone

from accounts.models import Asset, Balance, LedgerEntry
from marketdata.history import history_seed
from marketdata.models import BookLevel, Candle, Interval, Market, Side, Trade
from marketdata.selectors import candles, ticker

from .tape import as_dict, assert_candles_match_tape, tape_candles, tape_ticker

pytestmark = pytest.mark.django_db


@pytest.fixture
def market(db):
    """QTX-USD: tick 0.01, lot 0.01, minimum notional 1 USD."""
    usd = Asset.objects.get_or_create(code="USD", defaults={"name": "US Dollar"})[0]
    qtx = Asset.objects.get_or_create(code="QTX", defaults={"name": "QuantumTrades Token"})[0]
    return Market.objects.create(
        symbol="QTX-USD",
        base=qtx,
        quote=usd,
        tick_size=Decimal("0.01"),
        lot_size=Decimal("0.01"),
        min_notional=Decimal("1"),
        price_band=None,
        circuit_breaker=None,
    )


def seed_history(*args) -> str:
    out = io.StringIO()
    call_command("seed_history", *args, stdout=out)
    return out.getvalue()


def test_history_is_n_trades_on_the_grid_over_the_last_d_days(market):
    before = timezone.now()
    output = seed_history("--market", "QTX-USD", "--trades", "3000", "--days", "2", "--price", "100", "--seed", "7")

    trades = list(Trade.objects.filter(market=market).order_by("id"))
    assert len(trades) == 3000
    assert "3,000 trades" in output
    assert all(t.price % market.tick_size == 0 and t.quantity % market.lot_size == 0 for t in trades)
    assert all(t.price > 0 and t.quantity > 0 for t in trades)
    # In time order by id, inside the last two days, ending at the price it was given.
    times = [t.created_at for t in trades]
    assert times == sorted(times)
    assert before - timedelta(days=2) <= times[0] and times[-1] <= timezone.now()
    assert trades[-1].price == Decimal("100")
    # The price band's reference, as the engine keeps it.
    assert Market.objects.get(pk=market.pk).last_price == Decimal("100")
    # A believable walk: it wanders, but stays near the price.
    prices = {t.price for t in trades}
    assert len(prices) > 20
    assert Decimal("70") < min(prices) and max(prices) < Decimal("130")
    assert {t.taker_side for t in trades} == {Side.BUY, Side.SELL}


def test_history_trades_reference_no_orders_and_move_no_money(market):
    seed_history("--market", "QTX-USD", "--trades", "500", "--days", "1", "--price", "100")

    assert not Trade.objects.filter(market=market, maker_order_id__isnull=False).exists()
    assert not Trade.objects.filter(market=market, taker_order_id__isnull=False).exists()
    assert set(Trade.objects.values_list("seq", flat=True)) == {0}
    assert not LedgerEntry.objects.exists() and not Balance.objects.exists()


def test_every_interval_and_the_ticker_agree_with_the_history(market):
    seed_history("--market", "QTX-USD", "--trades", "4000", "--days", "3", "--price", "25.50", "--seed", "1")

    assert_candles_match_tape(market)
    now = timezone.now()
    assert as_dict(ticker(market=market, now=now)) == tape_ticker(market, now)
    # Three days: the 1d chart has three or four candles and the 1m chart its last two hours.
    assert len(candles(market=market, interval="1d", limit=10)) in (3, 4)
    assert 0 < len(candles(market=market, interval="1m", limit=120)) <= 120


def test_the_same_seed_writes_the_same_history(market, django_assert_num_queries):
    now = timezone.now()
    history_seed(market=market, trades=300, days=1, price=Decimal("100"), seed=42, now=now)
    first = list(Trade.objects.order_by("id").values_list("price", "quantity", "taker_side", "created_at"))
    Candle.objects.all().delete()
    Trade.objects.all().delete()

    history_seed(market=market, trades=300, days=1, price=Decimal("100"), seed=42, now=now)

    assert list(Trade.objects.order_by("id").values_list("price", "quantity", "taker_side", "created_at")) == first


def test_without_a_price_the_history_ends_at_the_middle_of_the_book(market):
    BookLevel.objects.create(market=market, side=Side.BUY, price=Decimal("49.90"), quantity=Decimal("1"))
    BookLevel.objects.create(market=market, side=Side.SELL, price=Decimal("50.10"), quantity=Decimal("1"))

    seed_history("--market", "QTX-USD", "--trades", "200", "--days", "1")

    assert Trade.objects.filter(market=market).order_by("-id").first().price == Decimal("50.00")


def test_a_second_run_refuses_and_changes_nothing(market):
    seed_history("--market", "QTX-USD", "--trades", "100", "--days", "1", "--price", "100")
    tape = list(Trade.objects.values_list("id", "price"))

    with pytest.raises(CommandError, match="already has trades"):
        seed_history("--market", "QTX-USD", "--trades", "100", "--days", "1", "--price", "100")

    assert list(Trade.objects.values_list("id", "price")) == tape


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        (["--market", "NOPE-USD", "--trades", "10", "--days", "1"], "no market 'NOPE-USD'"),
        (["--market", "QTX-USD", "--trades", "0", "--days", "1", "--price", "100"], "trades must be between"),
        (["--market", "QTX-USD", "--trades", "10", "--days", "0", "--price", "100"], "days must be more than 0"),
        (["--market", "QTX-USD", "--trades", "10", "--days", "-2", "--price", "100"], "days must be more than 0"),
        (["--market", "QTX-USD", "--trades", "10", "--days", "1", "--price", "100.005"], "multiple of the tick"),
        (["--market", "QTX-USD", "--trades", "10", "--days", "1", "--price", "-1"], "positive multiple"),
        (["--market", "QTX-USD", "--trades", "10", "--days", "1", "--price", "lots"], "decimal number"),
        (["--market", "QTX-USD", "--trades", "10", "--days", "1", "--price", "NaN"], "finite"),
        (["--market", "QTX-USD", "--trades", "10", "--days", "1"], "no trades and no book"),
    ],
    ids=[
        "unknown market",
        "no trades",
        "no days",
        "negative days",
        "off tick",
        "negative price",
        "not a number",
        "nan",
        "nothing to walk around",
    ],  # fmt: skip
)
def test_bad_arguments_are_a_clear_command_error(market, arguments, message):
    with pytest.raises(CommandError, match=message):
        seed_history(*arguments)

    assert not Trade.objects.exists()


def test_missing_arguments_are_a_command_error(market):
    with pytest.raises(CommandError, match="--trades"):
        seed_history("--market", "QTX-USD", "--days", "1")


# --- rebuild_candles ---------------------------------------------------------------------


def rebuild(*args) -> str:
    out = io.StringIO()
    call_command("rebuild_candles", *args, stdout=out)
    return out.getvalue()


def test_rebuild_repairs_candles_that_went_wrong(market):
    seed_history("--market", "QTX-USD", "--trades", "2000", "--days", "2", "--price", "100")
    Candle.objects.filter(interval=Interval.M1).order_by("start")[:1].get().delete()
    Candle.objects.filter(interval=Interval.H1).update(volume=Decimal("1"))
    Candle.objects.filter(interval=Interval.D1).delete()

    output = rebuild("--market", "QTX-USD")

    assert_candles_match_tape(market)
    assert f"QTX-USD: {len(tape_candles(market, '1m')):,} 1m candles rebuilt." in output


def test_rebuild_since_a_day_leaves_older_candles_alone(market):
    seed_history("--market", "QTX-USD", "--trades", "2000", "--days", "3", "--price", "100")
    today = timezone.now().date()
    old = Candle.objects.filter(start__date__lt=today - timedelta(days=1)).order_by("pk")
    old_rows = list(old.values())
    Candle.objects.filter(start__date__gte=today).delete()

    rebuild("--since", f"{today - timedelta(days=1):%Y-%m-%d}")

    assert list(old.values()) == old_rows  # rows untouched, not rewritten
    assert_candles_match_tape(market)


def test_rebuild_of_an_empty_tape_writes_nothing(market):
    assert rebuild() == "QTX-USD: 0 1m candles rebuilt.\n"
    assert not Candle.objects.exists()


@pytest.mark.parametrize(
    ("arguments", "message"),
    [(["--market", "NOPE"], "no market 'NOPE'"), (["--since", "yesterday"], "--since must be a date")],
)
def test_rebuild_bad_arguments_are_a_command_error(market, arguments, message):
    with pytest.raises(CommandError, match=message):
        rebuild(*arguments)
