"""Writes on markets: operator commands, the book levels and candles the engine keeps.

Trading itself lives in orders.services, which calls `book_levels_apply` and
`candles_record` inside its transaction. `candles_rebuild` recomputes candles from the
tape (`manage.py rebuild_candles`, `manage.py seed_history`).
"""

import functools
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from decimal import Decimal

from django.core.exceptions import ValidationError
from django.db import connection, transaction
from django.utils import timezone

from accounts.models import OperatorAction, User
from accounts.services import operator_action_record
from quantumtrades.core import sql
from quantumtrades.core.errors import InvalidInput
from quantumtrades.core.events import publish_on_commit
from quantumtrades.core.money import MONEY_DECIMAL_PLACES, MONEY_QUANTUM, money
from quantumtrades.core.sql import for_update, select_models

from .models import INTERVAL_SECONDS, BookLevel, Candle, Interval, Market, Trade

# The rules an operator may change (PATCH /api/markets/{symbol}, the admin), in the order
# they are checked and audited.
MARKET_RULE_FIELDS = (
    "tick_size", "lot_size", "min_notional", "maker_fee", "taker_fee", "price_band", "max_order_quantity",
    "max_order_notional", "circuit_breaker", "circuit_window_seconds", "auction_seconds",
)  # fmt: skip
# Open orders hold their fee reserve at the rates of the day they were accepted (and
# `reconcile` checks them against today's): fees change only on a market without any.
FEE_FIELDS = ("maker_fee", "taker_fee")


def market_set_status(*, market: Market, status: str, operator: User | None = None, reason: str = "") -> Market:
    """Halt a market, or resume it: a resumed market opens with a call auction of
    `auction_seconds` (docs/API.md, "Call auctions"), never straight into trading. Takes
    the book lock, so no command is half-way through; audited with the operator; the
    streams are told after commit. A market in an auction asked to trade stays in it."""
    if status not in (Market.Status.HALTED, Market.Status.TRADING):
        raise InvalidInput("status must be 'halted' or 'trading'.", field="status")
    with transaction.atomic():
        market = Market.objects.select_for_update().get(pk=market.pk)
        if status == Market.Status.HALTED and market.status != Market.Status.HALTED:
            market.status, market.auction_ends_at = Market.Status.HALTED, None
            kind = OperatorAction.Kind.MARKET_HALTED
        elif status == Market.Status.TRADING and market.status == Market.Status.HALTED:
            market.status = Market.Status.AUCTION
            market.auction_ends_at = timezone.now() + timedelta(seconds=market.auction_seconds)
            kind = OperatorAction.Kind.MARKET_RESUMED
        else:
            return market
        market.save(update_fields=["status", "auction_ends_at"])
        details = {"status": market.status}
        if market.auction_ends_at is not None:
            details["auction_ends_at"] = market.auction_ends_at.isoformat()
        operator_action_record(operator=operator, kind=kind, market=market.symbol, reason=reason, details=details)
        from .events import MarketStatusChanged  # events -> payloads -> selectors -> services

        publish_on_commit([MarketStatusChanged.of(market)])
    return market


def market_halt(*, market: Market, operator: User | None = None, reason: str = "") -> Market:
    return market_set_status(market=market, status=Market.Status.HALTED, operator=operator, reason=reason)


def market_resume(*, market: Market, operator: User | None = None, reason: str = "") -> Market:
    """Resume a halted market through a call auction."""
    return market_set_status(market=market, status=Market.Status.TRADING, operator=operator, reason=reason)


def market_rules_change(*, market: Market, changes: dict, operator: User | None, reason: str = "") -> Market:
    """Change some of a market's rules (MARKET_RULE_FIELDS; None clears a nullable one),
    checked as the model's constraints and `Market.clean` check them, under the book lock
    and audited with {field: [old, new]}. The engine reads the rules again under the lock,
    so the change counts at once in every process. Fees change only on a market with no
    open orders or pending stops (FEE_FIELDS)."""
    unknown = set(changes) - set(MARKET_RULE_FIELDS)
    if unknown:
        raise InvalidInput(f"{sorted(unknown)[0]} is not a market rule.", field=sorted(unknown)[0])
    with transaction.atomic():
        market = Market.objects.select_for_update().get(pk=market.pk)
        before = {name: getattr(market, name) for name in MARKET_RULE_FIELDS}
        for name, value in changes.items():
            setattr(market, name, value)
        changed = {name: [before[name], getattr(market, name)] for name in changes if before[name] != changes[name]}
        if not changed:
            return market
        _rules_check(market)
        if any(name in changed for name in FEE_FIELDS) and _has_active_orders(market):
            name = next(name for name in FEE_FIELDS if name in changed)
            raise InvalidInput(
                "Fees can change only while the market has no open orders or pending stops: "
                "their holds were reserved at today's rates. Halt it and cancel them first.",
                field=name,
            )
        market.save(update_fields=list(changed))
        operator_action_record(
            operator=operator,
            kind=OperatorAction.Kind.MARKET_RULES_CHANGED,
            market=market.symbol,
            reason=reason,
            details={name: [_text(old), _text(new)] for name, (old, new) in changed.items()},
        )
    return market


def _has_active_orders(market: Market) -> bool:
    # marketdata sits below orders: the orders table by name, the statuses as orders has them.
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT 1 FROM orders_order WHERE market_id = %s AND status IN ('pending', 'open', 'partially_filled') "
            "LIMIT 1",
            [market.pk],
        )
        return cursor.fetchone() is not None


def _rules_check(market: Market) -> None:
    """The model's constraints and `Market.clean`, as the API's refusals (400, naming the field)."""
    for name in ("tick_size", "lot_size"):
        if getattr(market, name) is None or getattr(market, name) <= 0:
            raise InvalidInput(f"{name} must be positive.", field=name)
    if market.min_notional is None or market.min_notional < 0:
        raise InvalidInput("min_notional must be zero or positive.", field="min_notional")
    for name in FEE_FIELDS:
        rate = getattr(market, name)
        if rate is None or not 0 <= rate < 1:
            raise InvalidInput(f"{name} must be at least 0 and below 1.", field=name)
    for name in ("price_band", "circuit_breaker"):
        rate = getattr(market, name)
        if rate is not None and not 0 < rate < 1:
            raise InvalidInput(f"{name} must be above 0 and below 1, or null for none.", field=name)
    for name in ("max_order_quantity", "max_order_notional"):
        limit = getattr(market, name)
        if limit is not None and limit <= 0:
            raise InvalidInput(f"{name} must be positive, or null for no limit.", field=name)
    if market.circuit_window_seconds is None or market.circuit_window_seconds < 1:
        raise InvalidInput("circuit_window_seconds must be at least 1.", field="circuit_window_seconds")
    if market.auction_seconds is None or not 1 <= market.auction_seconds <= 3600:
        raise InvalidInput("auction_seconds must be from 1 to 3600.", field="auction_seconds")
    try:
        market.clean()
    except ValidationError as exc:
        raise InvalidInput(exc.messages[0], field="lot_size") from None


def _text(value):
    return f"{value.normalize():f}" if isinstance(value, Decimal) else value


def market_lock(*, market_id: int, later: bool = False):
    """Lock the market's row (`SELECT ... FOR UPDATE`): the book lock, taken first by
    every command on the market. Held until the transaction ends. With `later=True`,
    the statement is sent and a function returned that reads the row (`sql.pipeline`)."""
    rows = select_models(Market, "id = %s", [market_id], tail=for_update(), later=True)

    def read() -> Market:
        found = rows()
        if not found:
            raise Market.DoesNotExist(f"no market {market_id}")
        return found[0]

    return read if later else read()


def book_levels_apply(
    *,
    market: Market,
    seq: int,
    deltas: dict[tuple[str, Decimal], Decimal],
    last_price: Decimal | None = None,
    later: bool = False,
):
    """Record the book sequence of the command that is finishing and add quantity deltas to
    the market's book levels; return (side, price, new quantity).

    One upsert for all levels. A level that empties keeps its row at quantity 0 (snapshots
    skip it), so a level that comes back is an update and nothing needs a second statement.
    On PostgreSQL the sequence's UPDATE rides in the upsert as a data-modifying CTE: one
    statement fewer for every command. The caller holds the book lock (the market row),
    which is why read-add-write is safe. With `later=True`, a function that reads the new
    quantities is returned (`sql.pipeline`).

    `last_price`, the command's last trade price when it traded, is set by the same UPDATE:
    the price band's reference (orders.engine.rules.band_of), kept at no extra statement.
    """
    market.book_seq = seq
    seq_sql, seq_params = f"UPDATE {Market._meta.db_table} SET book_seq = %s WHERE id = %s", [seq, market.pk]
    if last_price is not None:
        market.last_price = last_price
        seq_sql = f"UPDATE {Market._meta.db_table} SET book_seq = %s, last_price = %s WHERE id = %s"
        seq_params = [seq, last_price, market.pk]
    changes = [(side, price, delta) for (side, price), delta in sorted(deltas.items()) if delta]
    if not changes or connection.vendor != "postgresql":
        with sql.cursor() as statement:
            statement.execute(seq_sql, seq_params)
        if not changes:
            return list if later else []
        seq_sql = None
    table = BookLevel._meta.db_table
    rows = ", ".join(["(%s, %s, %s, %s)"] * len(changes))
    params = [value for side, price, delta in changes for value in (market.pk, side, price, delta)]
    upsert = (
        f"INSERT INTO {table} (market_id, side, price, quantity) VALUES {rows} "
        # ROUND keeps SQLite, which adds in floating point, from leaving 1e-17 where a level
        # emptied (a no-op on PostgreSQL's exact numeric).
        f"ON CONFLICT (market_id, side, price) DO UPDATE SET quantity = "
        f"ROUND({table}.quantity + excluded.quantity, {MONEY_DECIMAL_PLACES}) "
        "RETURNING side, price, quantity"
    )
    if seq_sql is None:
        statement = sql.send(upsert, params)
    else:
        statement = sql.send(f"WITH seq AS ({seq_sql}) {upsert}", seq_params + params)

    def read() -> list[tuple[str, Decimal, Decimal]]:
        return [(side, _money(price), _money(quantity)) for side, price, quantity in sql.answer(statement)]

    return read if later else read()


# --- Candles ----------------------------------------------------------------------------

CANDLE_FIELDS = [
    "market", "interval", "start", "open", "high", "low", "close", "volume", "quote_volume", "trades",
    "first_trade_id", "last_trade_id",
]  # fmt: skip


EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def bucket_start(moment: datetime, interval: str) -> datetime:
    """The start of the `interval` bucket that holds `moment` (aligned to the Unix epoch)."""
    # Whole timedeltas, not float timestamps: 59.9999996 s must stay in its minute.
    length = timedelta(seconds=INTERVAL_SECONDS[interval])
    return EPOCH + (moment - EPOCH) // length * length


@functools.cache
def _upsert_sql(rows: int, vendor: str) -> str:
    """One multi-row upsert into the candle table, in `vendor`'s SQL (built once per shape).
    Every assignment reads the row as it was before (both databases), and each keeps the
    bucket's aggregate whatever order the rows arrive in: the lower first trade id brings
    its open, the higher last id its close."""
    quote = connection.ops.quote_name
    table = quote(Candle._meta.db_table)
    columns = ", ".join(quote(Candle._meta.get_field(name).column) for name in CANDLE_FIELDS)
    placeholder = "(" + ", ".join(["%s"] * len(CANDLE_FIELDS)) + ")"
    old, new = table, "excluded"

    def pick(column, test):
        return f"{column} = CASE WHEN {test} THEN {new}.{column} ELSE {old}.{column} END"

    # ROUND keeps SQLite, which adds in floating point, at the money precision (a no-op
    # on PostgreSQL's exact numeric).
    return (
        f"INSERT INTO {table} ({columns}) VALUES {', '.join([placeholder] * rows)} "
        f"ON CONFLICT (market_id, {quote('interval')}, start) DO UPDATE SET "
        + ", ".join(
            [
                pick("open", f"{new}.first_trade_id < {old}.first_trade_id"),
                pick("close", f"{new}.last_trade_id > {old}.last_trade_id"),
                pick("high", f"{new}.high > {old}.high"),
                pick("low", f"{new}.low < {old}.low"),
                f"volume = ROUND({old}.volume + {new}.volume, {MONEY_DECIMAL_PLACES})",
                f"quote_volume = ROUND({old}.quote_volume + {new}.quote_volume, {MONEY_DECIMAL_PLACES})",
                f"trades = {old}.trades + {new}.trades",
                pick("first_trade_id", f"{new}.first_trade_id < {old}.first_trade_id"),
                pick("last_trade_id", f"{new}.last_trade_id > {old}.last_trade_id"),
            ]
        )
    )


def candles_record(*, market: Market, trades: Sequence[Trade]) -> None:
    """Add `trades` (with their ids, in id order) to the market's candles of every interval.

    One statement whatever the number of trades or intervals, and it reads nothing back,
    so the engine sends it in the same pipeline as the trades themselves. The caller holds
    the book lock; the candles then change in the same transaction as the tape.
    """
    if not trades:
        return
    buckets: dict[tuple[str, datetime], list] = {}
    for trade in trades:
        notional = money(trade.price * trade.quantity)
        for interval in Interval.values:
            key = (interval, bucket_start(trade.created_at, interval))
            row = buckets.get(key)
            if row is None:
                buckets[key] = [trade.price, trade.price, trade.price, trade.price, trade.quantity, notional, 1,
                                trade.pk, trade.pk]  # fmt: skip
                continue
            row[1], row[2], row[3] = max(row[1], trade.price), min(row[2], trade.price), trade.price
            row[4] += trade.quantity
            row[5] += notional
            row[6] += 1
            row[8] = trade.pk
    params = sql.values_prepared(
        Candle, CANDLE_FIELDS, ([market.pk, interval, start, *values] for (interval, start), values in buckets.items())
    )
    # The engine's prepared cursor: through Django's, PostgreSQL parsed and planned the
    # upsert anew for every trade (docs/BENCHMARKS.md, "Indexes that only cost").
    with sql.cursor() as cursor:
        cursor.execute(_upsert_sql(len(buckets), connection.vendor), params)


def _bucket_sql(column: str, seconds: int) -> str:
    """SQL for the start of the `seconds`-long bucket holding the datetime `column`, in the
    form the database stores a DateTimeField (so it compares equal to what Django writes)."""
    if connection.vendor == "postgresql":
        return f"to_timestamp(floor(extract(epoch from {column}) / {seconds}) * {seconds})"
    # Django writes 'YYYY-MM-DD HH:MM:SS.ffffff'; SQLite's date functions would round the
    # fraction to milliseconds (59.9996 s becomes the next minute), so it is cut off first.
    seconds_since_epoch = f"CAST(strftime('%%s', substr({column}, 1, 19)) AS INTEGER)"
    return f"strftime('%%Y-%%m-%%d %%H:%%M:%%S', {seconds_since_epoch} / {seconds} * {seconds}, 'unixepoch')"


@transaction.atomic
def candles_rebuild(*, market: Market, since: datetime | None = None) -> int:
    """Recompute the market's candles from the tape; return how many 1m candles it wrote.

    With `since`, only buckets from the start of that day (UTC) on, so every interval's
    buckets in the range are complete. The 1m candles come from the trades, every longer
    interval from the 1m candles: three grouped statements over indexes, never a row
    through Python. Takes the book lock, so no command adds a trade half-way through.
    """
    # The book lock (only the id is read: a migration calls this with a historical model).
    list(Market.objects.select_for_update().filter(pk=market.pk).values_list("pk", flat=True))
    quote = connection.ops.quote_name
    candle, trade = quote(Candle._meta.db_table), quote(Trade._meta.db_table)
    interval = quote("interval")
    start = bucket_start(since, Interval.D1) if since is not None else None
    start_param = Candle._meta.get_field("start").get_db_prep_save(start, connection) if start else None
    columns = ", ".join(quote(Candle._meta.get_field(name).column) for name in CANDLE_FIELDS)
    with connection.cursor() as cursor:
        cursor.execute(
            f"DELETE FROM {candle} WHERE market_id = %s" + (" AND start >= %s" if start else ""),
            [market.pk, start_param] if start else [market.pk],
        )
        # 1m: one group per minute; open and close are the prices of its first and last trade.
        cursor.execute(
            f"INSERT INTO {candle} ({columns}) "
            f"SELECT %s, %s, b.start, f.price, b.high, b.low, l.price, "
            f"ROUND(b.volume, {MONEY_DECIMAL_PLACES}), ROUND(b.quote_volume, {MONEY_DECIMAL_PLACES}), b.trades, "
            f"b.first_id, b.last_id FROM ("
            f"SELECT {_bucket_sql('created_at', 60)} AS start, MAX(price) AS high, MIN(price) AS low, "
            f"SUM(quantity) AS volume, SUM(price * quantity) AS quote_volume, COUNT(*) AS trades, "
            f"MIN(id) AS first_id, MAX(id) AS last_id FROM {trade} "
            f"WHERE market_id = %s{' AND created_at >= %s' if start else ''} GROUP BY 1"
            f") AS b JOIN {trade} f ON f.id = b.first_id JOIN {trade} l ON l.id = b.last_id",
            [market.pk, Interval.M1, market.pk, *([start_param] if start else [])],
        )
        written = cursor.rowcount
        if connection.vendor == "postgresql":
            # Fresh statistics, or the planner, having seen an empty table, joins the rollups
            # below by nested loops over thousands of rows.
            cursor.execute(f"ANALYZE {candle}")
        # Every longer interval, rolled up from the 1m candles just written.
        for name in Interval.values[1:]:
            cursor.execute(
                f"INSERT INTO {candle} ({columns}) "
                f"SELECT %s, %s, b.start, f.open, b.high, b.low, l.close, "
                f"ROUND(b.volume, {MONEY_DECIMAL_PLACES}), ROUND(b.quote_volume, {MONEY_DECIMAL_PLACES}), b.trades, "
                f"b.first_id, b.last_id FROM ("
                f"SELECT {_bucket_sql('start', INTERVAL_SECONDS[name])} AS start, MAX(high) AS high, "
                f"MIN(low) AS low, SUM(volume) AS volume, SUM(quote_volume) AS quote_volume, SUM(trades) AS trades, "
                f"MIN(first_trade_id) AS first_id, MAX(last_trade_id) AS last_id FROM {candle} "
                f"WHERE market_id = %s AND {interval} = %s{' AND start >= %s' if start else ''} GROUP BY 1"
                f") AS b "
                f"JOIN {candle} f ON f.market_id = %s AND f.{interval} = %s AND f.first_trade_id = b.first_id "
                f"JOIN {candle} l ON l.market_id = %s AND l.{interval} = %s AND l.last_trade_id = b.last_id",
                [market.pk, name, market.pk, Interval.M1, *([start_param] if start else [])]
                + [market.pk, Interval.M1] * 2,
            )
    return written


def _money(value) -> Decimal:
    # SQLite hands numbers back as int or float; PostgreSQL as Decimal.
    return Decimal(str(value)).quantize(MONEY_QUANTUM)
