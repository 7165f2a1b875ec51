"""The working state of one command while it holds the book lock: the locks, the reads of
the book, the postings, and the one pipeline that writes it all.

Every row the engine locks (`SELECT ... FOR UPDATE`) is locked here, in the lock order:
the market row first (`Command.begin`), then balance rows, in one statement in ascending
(user, asset) order (`begin` for a new order and the makers of its first look at the
book, `lock_balances` for the rest), and the fee account's balance last, only when a
fee is charged (`_ids_and_fees`).

A command works in stages: its own order's matching, then each stop its trades trigger
(`stops`). A stage is planned in memory (`matching`) and written by `flush` in one round
trip; `finish` writes the last stage, runs the stops and registers the events.
"""

from collections import defaultdict
from datetime import datetime
from decimal import Decimal

from django.conf import settings
from django.db import connection
from django.db.models import Max, Min, Q
from django.utils import timezone

from accounts.models import LedgerEntry, User
from accounts.services import Posting, balances_lock, balances_lock_for, ledger_post
from marketdata.events import BookChanged, MarketStatusChanged, TradeExecuted
from marketdata.models import BookLevel, Market, Side, Trade
from marketdata.services import book_levels_apply, candles_record, market_lock
from quantumtrades.core import sql
from quantumtrades.core.errors import Conflict, ErrorCode, TradingDisabled
from quantumtrades.core.events import publish_built_on_commit
from quantumtrades.core.money import ZERO, money
from quantumtrades.core.sql import allocate_ids, insert_rows, pipeline, select_models, send, update_rows

from ..events import FillCreated, OrderChanged
from ..models import ACTIVE_STATUSES, OPEN_STATUSES, Fill, Order
from . import auction, lists, stops
from .caches import fee_account_id
from .matching import execute
from .rules import Band, band_of, order_reference
from .transactions import current_group

Kind = LedgerEntry.Kind

# Columns the engine writes (quantumtrades.core.sql): a new order, then what a command changes.
ORDER_INSERT_FIELDS = [
    "user", "market", "client_order_id", "side", "type", "time_in_force", "post_only", "stp", "source", "socket_id",
    "price", "stop_price", "quantity", "filled_quantity", "remaining_quantity", "filled_notional", "held", "status", "priority",
    "triggered_at", "created_at", "updated_at", "display_quantity", "visible_quantity", "expire_at", "trailing_delta",
    "trailing_percent", "trailing_reference", "limit_offset", "order_list", "leg", "trailing_hold_price",
]  # fmt: skip
ORDER_STATE_FIELDS = [
    "price", "stop_price", "quantity", "filled_quantity", "remaining_quantity", "filled_notional", "held", "status",
    "priority", "triggered_at", "updated_at", "visible_quantity", "trailing_reference",
]  # fmt: skip
TRADE_FIELDS = ["market", "price", "quantity", "taker_side", "maker_order_id", "taker_order_id", "seq", "created_at"]
FILL_FIELDS = ["order", "trade", "user", "market", "side", "role", "price", "quantity", "fee", "created_at"]

# Resting orders read per round while walking the book: most commands meet one or two,
# a sweep through a deep book reads rounds four times larger each time.
FIRST_MAKER_BATCH = 4
MAX_MAKER_BATCH = 256

# Priorities a command hands out (see Order.priority): its own order, then the stops it
# triggers, in the order they enter the book.
PRIORITY_SLOTS = 1000
assert stops.MAX_TRIGGERS_PER_COMMAND < PRIORITY_SLOTS

# The book's statuses as SQL literals (see `_resting_query`).
_IN_BOOK_SQL = "status IN (" + ", ".join(f"'{status}'" for status in OPEN_STATUSES) + ")"
_ACTIVE_SQL = "status IN (" + ", ".join(f"'{status}'" for status in ACTIVE_STATUSES) + ")"
_UNSET = object()


class Command:
    """The working state of one command while it holds the book lock."""

    def __init__(self, market: Market):
        self.market = market
        self.seq = market.book_seq + 1
        self.now = timezone.now()
        self.balances = {}  # every balance the command has locked, by (user, asset)
        self._fee_user_id = None
        # What the command did, for its events after commit (see `flush`).
        self.written_trades: list[Trade] = []
        self.written_fills: list[Fill] = []
        self.written_orders: dict[int, Order] = {}
        self.written_levels: dict[tuple[str, Decimal], Decimal] = {}
        self.balance_events: dict = {}
        # Stops: those the command's trades crossed, waiting their turn; how many it
        # triggered; the range of its trade prices; whether it left some for the next command.
        self.crossed_stops: dict[int, Order] = {}
        self.triggered = 0
        self.traded_low = self.traded_high = None
        self.stops_due = False
        self.slots = 0
        self._looked = None  # the first batch of `resting`, read with the lock (`begin`)
        self.new_order_id = None
        # The circuit breaker's reference price (`auction`), read once, when first needed
        # (with the lock, `begin`, for a new order); and whether the command changed the
        # market's status (a circuit breaker tripped, an auction ended).
        self.breaker_reference = auction.UNREAD
        self.market_changed = False
        # The trader's standing, read with the lock (`begin`, `trader`): the kill switch,
        # and how many active orders they have against how many they may.
        self.trading_enabled = True
        self.open_orders = self.max_open_orders = None
        # The price band of the command: around the last trade as the command found it.
        self._band = _UNSET
        self._start_last_price = market.last_price
        self._stage()

    def _stage(self):
        """Start a stage: one order's matching (the command's own, or a triggered stop's)."""
        self.postings: list[Posting] = []
        self.level_deltas: dict[tuple[str, Decimal], Decimal] = defaultdict(Decimal)
        self.trades: list[Trade] = []
        self.fills: list[Fill] = []
        self.changed_orders: dict[int, Order] = {}
        self.fee_total = ZERO
        self.met_own_order = False

    @property
    def priority(self) -> int:
        """The time priority of the order the command itself puts in the book."""
        return self.seq * PRIORITY_SLOTS

    def next_priority(self) -> int:
        """The time priority of the next order to enter the book in this command: a
        triggered stop, an iceberg's next slice. Past the last slot (a command that refills
        icebergs a thousand times) they share it, in the command's range still."""
        self.slots = min(self.slots + 1, PRIORITY_SLOTS - 1)
        return self.seq * PRIORITY_SLOTS + self.slots

    # Locking ---------------------------------------------------------------------------

    @classmethod
    def begin(
        cls,
        market_id: int,
        *,
        look: tuple[str, Decimal | None] | None = None,
        taker: tuple[int, str, str] | None = None,
        new_order: bool = False,
        breaker_since: datetime | None = None,
        trader: tuple[int, bool] | None = None,
    ) -> "Command":
        """Take the book lock and start the command's working state.

        On PostgreSQL, what most commands need next goes out in the same round trip as
        the lock (`pipeline`), queued behind it, so it is read as the lock holder sees it:
        with `new_order`, a new order's id (`new_order_id`); with `look` (side, limit),
        the first batch of the taker's look at the book (`resting`); with `taker` (user,
        base asset, quote asset) too, the balances of the taker and of that batch's
        makers, locked in one ascending statement (`lock_balances`); with `breaker_since`
        (the start of the circuit breaker's window), its reference price (`auction`); with
        `trader` (user id, whether the order may rest), the trader's standing: the kill
        switch and their open orders against their limit (`trader_check`). The fee account's
        balance is locked only by a command that charges a fee, and only when it writes
        (`flush`). In a group (`transactions`), the command's savepoint goes first.
        """
        locked = current_group.markets
        # Locked by an earlier command of this group's transaction, whose writes (its book
        # sequence included) the market there already carries.
        held = locked[market_id] if locked is not None and market_id in locked else None
        first = balances = ids = reference = standing = None
        with connection.wrap_database_errors, pipeline():
            current_group.open_savepoint()  # in a group: before anything the command does
            market = (lambda: held) if held is not None else market_lock(market_id=market_id, later=True)
            if new_order:
                # The trader's standing rides in the statement that draws the order's id.
                ids = allocate_ids({Order: 1}, later=True, beside=_trader_standing(*trader) if trader else None)
            elif trader is not None:
                standing = send(*_trader_standing(*trader))
            if look is not None:
                where, params, tail = _resting_query(market_id, *look)
                first = select_models(Order, where, params, tail=f"{tail} LIMIT {FIRST_MAKER_BATCH}", later=True)
                if taker is not None:
                    user_id, *assets = taker
                    makers = (
                        f"SELECT user_id FROM {Order._meta.db_table} WHERE {where} {tail} LIMIT {FIRST_MAKER_BATCH}"
                    )
                    balances = balances_lock_for([user_id], assets, also=(makers, params))
            if breaker_since is not None:
                reference = auction.breaker_reference_read(market_id, breaker_since, later=True)
        command = cls(market())
        if locked is not None:
            locked[market_id] = command.market
        if first is not None:
            command._looked = (look, first())
        if balances is not None:
            command.balances.update(balances())
        if ids is not None:
            allocated = ids()
            if trader is not None:
                allocated, row = allocated
                command._standing(row)
            [command.new_order_id] = allocated[Order]
        if reference is not None:
            command.breaker_reference = auction.breaker_reference_of(command, breaker_since, reference)
        if standing is not None:
            command._standing(next(iter(sql.answer(standing)), None))
        return command

    def _standing(self, row) -> None:
        """The trader's standing as `_trader_standing` read it (None: no such user)."""
        if row is None:
            self.trading_enabled = False
            return
        self.trading_enabled = bool(row[0])
        if len(row) > 1:
            self.open_orders, self.max_open_orders = row[1], row[2]

    def trader_check(self, *, adds: bool = False) -> None:
        """Refuse a disabled trader's order or amend; with `adds`, an order that could rest
        (or a stop) from a trader with as many active orders as they may have, on all
        markets (docs/API.md, "Market integrity"). Needs `begin(trader=...)`."""
        if not self.trading_enabled:
            raise TradingDisabled("Trading is disabled for this account: new orders and amends are refused.")
        if adds and self.open_orders is not None and self.open_orders >= self.max_open_orders:
            raise Conflict(
                f"You already have {self.max_open_orders} open orders, the most you may have at once: "
                "cancel some first.",
                code=ErrorCode.TOO_MANY_OPEN_ORDERS,
            )

    @property
    def band(self) -> Band | None:
        """The market's price band in this command: around the last trade as the command
        found it, else the middle of the book (read now, once: only a market that never
        traded pays that query), else none."""
        if self._band is _UNSET:
            reference = None
            if self.market.price_band is not None:
                reference = self._start_last_price
                if reference is None:
                    reference = _book_middle(self.market.pk)
            self._band = band_of(self.market, reference)
        return self._band

    def resting(self, side: str, limit: Decimal | None, quantity: Decimal, *, own: int | None = None) -> list[Order]:
        """Resting orders on `side` that a taker may meet, best first, enough to cover
        `quantity` (plus the taker's own orders met on the way, which stop it; those of
        user `own` do not count, as self-trade prevention cancels them and goes on)."""
        found, covered, offset, size = [], ZERO, 0, FIRST_MAKER_BATCH
        looked, self._looked = self._looked, None
        while covered < quantity:
            if offset == 0 and looked is not None and looked[0] == (side, limit):
                batch = looked[1]  # read with the book lock (`begin`)
            elif offset == 0 and looked is not None and looked[0] == (side, None) and limit is not None:
                # Read with the lock without a limit (a market order, before its band was
                # known): the part within `limit`; past it, nothing further can be.
                batch = [
                    order
                    for order in looked[1]
                    if (order.price <= limit if side == Side.SELL else order.price >= limit)
                ]
                if len(batch) < len(looked[1]):
                    for order in batch:
                        order.market = self.market
                    found.extend(batch)
                    break
                batch = looked[1]
            else:
                where, params, tail = _resting_query(self.market.pk, side, limit)
                batch = select_models(Order, where, params, tail=f"{tail} LIMIT {size} OFFSET {offset}")
            for order in batch:
                order.market = self.market  # saves a query per order when events render it
            found.extend(batch)
            # A GTD order past its time expires when met (`matching`): it covers nothing;
            # an iceberg covers its shown slice (the next shows behind its price's orders).
            now = self.now
            covered += sum(
                (
                    order.remaining_quantity if order.visible_quantity is None else order.visible_quantity
                    for order in batch
                    if order.user_id != own and (order.expire_at is None or order.expire_at > now)
                ),
                ZERO,
            )
            if len(batch) < size:
                break
            offset += size
            size = min(size * 4, MAX_MAKER_BATCH)
        return found

    def fee_user_id(self) -> int:
        if self._fee_user_id is None:
            self._fee_user_id = fee_account_id()
        return self._fee_user_id

    def lock_balances(self, user_ids) -> dict:
        """Lock the balances of `user_ids` in the market's assets.

        A new order's balances, and those of the makers of its first look at the book, are
        locked with the book lock (`begin`). Makers further down a deep book, and those a
        triggered stop meets, may not be locked yet: only those are locked here, again in
        one ascending statement. Such a second lock is the one place a command takes
        balance rows in two goes; a deadlock it could meet is detected by PostgreSQL and
        the command retried (`transactions`), like any other.
        """
        missing = self.balance_keys(user_ids) - self.balances.keys()
        if missing:
            self.balances.update(balances_lock(missing))
        return self.balances

    def balance_keys(self, user_ids) -> set[tuple[int, str]]:
        return {(user_id, asset) for user_id in user_ids for asset in (self.market.base_id, self.market.quote_id)}

    # Postings --------------------------------------------------------------------------

    def post(self, user_id, asset, kind, *, available=ZERO, held=ZERO, reference=""):
        if available or held:
            self.postings.append(Posting(user_id, asset, kind, available, held, reference=reference))

    def hold(self, order: Order, amount: Decimal) -> None:
        asset = self.market.quote_id if order.side == Side.BUY else self.market.base_id
        self.post(order.user_id, asset, Kind.HOLD, available=-amount, held=amount, reference=order_reference(order))
        order.held += amount

    def release(self, order: Order, amount: Decimal) -> None:
        asset = self.market.quote_id if order.side == Side.BUY else self.market.base_id
        self.post(order.user_id, asset, Kind.RELEASE, available=amount, held=-amount, reference=order_reference(order))
        order.held -= amount

    # Commit ----------------------------------------------------------------------------

    def finish(self, taker: Order | None) -> list[Fill]:
        """Write the command's last stage, run the stops its trades crossed, publish.

        Returns the fills of `taker` (the command's own order) in this command, and
        brings `taker` up to date: a triggered stop may have traded with it.
        """
        fills = self.flush(taker)
        lists.exits_place(self, execute)
        stops.run_crossed(self)
        lists.settle(self)
        if taker is not None:
            latest = self.written_orders[taker.pk]
            if latest is not taker:
                for name in ORDER_STATE_FIELDS:
                    setattr(taker, name, getattr(latest, name))
            fills = [fill for fill in self.written_fills if fill.order_id == taker.pk]
        self._publish()
        return fills

    def flush(self, taker: Order | None) -> list[Fill]:
        """Write everything the stage did and bump the book sequence (book lock held).

        The ids of new rows are known before anything is written (a new order's with the
        lock, see `begin`; trades' and fills' in one query, `_ids_and_fees`), so on
        PostgreSQL every write goes out in one pipeline and its answers are read after it:
        one round trip, whatever the stage did, the look for the pending stops its trades
        crossed included. Returns the stage's taker fills.
        """
        self._ids_and_fees(taker)
        balances = self.balances
        market = self.market
        inserting = taker is not None and taker._state.adding
        if taker is not None and not inserting:
            self.changed_orders[taker.pk] = taker
        crossed = None
        with connection.wrap_database_errors, pipeline():
            if inserting:
                taker.created_at = taker.updated_at = self.now
                insert_rows(Order, ["id", *ORDER_INSERT_FIELDS], [[taker.pk, *_values(taker, ORDER_INSERT_FIELDS)]])
                taker._state.adding = False
            balance_events = ledger_post(self.postings, balances, with_ids=False)
            insert_rows(Trade, ["id", *TRADE_FIELDS], ([t.pk, *_values(t, TRADE_FIELDS)] for t in self.trades))
            # The candles of every interval move with the tape, in one more statement.
            candles_record(market=market, trades=self.trades)
            insert_rows(Fill, ["id", *FILL_FIELDS], ([f.pk, *_values(f, FILL_FIELDS)] for f in self.fills))
            update_rows(
                Order,
                ORDER_STATE_FIELDS,
                ([o.pk, *_values(o, ORDER_STATE_FIELDS)] for o in self.changed_orders.values()),
            )
            levels = book_levels_apply(
                market=market,
                seq=self.seq,
                deltas=self.level_deltas,
                last_price=self.trades[-1].price if self.trades else None,
                later=True,
            )
            if self.trades:
                low, high = min(t.price for t in self.trades), max(t.price for t in self.trades)
                # With the look for crossed stops, trailing stops move with these prices.
                crossed = stops.crossed_and_moved(self, low, high, self.trades[0].taker_side)
            if self.market_changed:
                update_rows(
                    Market, auction.MARKET_STATE_FIELDS, [[market.pk, *_values(market, auction.MARKET_STATE_FIELDS)]]
                )
        # The pipeline has ended: one round trip brought every answer.
        levels = levels()
        crossed, moved = crossed() if crossed else ([], [])
        for order in moved:  # trailing stops: their owners see the new stop price (OrderChanged)
            self.written_orders[order.pk] = order
        if taker is not None:
            self.changed_orders[taker.pk] = taker
        for stop in crossed:
            self.crossed_stops.setdefault(stop.pk, stop)
        taker_fills = [fill for fill in self.fills if fill.role == Fill.Role.TAKER]
        self.written_trades += self.trades
        self.written_fills += self.fills
        self.written_orders.update(self.changed_orders)
        self.written_levels.update({(side, price): quantity for side, price, quantity in levels})
        self.balance_events.update({(event.user_id, event.asset): event for event in balance_events()})
        self._stage()
        return taker_fills

    def _ids_and_fees(self, taker: Order | None) -> None:
        """Before the stage's writes: number its trades and fills, and credit its fees to
        the fee account, whose balance is locked here (with the ids, one round trip)."""
        balances = self.balances
        market = self.market
        fee_key = (self.fee_user_id(), market.quote_id) if self.fee_total else None
        if self.trades or fee_key:
            # The trades' and fills' ids, and the fee account's balance, in one round trip.
            # Every command on a market in that quote asset credits that one balance row:
            # locked with the book lock, it made commands on different markets wait for
            # each other's whole transaction. Locked here, only a command that charges a
            # fee takes it, for the rest of its transaction only. Taken after the
            # command's other balances, it is the one lock out of (user, asset) order: a
            # deadlock it meets (a triggered stop waiting on a balance that a command of
            # another market holds while it waits for the fee) is detected and retried.
            with connection.wrap_database_errors, pipeline():
                ids = allocate_ids({Trade: len(self.trades), Fill: len(self.fills)}, later=True)
                fee = balances_lock_for([fee_key[0]], [fee_key[1]]) if fee_key and fee_key not in balances else None
            ids = ids()
            if fee is not None:
                balances.update(fee())
                if fee_key not in balances:  # the fee account's first fee in this asset
                    balances.update(balances_lock([fee_key]))
        if fee_key:
            reference = f"{market.symbol}#{self.seq}"
            self.post(*fee_key, Kind.FEE, available=self.fee_total, reference=reference)
        if self.trades:
            for trade, trade_id in zip(self.trades, ids[Trade], strict=True):
                trade.pk = trade_id
                if taker is not None:  # an uncross names each trade's orders itself (`auction`)
                    trade.taker_order_id = taker.pk
            for index, (fill, fill_id) in enumerate(zip(self.fills, ids[Fill], strict=True)):
                fill.pk, fill.trade = fill_id, self.trades[index // 2]

    # Events ----------------------------------------------------------------------------

    def _publish(self) -> None:
        # Built after commit, outside the book lock (quantumtrades.core.events).
        publish_built_on_commit(self._events)

    def _events(self) -> list:
        market = self.market
        levels = sorted(self.written_levels.items())
        events = [
            BookChanged(
                market_id=market.pk,
                symbol=market.symbol,
                prev_seq=self.seq - 1,
                seq=self.seq,
                bids=[(price, quantity) for (side, price), quantity in levels if side == Side.BUY],
                asks=[(price, quantity) for (side, price), quantity in levels if side == Side.SELL],
            )
        ]
        events += [
            TradeExecuted(
                market_id=market.pk,
                symbol=market.symbol,
                id=trade.pk,
                price=trade.price,
                quantity=trade.quantity,
                taker_side=trade.taker_side,
                time=trade.created_at or self.now,
                seq=self.seq,
            )
            for trade in self.written_trades
        ]
        if self.market_changed:
            events.append(MarketStatusChanged.of(market))
        events += [OrderChanged.of(order, self.seq) for order in self.written_orders.values()]
        events += [FillCreated.of(fill) for fill in self.written_fills]
        return events + list(self.balance_events.values())


def _resting_query(market_id, side, limit) -> tuple[str, list, str]:
    """(WHERE, params, ORDER BY) of the orders resting on `side` that a taker with
    `limit` may meet, best first: the query the partial indexes order_open_bids and
    order_open_asks serve."""
    better, direction = ("<=", "ASC") if side == Side.SELL else (">=", "DESC")
    # Literals, not parameters, for the side and the statuses, as in `stops.crossed`:
    # a prepared statement's generic plan cannot prove a partial index's condition from
    # parameters, and without the index it reads every order the market ever had.
    where = f"market_id = %s AND side = '{Side(side)}' AND {_IN_BOOK_SQL}"
    params = [market_id]
    if limit is not None:
        where += f" AND price {better} %s"
        params.append(limit)
    return where, params, f"ORDER BY price {direction}, priority"


def _trader_standing(user_id: int, count: bool) -> tuple[str, list]:
    """The read of a user's kill switch and, with `count`, of how many active orders they
    have (all markets) against how many they may: (SELECT, parameters), sent queued behind
    the book lock (`Command.begin`). The count stops one past the limit, so a trader with
    thousands of orders costs no more than one at their limit."""
    users, orders = User._meta.db_table, Order._meta.db_table
    if not count:
        return f"SELECT trading_enabled FROM {users} WHERE id = %s", [user_id]
    limit = f"COALESCE(u.max_open_orders, {int(settings.MAX_OPEN_ORDERS)})"
    # SQLite allows no outer column in a subquery's LIMIT: it counts them all.
    bound = f" LIMIT {limit} + 1" if connection.vendor == "postgresql" else ""
    return (
        f"SELECT u.trading_enabled, (SELECT count(*) FROM (SELECT 1 FROM {orders} o "
        f"WHERE o.user_id = u.id AND o.{_ACTIVE_SQL}{bound}) active), {limit} FROM {users} u WHERE u.id = %s",
        [user_id],
    )


def _book_middle(market_id: int) -> Decimal | None:
    """The middle of the book (best bid and best ask), or None unless both sides have orders."""
    best = BookLevel.objects.filter(market_id=market_id, quantity__gt=0).aggregate(
        bid=Max("price", filter=Q(side=Side.BUY)), ask=Min("price", filter=Q(side=Side.SELL))
    )
    if best["bid"] is None or best["ask"] is None:
        return None
    return money((best["bid"] + best["ask"]) / 2)


def _values(instance, names) -> list:
    """The values of `names` on a model instance, by attribute (a foreign key's id)."""
    return [getattr(instance, instance._meta.get_field(name).attname) for name in names]
