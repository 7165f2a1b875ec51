"""Reads of public market data: the book, the tape, the ticker and candles.

Each read touches a bounded number of rows, whatever the length of the tape: the book
from its live levels, the tape from its newest end, the ticker and charts from the
candles the engine keeps (marketdata.services). tests/test_read_costs.py pins this.

Each takes `using`, the database to read: the primary unless the caller says otherwise.
The views that serve public data pass `quantumtrades.core.replicas.public_reads(request)`,
a hot standby when one is healthy and the reader did not just write; the engine and the
live streams never do (docs/ARCHITECTURE.md, "Read replicas").
"""

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal

from django.db import connections, transaction
from django.db.models import Q, Subquery
from django.utils import timezone

from quantumtrades.core.money import ZERO, money
from quantumtrades.core.replicas import PRIMARY

from .auction import Uncross, uncross_price
from .models import INTERVAL_SECONDS, BookLevel, Candle, Interval, Market, Side, Trade, is_symbol
from .services import bucket_start

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


def market_named(symbol: str, *, using: str = PRIMARY) -> Market | None:
    """The market called `symbol`, with its assets; None for any text no market can have."""
    if not is_symbol(symbol):
        return None
    return Market.objects.using(using).select_related("base", "quote").filter(symbol=symbol).first()


def markets_all(*, using: str = PRIMARY) -> list[Market]:
    return list(Market.objects.using(using).select_related("base", "quote").order_by("symbol"))


def book_snapshot(*, market: Market, depth: int = DEFAULT_DEPTH, using: str = PRIMARY) -> BookSnapshot:
    """The book's top `depth` levels per side and the sequence they belong to.

    Levels and sequence come from one database snapshot, so a stream that starts from
    this `seq` applies exactly the updates that follow it.
    """
    depth = max(1, min(depth, MAX_DEPTH))
    connection = connections[using]
    outermost = not connection.in_atomic_block
    with transaction.atomic(using=using):
        if outermost and connection.vendor == "postgresql":
            # One MVCC snapshot for both reads. (SQLite's transactions are serialised already;
            # inside a caller's transaction, that transaction decides.)
            with connection.cursor() as cursor:
                cursor.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ READ ONLY")
        seq = Market.objects.using(using).filter(pk=market.pk).values_list("book_seq", flat=True).get()
        levels = BookLevel.objects.using(using).filter(market=market, quantity__gt=0)
        bids = list(levels.filter(side=Side.BUY).order_by("-price").values_list("price", "quantity")[:depth])
        asks = list(levels.filter(side=Side.SELL).order_by("price").values_list("price", "quantity")[:depth])
    return BookSnapshot(symbol=market.symbol, seq=seq, bids=bids, asks=asks)


def auction_indicative(*, market: Market, using: str = PRIMARY) -> Uncross | None:
    """The price and volume the market's auction would uncross at now (docs/API.md, "Call
    auctions"), from its book levels: only those that can cross are read (bids at or above
    the lowest ask, asks at or below the highest bid). None when nothing crosses."""
    levels = BookLevel.objects.using(using).filter(market=market, quantity__gt=0)
    lowest_ask = levels.filter(side=Side.SELL).order_by("price").values("price")[:1]
    highest_bid = levels.filter(side=Side.BUY).order_by("-price").values("price")[:1]
    crossing = levels.filter(
        Q(side=Side.BUY, price__gte=Subquery(lowest_ask)) | Q(side=Side.SELL, price__lte=Subquery(highest_bid))
    ).values_list("side", "price", "quantity")
    bids, asks = [], []
    for side, price, quantity in crossing:
        (bids if side == Side.BUY else asks).append((price, quantity))
    reference = last_price(market, using=using)
    if reference is None:
        reference = market.last_price
    return uncross_price(bids, asks, reference)


def tape(market: Market, *, using: str = PRIMARY):
    """The market's trades, newest first, read along trade_market_recent (market, -id).

    Written as a one-value range, not `market = X`: with an equality PostgreSQL drops the
    market from the sort and may walk the primary key backwards instead, filtering out
    every other market's trades, which for a market that has not traded for a while is
    the whole tape (its estimate assumes every market holds an equal share). The range
    keeps the index's order the only one that serves the query.
    """
    return (
        Trade.objects.using(using)
        .filter(market_id__gte=market.pk, market_id__lte=market.pk)
        .order_by("market_id", "-id")
    )


def last_price(market: Market, *, using: str = PRIMARY) -> Decimal | None:
    """The price of the market's last trade: the close of its newest 1m candle."""
    return (
        Candle.objects.using(using)
        .filter(market=market, interval=Interval.M1)
        .order_by("-start")
        .values_list("close", flat=True)
        .first()
    )


def trades_recent(*, market: Market, limit: int = 50, before: int | None = None, using: str = PRIMARY) -> list[Trade]:
    """The newest `limit` trades, newest first; with `before`, those older than that trade id
    (keyset paging down the tape: a range of trade_market_recent, never an offset)."""
    trades = tape(market, using=using)
    if before is not None:
        trades = trades.filter(id__lt=before)
    return list(trades[: max(1, min(limit, 500))])


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


# The ticker's rolling window, in whole 1m candles: the current minute and the 1439 before
# it, so "24 hours" starts on a minute boundary (23h59m to 24h ago) and is read from
# candles, never from the tape.
TICKER_MINUTES = 24 * 60


def ticker_window_start(now: datetime) -> datetime:
    """The first moment the 24-hour ticker at `now` covers."""
    return bucket_start(now, Interval.M1) - timedelta(minutes=TICKER_MINUTES - 1)


def ticker(*, market: Market, now: datetime | None = None, using: str = PRIMARY) -> Ticker:
    """Last price and the rolling 24 hours (change, high, low, volume) from the candles.

    One query, whatever the length of the tape: three single-row index probes of the 1m
    candles (last price, the close before the window, the first open in it) and one sum
    over the window made of 1m candles up to the first whole hour, the 1h candles of the
    whole hours, and 1m candles from the current hour on: at most 59 + 24 + 60 rows, where
    the minutes alone would be 1440.
    """
    now = now or timezone.now()
    connection = connections[using]
    since = ticker_window_start(now)
    first_hour = bucket_start(since + timedelta(minutes=59), Interval.H1)
    this_hour = bucket_start(now, Interval.H1)
    quote = connection.ops.quote_name
    table = quote(Candle._meta.db_table)
    of = f"market_id = %s AND {quote('interval')} = %s"
    fields = "high, low, volume, quote_volume, trades"
    start, first_hour, this_hour = (
        Candle._meta.get_field("start").get_db_prep_save(moment, connection)
        for moment in (since, first_hour, this_hour)
    )
    m1, h1 = [market.pk, Interval.M1], [market.pk, Interval.H1]
    with connection.cursor() as cursor:
        cursor.execute(
            f"SELECT (SELECT close FROM {table} WHERE {of} ORDER BY start DESC LIMIT 1), "
            # The price 24 hours ago is the close before the window, if anything traded then.
            f"(SELECT close FROM {table} WHERE {of} AND start < %s ORDER BY start DESC LIMIT 1), "
            f"(SELECT open FROM {table} WHERE {of} AND start >= %s ORDER BY start LIMIT 1), "
            f"MAX(high), MIN(low), SUM(volume), SUM(quote_volume), SUM(trades) FROM ("
            f"SELECT {fields} FROM {table} WHERE {of} AND start >= %s AND start < %s UNION ALL "
            f"SELECT {fields} FROM {table} WHERE {of} AND start >= %s AND start < %s UNION ALL "
            f"SELECT {fields} FROM {table} WHERE {of} AND start >= %s) AS window_24h",
            [*m1, *m1, start, *m1, start] + [*m1, start, first_hour, *h1, first_hour, this_hour, *m1, this_hour],
        )
        last, before, first, high, low, volume, quote_volume, count = cursor.fetchone()
    count = int(count or 0)
    return Ticker(
        symbol=market.symbol,
        last_price=_money(last) if last is not None else None,
        open_24h=_money(before if before is not None else first) if (before, first) != (None, None) else None,
        high_24h=_money(high) if count else None,
        low_24h=_money(low) if count else None,
        volume_24h=_money(volume or ZERO),
        quote_volume_24h=_money(quote_volume or ZERO),
        trades_24h=count,
    )


INTERVALS = {interval: INTERVAL_SECONDS[interval] for interval in Interval.values}
MAX_CANDLES = 500


def candles(
    *, market: Market, interval: str = "1m", limit: int = 120, now: datetime | None = None, using: str = PRIMARY
) -> list[Candle]:
    """OHLCV candles of `interval`, oldest first: those of the last `limit` buckets (up to
    and including the current one) that had trades.

    Read from the candles the engine keeps: one range of the candle_unique index, at most
    `limit` rows. Buckets are aligned to the Unix epoch, so a 5m candle starts at :00,
    :05, ... and a 1d candle at midnight UTC.
    """
    seconds = INTERVALS[interval]
    limit = max(1, min(limit, MAX_CANDLES))
    now = now or timezone.now()
    since = datetime.fromtimestamp((int(now.timestamp()) // seconds - limit + 1) * seconds, tz=UTC)
    rows = (
        Candle.objects.using(using)
        .filter(market=market, interval=interval, start__gte=since)
        .order_by("-start")[:limit]
    )
    return list(reversed(rows))


def latest_candle(*, market: Market, interval: str) -> Candle | None:
    """The newest candle of `interval` (the current one, if its bucket has traded): one
    probe of the candle_unique index."""
    return Candle.objects.filter(market=market, interval=interval).order_by("-start").first()


def _money(value) -> Decimal:
    # SQLite aggregates come back as int or float; PostgreSQL's as Decimal.
    return money(Decimal(str(value)))


# Newest candles per interval that a live chart is sent: the current bar, and the one
# before it so a bar that closed between two refreshes still gets its last trades.
CANDLE_TAIL = 2


def candle_tails(*, market: Market, using: str = PRIMARY) -> dict[str, list[Candle]]:
    """The newest CANDLE_TAIL candles of every interval, oldest first.

    A page's chart loads its history once and then follows its current bar from these,
    whatever interval it shows; the stream reads them at most once a second per market.
    One index probe of candle_unique per interval.
    """
    return {
        interval: list(
            reversed(
                Candle.objects.using(using).filter(market=market, interval=interval).order_by("-start")[:CANDLE_TAIL]
            )
        )
        for interval in INTERVALS
    }


@dataclass(frozen=True)
class RuleEffect:
    name: str
    label: str
    help_text: str
    old: object
    new: object
    effect: str


def _band(reference: Decimal, fraction: Decimal) -> str:
    return f"{money(reference * (1 - fraction))} to {money(reference * (1 + fraction))}"


def market_rules_effects(*, market: Market, changes: dict) -> list[RuleEffect]:
    """What each of `changes` (rule -> new value) would do on `market` as it stands, in the
    words an operator decides on; read before the change is saved (the admin's preview)."""
    reference = market.last_price
    if reference is None:
        book = book_snapshot(market=market, depth=1)
        if book.best_bid is not None and book.best_ask is not None:
            reference = (book.best_bid + book.best_ask) / 2
    quote, base = market.quote_id, market.base_id
    effects = []
    for name, new in changes.items():
        old = getattr(market, name)
        if old == new:
            continue
        if name == "price_band":
            if new is None:
                effect = "No price band: any limit price is accepted, and market orders may sweep the whole book."
            elif reference is None:
                effect = f"Limit prices within {new:%} of the reference; the market has no reference price yet."
            else:
                effect = f"Limit prices from {_band(reference, new)} {quote} are accepted (reference {reference})"
                effect += f"; now {_band(reference, old)}." if old is not None else "; now any price."
        elif name == "circuit_breaker":
            if new is None:
                effect = "No circuit breaker: no trade starts an auction, however far it prints."
            elif reference is None:
                effect = f"A trade further than {new:%} from the window's reference starts a call auction."
            else:
                effect = (
                    f"A trade outside {_band(reference, new)} {quote} (from the last price {reference}) would "
                    f"start a call auction of {market.auction_seconds} s instead of printing."
                )
        elif name == "max_order_quantity":
            effect = (
                f"New orders above {new} {base} are refused (ORDER_TOO_LARGE); resting orders stay."
                if new is not None
                else "No limit on an order's quantity."
            )
        elif name == "max_order_notional":
            effect = (
                f"New orders worth more than {new} {quote} are refused (ORDER_TOO_LARGE); resting orders stay."
                if new is not None
                else "No limit on an order's value."
            )
        elif name == "min_notional":
            effect = f"New orders worth less than {new} {quote} are refused (INVALID); resting orders stay."
        elif name == "circuit_window_seconds":
            effect = f"The circuit breaker's reference becomes the first trade of the last {new} s."
        elif name == "auction_seconds":
            effect = (
                f"Call auctions (after a halt, or a circuit breaker) collect orders for {new} s before the uncross."
            )
        elif name in ("maker_fee", "taker_fee"):
            effect = "Fees change only while the market has no open orders or pending stops."
        else:
            effect = "Orders placed after the change are checked against it."
        field = Market._meta.get_field(name)
        effects.append(RuleEffect(name, str(field.verbose_name).capitalize(), str(field.help_text), old, new, effect))
    return effects
