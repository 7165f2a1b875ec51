"""Reads of public market data: the book, the tape, the ticker and candles."""

from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from decimal import Decimal

from django.db import connection, transaction
from django.db.models import Count, F, Max, Min, Sum
from django.utils import timezone

from accounts.money import ZERO, MoneyField, money

from .models import BookLevel, Market, Side, Trade

DEFAULT_DEPTH = 50
MAX_DEPTH = 500

Level = tuple[Decimal, Decimal]


@dataclass(frozen=True)
class BookSnapshot:
    symbol: str
    seq: int
    bids: list[Level]  # best (highest) first
    asks: list[Level]  # best (lowest) first

    @property
    def best_bid(self) -> Decimal | None:
        return self.bids[0][0] if self.bids else None

    @property
    def best_ask(self) -> Decimal | None:
        return self.asks[0][0] if self.asks else None

    @property
    def spread(self) -> Decimal | None:
        if self.best_bid is None or self.best_ask is None:
            return None
        return self.best_ask - self.best_bid


def book_snapshot(*, market: Market, depth: int = DEFAULT_DEPTH) -> BookSnapshot:
    """The book's top `depth` levels per side and the sequence they belong to.

    Levels and sequence come from one database snapshot, so a stream that starts from
    this `seq` applies exactly the updates that follow it.
    """
    depth = max(1, min(depth, MAX_DEPTH))
    outermost = not connection.in_atomic_block
    with transaction.atomic():
        if outermost and connection.vendor == "postgresql":
            # One MVCC snapshot for both reads. (SQLite's transactions are serialised already;
            # inside a caller's transaction, that transaction decides.)
            with connection.cursor() as cursor:
                cursor.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ READ ONLY")
        seq = Market.objects.filter(pk=market.pk).values_list("book_seq", flat=True).get()
        levels = BookLevel.objects.filter(market=market, quantity__gt=0)
        bids = list(levels.filter(side=Side.BUY).order_by("-price").values_list("price", "quantity")[:depth])
        asks = list(levels.filter(side=Side.SELL).order_by("price").values_list("price", "quantity")[:depth])
    return BookSnapshot(symbol=market.symbol, seq=seq, bids=bids, asks=asks)


def trades_recent(*, market: Market, limit: int = 50) -> list[Trade]:
    return list(Trade.objects.filter(market=market).order_by("-id")[: max(1, min(limit, 500))])


@dataclass(frozen=True)
class Ticker:
    symbol: str
    last_price: Decimal | None
    open_24h: Decimal | None
    high_24h: Decimal | None
    low_24h: Decimal | None
    volume_24h: Decimal  # in the base asset
    quote_volume_24h: Decimal
    trades_24h: int

    @property
    def change_24h(self) -> Decimal | None:
        if self.last_price is None or self.open_24h is None:
            return None
        return self.last_price - self.open_24h

    @property
    def change_24h_percent(self) -> Decimal | None:
        if self.change_24h is None or not self.open_24h:
            return None
        return (self.change_24h / self.open_24h * 100).quantize(Decimal("0.01"))


def ticker(*, market: Market, now: datetime | None = None) -> Ticker:
    """Last price and the rolling 24 hours: change, high, low, volume."""
    since = (now or timezone.now()) - timedelta(hours=24)
    last = Trade.objects.filter(market=market).order_by("-id").values_list("price", flat=True).first()
    window = Trade.objects.filter(market=market, created_at__gte=since)
    stats = window.aggregate(
        high=Max("price"),
        low=Min("price"),
        volume=Sum("quantity"),
        quote_volume=Sum(F("price") * F("quantity"), output_field=MoneyField()),
        count=Count("id"),
    )
    first = window.order_by("id").values_list("price", flat=True).first()
    # The price 24 hours ago is the last trade before the window, if there was one.
    before = (
        Trade.objects.filter(market=market, created_at__lt=since)
        .order_by("-id")
        .values_list("price", flat=True)
        .first()
    )
    return Ticker(
        symbol=market.symbol,
        last_price=last,
        open_24h=before if before is not None else first,
        high_24h=_money(stats["high"]) if stats["count"] else None,
        low_24h=_money(stats["low"]) if stats["count"] else None,
        volume_24h=_money(stats["volume"] or ZERO),
        quote_volume_24h=_money(stats["quote_volume"] or ZERO),
        trades_24h=stats["count"],
    )


INTERVALS = {"1m": 60, "5m": 300, "1h": 3600, "1d": 86400}
MAX_CANDLES = 500


@dataclass
class Candle:
    start: datetime
    open: Decimal
    high: Decimal
    low: Decimal
    close: Decimal
    volume: Decimal
    trades: int = field(default=0)


def candles(*, market: Market, interval: str = "1m", limit: int = 120, now: datetime | None = None) -> list[Candle]:
    """OHLCV buckets of `interval`, oldest first: the last `limit` buckets that had trades.

    Aggregated in the database, one row per bucket. Buckets are aligned to the Unix
    epoch, so a 5m candle starts at :00, :05, ... and a 1d candle at midnight UTC.
    """
    seconds = INTERVALS[interval]
    limit = max(1, min(limit, MAX_CANDLES))
    now = now or timezone.now()
    since = datetime.fromtimestamp((int(now.timestamp()) // seconds - limit + 1) * seconds, tz=UTC)
    if connection.vendor == "postgresql":
        bucket = "floor(extract(epoch from created_at) / %s)::bigint"
    else:
        bucket = "CAST(strftime('%%s', created_at) AS INTEGER) / %s"
    table = Trade._meta.db_table
    with connection.cursor() as cursor:
        cursor.execute(
            f"SELECT {bucket} AS bucket, MIN(price), MAX(price), SUM(quantity), COUNT(*), MIN(id), MAX(id) "
            f"FROM {table} WHERE market_id = %s AND created_at >= %s GROUP BY bucket ORDER BY bucket",
            [seconds, market.pk, since],
        )
        rows = cursor.fetchall()
    ends = {row[5] for row in rows} | {row[6] for row in rows}
    prices = dict(Trade.objects.filter(pk__in=ends).values_list("pk", "price"))
    return [
        Candle(
            start=datetime.fromtimestamp(int(bucket) * seconds, tz=UTC),
            open=prices[first_id],
            high=_money(low_high[1]),
            low=_money(low_high[0]),
            close=prices[last_id],
            volume=_money(volume),
            trades=count,
        )
        for bucket, *low_high, volume, count, first_id, last_id in rows
    ][-limit:]


def _money(value) -> Decimal:
    # SQLite aggregates come back as int or float; PostgreSQL's as Decimal.
    return money(Decimal(str(value)))
