"""The tape's own aggregates, computed here in Python from every trade: what the candles and
the ticker must equal. Slow on purpose (it reads the whole tape); for tests only."""

from collections import defaultdict
from datetime import datetime
from decimal import Decimal

from marketdata.models import Candle, Interval, Market, Trade
from marketdata.selectors import ticker_window_start
from marketdata.services import bucket_start

ZERO = Decimal(0)
Row = tuple  # (start, open, high, low, close, volume, quote_volume, trades)


def tape_candles(market: Market, interval: str) -> list[Row]:
    buckets = defaultdict(list)
    for trade in Trade.objects.filter(market=market).order_by("id"):
        buckets[bucket_start(trade.created_at, interval)].append(trade)
    return [
        (
            start,
            trades[0].price,
            max(t.price for t in trades),
            min(t.price for t in trades),
            trades[-1].price,
            sum((t.quantity for t in trades), ZERO),
            sum((t.price * t.quantity for t in trades), ZERO),
            len(trades),
        )
        for start, trades in sorted(buckets.items())
    ]


def stored_candles(market: Market, interval: str) -> list[Row]:
    return [
        (c.start, c.open, c.high, c.low, c.close, c.volume, c.quote_volume, c.trades)
        for c in Candle.objects.filter(market=market, interval=interval).order_by("start")
    ]


def assert_candles_match_tape(market: Market) -> None:
    for interval in Interval.values:
        stored, expected = stored_candles(market, interval), tape_candles(market, interval)
        differing = [(have, want) for have, want in zip(stored, expected, strict=False) if have != want][:1]
        assert stored == expected, (interval, len(stored), len(expected), differing)


def tape_ticker(market: Market, now: datetime) -> dict:
    """The ticker's fields over the trades since `ticker_window_start(now)`."""
    since = ticker_window_start(now)
    trades = list(Trade.objects.filter(market=market).order_by("id"))
    window = [t for t in trades if t.created_at >= since]
    before = [t for t in trades if t.created_at < since]
    opening = before[-1].price if before else (window[0].price if window else None)
    return {
        "last_price": trades[-1].price if trades else None,
        "open_24h": opening,
        "high_24h": max((t.price for t in window), default=None),
        "low_24h": min((t.price for t in window), default=None),
        "volume_24h": sum((t.quantity for t in window), ZERO),
        "quote_volume_24h": sum((t.price * t.quantity for t in window), ZERO),
        "trades_24h": len(window),
    }


TICKER_FIELDS = ["last_price", "open_24h", "high_24h", "low_24h", "volume_24h", "quote_volume_24h", "trades_24h"]


def as_dict(tick) -> dict:
    return {name: getattr(tick, name) for name in TICKER_FIELDS}
