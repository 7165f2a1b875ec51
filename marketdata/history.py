"""Synthesised trade history: a tape that looks like a market traded for days.

`history_seed` writes N public trades spread over the last D days: a random walk of the
price, on the tick grid, that ends at the market's price (so the history runs into the
live book), quantities in whole lots worth a few times the minimum notional, and the
candles of every interval derived from them by `candles_rebuild`, so the charts and the
ticker agree with the tape from the first page view.

The trades reference no orders (`maker_order_id` and `taker_order_id` are NULL), have no
fills and move no money: the ledger, the balances and `manage.py reconcile` never see them.

Bulk SQL, never the ORM row by row: on PostgreSQL one INSERT ... SELECT over
generate_series builds every row in the server; on SQLite the rows are built here and
sent with executemany in chunks.
"""

import math
import random
from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import Decimal

from django.db import connection, transaction
from django.utils import timezone

from quantumtrades.core.money import money

from .models import BookLevel, Market, Side, Trade
from .selectors import tape
from .services import candles_rebuild

# Volatility of the walk: about this much per day, whatever the number of trades a day.
DAILY_VOLATILITY = 0.03
# A trade is worth 1 to a dozen times this (or the minimum notional, if larger), in quote.
TYPICAL_NOTIONAL = Decimal(20)
SQLITE_CHUNK = 10_000
MAX_TRADES = 100_000_000
MAX_DAYS = 3650


class HistoryRefused(Exception):
    """The market cannot take synthesised history (it has a tape already, or no price)."""


@dataclass(frozen=True)
class Plan:
    market: Market
    trades: int
    start: datetime
    end: datetime
    anchor_ticks: int  # the last trade's price, in ticks
    base_lots: int  # a trade's quantity is a whole multiple of this many lots
    step: float  # the walk's per-trade log-price step is uniform in [-step/2, step/2)
    seed: int

    @property
    def slot(self) -> float:
        """Seconds of history per trade."""
        return (self.end - self.start).total_seconds() / self.trades


def last_trade_price(market: Market) -> Decimal | None:
    return tape(market).values_list("price", flat=True).first()


def market_price(market: Market) -> Decimal | None:
    """What the market trades at now: the last trade, else the middle of the book."""
    last = last_trade_price(market)
    if last is not None:
        return last
    live = BookLevel.objects.filter(market=market, quantity__gt=0)
    bid = live.filter(side=Side.BUY).order_by("-price").values_list("price", flat=True).first()
    ask = live.filter(side=Side.SELL).order_by("price").values_list("price", flat=True).first()
    if bid is not None and ask is not None:
        return (bid + ask) / 2
    return bid if bid is not None else ask


def history_plan(
    *, market: Market, trades: int, days: float, price: Decimal | None = None, seed: int | None = None, now=None
) -> Plan:
    if not 1 <= trades <= MAX_TRADES:
        raise ValueError(f"trades must be between 1 and {MAX_TRADES:,}.")
    if not 0 < days <= MAX_DAYS:
        raise ValueError(f"days must be more than 0 and at most {MAX_DAYS}.")
    if last_trade_price(market) is not None:
        raise HistoryRefused(
            f"{market.symbol} already has trades: history is synthesised onto an empty tape only, "
            "so the tape's order (by id) stays its order in time."
        )
    if price is None:
        price = market_price(market)
        if price is None:
            raise HistoryRefused(f"{market.symbol} has no trades and no book: give the price to walk around.")
    elif price <= 0 or price % market.tick_size:
        raise ValueError(f"price must be a positive multiple of the tick size {market.tick_size.normalize():f}.")
    end = now or timezone.now()
    per_day = trades / days
    typical = max(market.min_notional, TYPICAL_NOTIONAL)
    return Plan(
        market=market,
        trades=trades,
        start=end - timedelta(days=days),
        end=end,
        anchor_ticks=max(1, int(price / market.tick_size)),
        base_lots=max(1, math.ceil(typical / price / market.lot_size)),
        # A uniform step of width w has standard deviation w / sqrt(12).
        step=DAILY_VOLATILITY / math.sqrt(max(per_day, 1)) * math.sqrt(12),
        seed=random.randrange(2**31) if seed is None else seed,
    )


@transaction.atomic
def history_seed(
    *, market: Market, trades: int, days: float, price: Decimal | None = None, seed: int | None = None, now=None
) -> Plan:
    """Write `trades` synthesised trades over the last `days` days, and their candles.

    Holds the book lock throughout, so no command trades on the market half-way through.
    """
    market = Market.objects.select_for_update().get(pk=market.pk)
    plan = history_plan(market=market, trades=trades, days=days, price=price, seed=seed, now=now)
    if connection.vendor == "postgresql":
        _insert_postgresql(plan)
        with connection.cursor() as cursor:
            # The planner's picture of the tape is now off by millions of rows.
            cursor.execute(f"ANALYZE {Trade._meta.db_table}")
    else:
        _insert_rows(plan)
    candles_rebuild(market=market)
    # The price band's reference, as the engine keeps it (book_levels_apply).
    Market.objects.filter(pk=market.pk).update(last_price=last_trade_price(market))
    return plan


def _insert_postgresql(plan: Plan) -> None:
    """Every row built by the server from generate_series.

    The random numbers are hashes of (row number, seed), so the walk's total can be summed
    first and each price is anchor x exp(steps so far - all steps): the last trade prints
    exactly at the anchor. Rows go in in time order, so their ids rise with time.
    """
    market = plan.market

    def uniform(salt: int) -> str:
        # hashint8extended is uniform over bigint; 40 of its bits make a float in [0, 1).
        return f"(((hashint8extended(i, {plan.seed + salt}) >> 8) & 1099511627775)::float8 / 1099511627776.0)"

    step = f"(({uniform(0)} - 0.5) * {plan.step!r})"
    table = Trade._meta.db_table
    with connection.cursor() as cursor:
        cursor.execute("SET LOCAL work_mem = '256MB'")
        cursor.execute(f"SELECT COALESCE(SUM({step}), 0) FROM generate_series(0, %s) AS i", [plan.trades - 1])
        total = float(cursor.fetchone()[0])
        cursor.execute(
            f"INSERT INTO {table} (market_id, price, quantity, taker_side, maker_order_id, taker_order_id, seq, "
            "created_at) "
            "SELECT %s, GREATEST(1, round(%s * exp(walk - %s)))::numeric * %s, "
            "(%s * (1 + floor(-ln(1 - u_size) * 2)))::numeric * %s, "
            "CASE WHEN u_side < 0.5 THEN 'buy' ELSE 'sell' END, NULL, NULL, 0, "
            "%s::timestamptz + make_interval(secs => (i + u_time) * %s) "
            "FROM (SELECT i, SUM(step) OVER (ORDER BY i) AS walk, u_size, u_side, u_time FROM ("
            f"SELECT i, {step} AS step, {uniform(1)} AS u_size, {uniform(2)} AS u_side, {uniform(3)} AS u_time "
            "FROM generate_series(0, %s) AS i) AS g) AS w ORDER BY i",
            [
                market.pk,
                plan.anchor_ticks,
                total,
                market.tick_size,
                plan.base_lots,
                market.lot_size,
                plan.start,
                plan.slot,
                plan.trades - 1,
            ],
        )


def _insert_rows(plan: Plan) -> None:
    """Rows built here, walking back in time from the anchor, and sent in chunks.

    The ids are drawn up front (the transaction holds SQLite's single write lock) and
    follow time, so the rows may go in newest first.
    """
    market = plan.market
    rng = random.Random(plan.seed)
    quote = connection.ops.quote_name
    table = quote(Trade._meta.db_table)
    with connection.cursor() as cursor:
        cursor.execute(f"SELECT COALESCE(MAX(id), 0) FROM {table}")
        first_id = cursor.fetchone()[0] + 1
    created = Trade._meta.get_field("created_at")
    tick, lot = market.tick_size, market.lot_size
    sql = (
        f"INSERT INTO {table} (id, market_id, price, quantity, taker_side, maker_order_id, taker_order_id, seq, "
        "created_at) VALUES (%s, %s, %s, %s, %s, NULL, NULL, 0, %s)"
    )
    walk = 0.0
    rows = []
    for i in range(plan.trades - 1, -1, -1):
        ticks = max(1, round(plan.anchor_ticks * math.exp(walk)))
        walk -= (rng.random() - 0.5) * plan.step
        lots = plan.base_lots * (1 + math.floor(-math.log(1 - rng.random()) * 2))
        moment = plan.start + timedelta(seconds=(i + rng.random()) * plan.slot)
        rows.append(
            (
                first_id + i,
                market.pk,
                str(money(tick * ticks)),
                str(money(lot * lots)),
                Side.BUY if rng.random() < 0.5 else Side.SELL,
                created.get_db_prep_save(moment, connection),
            )
        )
        if len(rows) == SQLITE_CHUNK:
            _send(sql, rows)
    _send(sql, rows)


def _send(sql: str, rows: list) -> None:
    if rows:
        with connection.cursor() as cursor:
            cursor.executemany(sql, rows)
        rows.clear()
