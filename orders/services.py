"""The matching engine: place, cancel and amend orders.

Every command runs in one database transaction and follows the same steps:

1. Validate what needs no lock (`order_validate`): enums, tick, lot, minimum notional.
2. Lock the market row (`SELECT ... FOR UPDATE`): the book lock. Commands on one
   market run one at a time from here; orders of the market change only under it.
3. Read the resting orders the command may trade with and plan the trades in memory.
4. Lock every balance the plan touches, in one statement, ascending (user, asset).
   Lock order everywhere: (1) one market row, (2) balance rows. Never the other way.
   (A new order sends steps 2 to 4 in one round trip: the lock, the first batch of
   resting orders and the balances of their makers, `_Command.begin`.)
5. Check funds, write orders, trades, fills, ledger postings, book levels and candles;
   bump the market's book sequence by exactly one.
6. Trigger the pending stop orders those trades reached, earliest accepted first: each
   is matched like a new order (steps 3 to 5, the balances of makers it meets locked
   then), and its trades may reach more stops, up to MAX_TRIGGERS_PER_COMMAND in all.
7. After commit, publish what happened (`quantumtrades.core.events`).

A deadlock or serialization failure rolls the transaction back and the command is run
again from step 2, a bounded number of times (`_retrying`). Commands that queue for the
same market in one process share a transaction, each in a savepoint (`_MarketQueue`).

Money (DESIGN section 3): a buy holds price x quantity plus the taker fee in the quote
asset; a sell holds the quantity in the base asset. Fees are charged in the quote asset
(the buyer pays notional + fee, the seller receives notional - fee) and credited to the
fee account. Fees actually charged round down, held fee reserves round up, so what an
order holds always covers what it can still spend. What executes at once settles
straight from available funds, after the whole order's hold was checked, so price
improvement is never held; what rests is held until it fills, is cancelled or expires.
A stop order holds from acceptance what it will need once triggered (`stop_hold_for`).
"""

import logging
import random
import threading
import time
from collections import defaultdict
from dataclasses import dataclass, field, fields
from decimal import ROUND_CEILING, Decimal, InvalidOperation

from django.db import IntegrityError, OperationalError, connection, transaction
from django.utils import timezone

from accounts.models import LedgerEntry, User
from accounts.services import Posting, balances_lock, balances_lock_for, fee_account, ledger_post
from marketdata.events import BookChanged, TradeExecuted
from marketdata.models import Market, Side, Trade
from marketdata.services import book_levels_apply, candles_record, market_lock
from quantumtrades.core.errors import Conflict, InsufficientFunds, InvalidInput, NotFound, ServiceError
from quantumtrades.core.events import publish_built_on_commit
from quantumtrades.core.money import MONEY_MAX, MONEY_QUANTUM, ZERO, decimal_places, money, money_ceil, money_floor
from quantumtrades.core.sql import allocate_ids, insert_rows, pipeline, savepoint, select_models, update_rows
from quantumtrades.core.sql import cursor as sql_cursor

from .events import FillCreated, OrderChanged
from .models import (
    ACTIVE_STATUSES,
    MAX_ID,
    OPEN_STATUSES,
    PRICED_TYPES,
    STOP_TYPES,
    Fill,
    Order,
    OrderStatus,
    OrderType,
    TimeInForce,
)

log = logging.getLogger(__name__)
Kind = LedgerEntry.Kind

# Columns the engine writes (quantumtrades.core.sql): a new order, then what a command changes.
ORDER_INSERT_FIELDS = [
    "user", "market", "client_order_id", "side", "type", "time_in_force", "post_only", "price", "stop_price",
    "quantity", "filled_quantity", "remaining_quantity", "filled_notional", "held", "status", "priority",
    "triggered_at", "created_at", "updated_at",
]  # fmt: skip
ORDER_STATE_FIELDS = [
    "price", "stop_price", "quantity", "filled_quantity", "remaining_quantity", "filled_notional", "held", "status",
    "priority", "triggered_at", "updated_at",
]  # fmt: skip
TRADE_FIELDS = ["market", "price", "quantity", "taker_side", "maker_order_id", "taker_order_id", "seq", "created_at"]
FILL_FIELDS = ["order", "trade", "user", "market", "side", "role", "price", "quantity", "fee", "created_at"]

MAX_ATTEMPTS = 5
# Resting orders read per round while walking the book: most commands meet one or two,
# a sweep through a deep book reads rounds four times larger each time.
FIRST_MAKER_BATCH = 4
MAX_MAKER_BATCH = 256

# Stop orders (DESIGN section 2). The cascade bound: one command triggers at most this many
# stops, its own trades' and those of the stops it triggered. Stops crossed beyond it are
# marked triggered (`triggered_at`) but stay pending, and run in the commands that follow
# at once (`_stops_due`), each bounded the same way, so no command holds the book lock for
# an unbounded time and no crossed stop is forgotten.
MAX_TRIGGERS_PER_COMMAND = 100
# Priorities a command hands out (see Order.priority): its own order, then the stops it
# triggers, in the order they enter the book.
PRIORITY_SLOTS = 1000
assert MAX_TRIGGERS_PER_COMMAND < PRIORITY_SLOTS
# A stop-market buy has no price to size its hold by. It holds for its quantity at its
# stop price plus this margin (rounded up to the tick), plus the fee reserve; once
# triggered it buys, as a market order, what that hold pays for: when the price gaps past
# the margin it fills less, never more than it held, and what it does not spend is released.
STOP_MARKET_BUY_MARGIN = Decimal("0.05")


# The book's statuses as SQL literals (see `_Command._resting_query`).
_IN_BOOK_SQL = "status IN (" + ", ".join(f"'{status}'" for status in OPEN_STATUSES) + ")"


# --- Results and validation ------------------------------------------------------------


@dataclass
class OrderResult:
    order: Order
    fills: list[Fill] = field(default_factory=list)
    created: bool = True
    # The command crossed more stops than one command may trigger: the rest run next.
    stops_due: bool = False


@dataclass(frozen=True)
class OrderRequest:
    """A validated order: every field checked against the market's rules."""

    market: Market
    side: str
    type: str
    quantity: Decimal
    price: Decimal | None
    time_in_force: str
    post_only: bool
    client_order_id: str | None
    stop_price: Decimal | None = None


def order_validate(
    *,
    market: Market,
    side,
    type=OrderType.LIMIT,
    quantity,
    price=None,
    time_in_force=None,
    post_only=False,
    client_order_id=None,
    stop_price=None,
) -> OrderRequest:
    """Check an order against the market's rules without touching the book.

    The REST API, the order ticket, `/ws` and the engine all use this one function, so an
    order refused in one place is refused everywhere with the same words.
    """
    if side not in Side.values:
        raise InvalidInput("side must be 'buy' or 'sell'.", field="side")
    if type not in OrderType.values:
        raise InvalidInput("type must be 'limit', 'market', 'stop_limit' or 'stop_market'.", field="type")
    if type in STOP_TYPES:
        if stop_price is None:
            raise InvalidInput("A stop order needs a stop_price.", field="stop_price")
        stop_price = _amount(stop_price, "stop_price")
        _multiple_of(stop_price, market.tick_size, "stop_price", "tick size")
        if post_only:
            raise InvalidInput("A stop order cannot be post only.", field="post_only")
    elif stop_price is not None:
        raise InvalidInput("Only stop orders take a stop_price.", field="stop_price")
    if time_in_force is None:
        time_in_force = TimeInForce.GTC if type in PRICED_TYPES else TimeInForce.IOC
    if time_in_force not in TimeInForce.values:
        raise InvalidInput("time_in_force must be GTC, IOC or FOK.", field="time_in_force")
    if not isinstance(post_only, bool):
        raise InvalidInput("post_only must be true or false.", field="post_only")
    quantity = _amount(quantity, "quantity")
    _multiple_of(quantity, market.lot_size, "quantity", "lot size")
    if type in PRICED_TYPES:
        if price is None:
            raise InvalidInput(f"A {type.replace('_', '-')} order needs a price.", field="price")
        price = _amount(price, "price")
        _multiple_of(price, market.tick_size, "price", "tick size")
        notional = price * quantity
        if notional > MONEY_MAX:
            raise InvalidInput("price x quantity is too large.", field="quantity")
        if notional < market.min_notional:
            raise InvalidInput(
                f"price x quantity is {notional.normalize():f}, below the minimum notional "
                f"of {market.min_notional.normalize():f} {market.quote_id}.",
                field="quantity",
            )
    else:
        if price is not None:
            raise InvalidInput(f"A {type.replace('_', '-')} order takes no price.", field="price")
        if time_in_force == TimeInForce.GTC:
            raise InvalidInput("A market order never rests: use IOC or FOK.", field="time_in_force")
        if post_only:
            raise InvalidInput("Only limit orders can be post only.", field="post_only")
        if type == OrderType.STOP_MARKET:
            _stop_market_notional_check(market, stop_price, quantity)
    if post_only and time_in_force != TimeInForce.GTC:
        raise InvalidInput("A post-only order rests in the book: use GTC.", field="post_only")
    if client_order_id is not None:
        if not isinstance(client_order_id, str) or not 1 <= len(client_order_id) <= 64:
            raise InvalidInput("client_order_id must be a string of 1 to 64 characters.", field="client_order_id")
        if not client_order_id.isprintable():
            raise InvalidInput("client_order_id must be printable text.", field="client_order_id")
    return OrderRequest(market, side, type, quantity, price, time_in_force, post_only, client_order_id, stop_price)


def _stop_market_notional_check(market: Market, stop_price: Decimal, quantity: Decimal) -> None:
    """A stop-market order is judged at its stop price: the price it expects to trade near."""
    if stop_market_buy_price(market, stop_price) * quantity > MONEY_MAX:
        raise InvalidInput("stop_price x quantity is too large.", field="quantity")
    notional = stop_price * quantity
    if notional < market.min_notional:
        raise InvalidInput(
            f"stop_price x quantity is {notional.normalize():f}, below the minimum notional "
            f"of {market.min_notional.normalize():f} {market.quote_id}.",
            field="quantity",
        )


def _amount(value, name) -> Decimal:
    if isinstance(value, bool) or not isinstance(value, Decimal | int | str):
        raise InvalidInput(f"{name} must be a decimal number written as a string.", field=name)
    try:
        amount = Decimal(value) if not isinstance(value, Decimal) else value
    except (InvalidOperation, ValueError):
        raise InvalidInput(f"{name} must be a decimal number.", field=name) from None
    if not amount.is_finite():
        raise InvalidInput(f"{name} must be a finite number.", field=name)
    if amount <= 0:
        raise InvalidInput(f"{name} must be positive.", field=name)
    if amount > MONEY_MAX:
        raise InvalidInput(f"{name} is too large.", field=name)
    if decimal_places(amount) > 8:
        raise InvalidInput(f"{name} has more than 8 decimal places.", field=name)
    return money(amount)


def _multiple_of(amount: Decimal, step: Decimal, name: str, rule: str) -> None:
    if amount % step != 0:
        raise InvalidInput(f"{name} must be a multiple of the {rule} {step.normalize():f}.", field=name)


def hold_for(*, market: Market, side: str, price: Decimal | None, quantity: Decimal) -> Decimal:
    """What a resting order of `quantity` at `price` must hold: DESIGN section 2.

    The fee reserve is at the higher of the market's two rates: the order may take
    liquidity when it arrives, and pays the maker fee out of its hold when it rests.
    """
    if side == Side.SELL:
        return quantity
    notional = money(price * quantity)
    return notional + money_ceil(notional * max(market.taker_fee, market.maker_fee))


def fee_for(notional: Decimal, rate: Decimal) -> Decimal:
    return money_floor(notional * rate)


def stop_market_buy_price(market: Market, stop_price: Decimal) -> Decimal:
    """The price a pending stop-market buy holds for (STOP_MARKET_BUY_MARGIN above its stop)."""
    ticks = (stop_price * (1 + STOP_MARKET_BUY_MARGIN) / market.tick_size).to_integral_value(rounding=ROUND_CEILING)
    return money(ticks * market.tick_size)


def stop_hold_for(
    *, market: Market, side: str, type: str, price: Decimal | None, stop_price: Decimal, quantity: Decimal
) -> Decimal:
    """What a pending stop order of `quantity` holds: what it will need once triggered.

    A stop-limit holds like the limit order it becomes; a stop-market sell its quantity;
    a stop-market buy as if it were a limit buy at `stop_market_buy_price`.
    """
    if type == OrderType.STOP_MARKET and side == Side.BUY:
        price = stop_market_buy_price(market, stop_price)
    return hold_for(market=market, side=side, price=price, quantity=quantity)


def order_hold(order: Order) -> Decimal:
    """What an order in the book or a pending stop must hold now (`reconcile` checks it)."""
    if order.status == OrderStatus.PENDING:
        return stop_hold_for(
            market=order.market,
            side=order.side,
            type=order.type,
            price=order.price,
            stop_price=order.stop_price,
            quantity=order.remaining_quantity,
        )
    return hold_for(market=order.market, side=order.side, price=order.price, quantity=order.remaining_quantity)


# --- The transaction wrapper -----------------------------------------------------------


def _retryable(exc: Exception) -> bool:
    cause = exc.__cause__
    sqlstate = getattr(cause, "sqlstate", None)
    if sqlstate in ("40001", "40P01"):  # serialization_failure, deadlock_detected
        return True
    return connection.vendor == "sqlite" and "locked" in str(exc)


def _retrying(command):
    """Run `command` in its own transaction; retry it on deadlock or serialization failure.

    Only the outermost transaction can be retried: inside a caller's transaction the
    failure has already aborted that transaction, so it is raised as it is.
    """

    def run(*args, **kwargs):
        for attempt in range(1, MAX_ATTEMPTS + 1):
            try:
                with transaction.atomic():
                    return command(*args, **kwargs)
            except OperationalError as exc:
                if connection.in_atomic_block or attempt == MAX_ATTEMPTS or not _retryable(exc):
                    raise
                log.info("%s: retrying after %s (attempt %d)", command.__name__, exc.__cause__ or exc, attempt)
                time.sleep(random.uniform(0, 0.005 * 2**attempt))
        raise AssertionError("unreachable")

    run.__name__ = command.__name__
    run.__doc__ = command.__doc__
    run.attempts = MAX_ATTEMPTS
    return run


# Commands of one market that may share a transaction (`_book_command`).
GROUP_MAX = 32


class _Queued:
    """One command waiting its turn on a market, and then its outcome."""

    def __init__(self, command, args, kwargs):
        self.command, self.args, self.kwargs = command, args, kwargs
        self.woken = threading.Event()
        self.finished = False
        self.result = self.error = None

    def outcome(self):
        if self.error is not None:
            raise self.error
        return self.result


class _MarketQueue:
    """The commands on one market waiting in this process for the book lock.

    Commands on a market run one at a time anyway (the book lock). Instead of each taking
    the lock and committing in turn, the first in line takes every command queued behind it
    (up to GROUP_MAX) into one transaction: one lock, one commit, each command in a
    savepoint of its own, so a refused one leaves no trace and the others stand. Then it
    wakes them with their own results, after the commit, so nothing is acknowledged that is
    not durable, and hands the lead to the next in line. Alone in the queue, a command runs
    exactly as before: its own transaction, no savepoint. Each command still bumps the book
    sequence by one and publishes its own events after the commit.

    Grouping pays where the lock is contended: with eight threads on one market, the book
    lock was held twice as long per command as with one (GIL waits inside the lock, a
    commit each), docs/BENCHMARKS.md, "Matching engine".
    """

    def __init__(self):
        self.lock = threading.Lock()
        self.waiting: list[_Queued] = []
        self.busy = False

    def run(self, command, args, kwargs):
        mine = _Queued(command, args, kwargs)
        with self.lock:
            self.waiting.append(mine)
            leads = not self.busy
            self.busy = True
        if not leads:
            if getattr(connection, "pool", None) is not None and connection.connection is not None:
                # Another thread runs this command on its connection. Waiting with one of
                # the pool's connections could leave the thread that leads the next group
                # without one (with more waiting threads than the pool has connections).
                connection.close()
            mine.woken.wait()
        if not mine.finished:  # first in line: run a group that starts with this command
            with self.lock:
                group, self.waiting = self.waiting[:GROUP_MAX], self.waiting[GROUP_MAX:]
            try:
                _run_group(group)
            finally:
                with self.lock:
                    if self.waiting:
                        self.waiting[0].woken.set()  # the next in line leads the next group
                    else:
                        self.busy = False
                for queued in group:
                    if queued.result is None and queued.error is None:  # the leader was interrupted
                        queued.error = RuntimeError("the command's group stopped before running it")
                    queued.finished = True
                    queued.woken.set()
        return mine.outcome()


class _GroupState(threading.local):
    # The markets the running group's transaction has locked (None outside a group).
    markets = None
    # The savepoint of the group's running command, once the command has opened it.
    savepoint = None

    def open_savepoint(self) -> None:
        """Open the running command's savepoint, if it runs in a group and has none yet.
        Inside `pipeline()` the SAVEPOINT waits for the pipeline's round trip."""
        if self.markets is not None and self.savepoint is None:
            self.savepoint = savepoint()
            # As transaction.atomic() does: what the command registers with on_commit is
            # dropped if it rolls back to this savepoint.
            connection.savepoint_ids.append(self.savepoint)


_group = _GroupState()


def _run_group(group: list[_Queued]) -> None:
    if len(group) == 1:
        [queued] = group
        try:
            queued.result = _retrying(queued.command)(*queued.args, **queued.kwargs)
        except Exception as exc:
            queued.error = exc
        return

    def together():
        _group.markets = {}
        try:
            for queued in group:
                queued.result = queued.error = None
                # Each command in a savepoint, so that a refusal leaves no trace. The command
                # opens it with its first statements, in their round trip (`_Command.begin`,
                # which every book command starts with). A savepoint is not released when
                # its command succeeds: the commit releases them all, and a RELEASE of its
                # own would cost each command one more round trip under the book lock. (A
                # group stays well under the 64 subtransactions PostgreSQL caches per
                # transaction: GROUP_MAX.)
                _group.savepoint = None
                try:
                    queued.result = queued.command(*queued.args, **queued.kwargs)
                except OperationalError:
                    raise  # the transaction is lost: the whole group runs again
                except Exception as exc:
                    queued.error = exc
                    connection.needs_rollback = False
                    if _group.savepoint is not None:
                        connection.savepoint_rollback(_group.savepoint)
                    # A refused command's changes to the locked market rolled back with it.
                    _group.markets.clear()
                finally:
                    if _group.savepoint is not None:
                        connection.savepoint_ids.pop()
                    _group.savepoint = None
        finally:
            _group.markets = None

    together.__name__ = f"group of {len(group)}"
    try:
        _retrying(together)()
    except Exception as exc:
        for queued in group:
            queued.error = exc


_queues: dict = {}
_queues_lock = threading.Lock()


def _book_command(market_of):
    """Run the decorated command on its market's queue (`_MarketQueue`): in a transaction
    of its own or shared with the commands queued behind it, retried on deadlock or
    serialization failure. `market_of(*args)` names the market. Inside a caller's
    transaction the command runs in a savepoint of that transaction."""

    def decorate(command):
        def run(*args, **kwargs):
            if connection.in_atomic_block:
                with transaction.atomic():  # a savepoint: a refusal leaves the caller's transaction usable
                    return command(*args, **kwargs)
            key = (connection.alias, market_of(*args, **kwargs))
            with _queues_lock:
                queue = _queues.get(key) or _queues.setdefault(key, _MarketQueue())
            return queue.run(command, args, kwargs)

        run.__name__ = command.__name__
        run.__doc__ = command.__doc__
        run.__wrapped__ = command  # what the queue runs
        return run

    return decorate


# --- The book and its working state ----------------------------------------------------


class _Command:
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
        """The time priority of the next triggered stop to enter the book in this command."""
        self.slots += 1
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
    ) -> "_Command":
        """Take the book lock and start the command's working state.

        On PostgreSQL, what most commands need next goes out in the same round trip as
        the lock (`pipeline`), queued behind it, so it is read as the lock holder sees it:
        with `new_order`, a new order's id (`new_order_id`); with `look` (side, limit),
        the first batch of the taker's look at the book (`resting`); with `taker` (user,
        base asset, quote asset) too, the balances of the taker and of that batch's
        makers, locked in one ascending statement (`lock_balances`). The fee account's
        balance is locked only by a command that charges a fee, and only when it writes
        (`flush`). In a group (`_run_group`), the command's savepoint goes first.
        """
        locked = _group.markets
        # Locked by an earlier command of this group's transaction, whose writes (its book
        # sequence included) the market there already carries.
        held = locked[market_id] if locked is not None and market_id in locked else None
        first = balances = ids = None
        with connection.wrap_database_errors, pipeline():
            _group.open_savepoint()  # in a group: before anything the command does
            market = (lambda: held) if held is not None else market_lock(market_id=market_id, later=True)
            if new_order:
                ids = allocate_ids({Order: 1}, later=True)
            if look is not None:
                where, params, tail = cls._resting_query(market_id, *look)
                first = select_models(Order, where, params, tail=f"{tail} LIMIT {FIRST_MAKER_BATCH}", later=True)
                if taker is not None:
                    user_id, *assets = taker
                    makers = (
                        f"SELECT user_id FROM {Order._meta.db_table} WHERE {where} {tail} LIMIT {FIRST_MAKER_BATCH}"
                    )
                    balances = balances_lock_for([user_id], assets, also=(makers, params))
        command = cls(market())
        if locked is not None:
            locked[market_id] = command.market
        if first is not None:
            command._looked = (look, first())
        if balances is not None:
            command.balances.update(balances())
        if ids is not None:
            [command.new_order_id] = ids()[Order]
        return command

    @staticmethod
    def _resting_query(market_id, side, limit) -> tuple[str, list, str]:
        """(WHERE, params, ORDER BY) of the orders resting on `side` that a taker with
        `limit` may meet, best first: the query the partial indexes order_open_bids and
        order_open_asks serve."""
        better, direction = ("<=", "ASC") if side == Side.SELL else (">=", "DESC")
        # Literals, not parameters, for the side and the statuses, as in `_stops_crossed`:
        # a prepared statement's generic plan cannot prove a partial index's condition from
        # parameters, and without the index it reads every order the market ever had.
        where = f"market_id = %s AND side = '{Side(side)}' AND {_IN_BOOK_SQL}"
        params = [market_id]
        if limit is not None:
            where += f" AND price {better} %s"
            params.append(limit)
        return where, params, f"ORDER BY price {direction}, priority"

    def resting(self, side: str, limit: Decimal | None, quantity: Decimal) -> list[Order]:
        """Resting orders on `side` that a taker may meet, best first, enough to cover
        `quantity` (plus the taker's own orders met on the way, which stop it)."""
        found, covered, offset, size = [], ZERO, 0, FIRST_MAKER_BATCH
        looked, self._looked = self._looked, None
        while covered < quantity:
            if offset == 0 and looked is not None and looked[0] == (side, limit):
                batch = looked[1]  # read with the book lock (`begin`)
            else:
                where, params, tail = self._resting_query(self.market.pk, side, limit)
                batch = select_models(Order, where, params, tail=f"{tail} LIMIT {size} OFFSET {offset}")
            for order in batch:
                order.market = self.market  # saves a query per order when events render it
            found.extend(batch)
            covered += sum((order.remaining_quantity for order in batch), ZERO)
            if len(batch) < size:
                break
            offset += size
            size = min(size * 4, MAX_MAKER_BATCH)
        return found

    def fee_user_id(self) -> int:
        if self._fee_user_id is None:
            self._fee_user_id = _fee_account_id()
        return self._fee_user_id

    def lock_balances(self, user_ids) -> dict:
        """Lock the balances of `user_ids` in the market's assets.

        A new order's balances, and those of the makers of its first look at the book, are
        locked with the book lock (`begin`). Makers further down a deep book, and those a
        triggered stop meets, may not be locked yet: only those are locked here, again in
        one ascending statement. Such a second lock is the one place a command takes
        balance rows in two goes; a deadlock it could meet is detected by PostgreSQL and
        the command retried (`_retrying`), like any other.
        """
        missing = self.balance_keys(user_ids) - self.balances.keys()
        if missing:
            self.balances.update(balances_lock(missing))
        return self.balances

    # Matching --------------------------------------------------------------------------

    def match(self, taker: Order, makers: list[Order], *, budget: Decimal | None = None) -> Decimal:
        """Trade `taker` against `makers` (best first) in memory; return the quantity filled.

        Stops at the first maker owned by the taker's user (self-trade prevention), and,
        for a market buy, where `budget` (quote funds) runs out.
        """
        market = self.market
        filled = ZERO
        for maker in makers:
            # `_trade` has already taken earlier fills off the taker's remaining quantity.
            remaining = taker.remaining_quantity
            if remaining <= 0:
                break
            if maker.user_id == taker.user_id:
                self.met_own_order = True
                break
            quantity = min(remaining, maker.remaining_quantity)
            if budget is not None:
                quantity = min(quantity, self._affordable(maker.price, budget))
                if quantity <= 0:
                    break
                notional = money(maker.price * quantity)
                budget -= notional + fee_for(notional, market.taker_fee)
            self._trade(taker, maker, quantity)
            filled += quantity
        return filled

    def _affordable(self, price: Decimal, budget: Decimal) -> Decimal:
        """The largest whole number of lots a market buy can pay for at `price`, fee included."""
        lot = self.market.lot_size
        # An upper bound to count down from: the fee charged rounds down, by less than one
        # quantum, so a budget up to one quantum short of the exact-fee cost still pays.
        lots = ((budget + MONEY_QUANTUM) / (price * (1 + self.market.taker_fee))) // lot
        quantity = money(lots * lot)
        while quantity > 0:
            notional = money(price * quantity)
            if notional + fee_for(notional, self.market.taker_fee) <= budget:
                return quantity
            quantity -= lot
        return ZERO

    def _trade(self, taker: Order, maker: Order, quantity: Decimal) -> None:
        market = self.market
        price = maker.price
        notional = money(price * quantity)
        taker_fee = fee_for(notional, market.taker_fee)
        maker_fee = fee_for(notional, market.maker_fee)
        base, quote = market.base_id, market.quote_id

        # The maker: its hold pays for its side of the trade, the rest of the hold that
        # this quantity no longer needs is released.
        old_hold = maker.held
        _apply_fill(maker, quantity, notional, self.now)
        maker.held = hold_for(
            market=market,
            side=maker.side,
            price=maker.price,
            quantity=maker.remaining_quantity,
        )
        maker_ref = _reference(maker)
        if maker.side == Side.BUY:
            spent = notional + maker_fee
            self._post(maker.user_id, quote, Kind.TRADE, held=-notional, reference=maker_ref)
            self._post(maker.user_id, quote, Kind.FEE, held=-maker_fee, reference=maker_ref)
            self._release(maker.user_id, quote, old_hold - maker.held - spent, maker_ref)
            self._post(maker.user_id, base, Kind.TRADE, available=quantity, reference=maker_ref)
        else:
            self._post(maker.user_id, base, Kind.TRADE, held=-quantity, reference=maker_ref)
            self._post(maker.user_id, quote, Kind.TRADE, available=notional, reference=maker_ref)
            self._post(maker.user_id, quote, Kind.FEE, available=-maker_fee, reference=maker_ref)

        # The taker settles from available funds (its hold was checked, see module doc).
        _apply_fill(taker, quantity, notional, self.now)
        taker_ref = _reference(taker)
        if taker.side == Side.BUY:
            self._post(taker.user_id, quote, Kind.TRADE, available=-notional, reference=taker_ref)
            self._post(taker.user_id, quote, Kind.FEE, available=-taker_fee, reference=taker_ref)
            self._post(taker.user_id, base, Kind.TRADE, available=quantity, reference=taker_ref)
        else:
            self._post(taker.user_id, base, Kind.TRADE, available=-quantity, reference=taker_ref)
            self._post(taker.user_id, quote, Kind.TRADE, available=notional, reference=taker_ref)
            self._post(taker.user_id, quote, Kind.FEE, available=-taker_fee, reference=taker_ref)

        self.fee_total += taker_fee + maker_fee
        self.level_deltas[(maker.side, maker.price)] -= quantity
        self.changed_orders[maker.pk] = maker
        trade = Trade(
            market=market,
            price=price,
            quantity=quantity,
            taker_side=taker.side,
            maker_order_id=maker.pk,
            taker_order_id=0,  # set once the taker is saved
            seq=self.seq,
            created_at=self.now,
        )
        self.trades.append(trade)
        for order, role, fee in ((taker, Fill.Role.TAKER, taker_fee), (maker, Fill.Role.MAKER, maker_fee)):
            self.fills.append(
                Fill(
                    order=order,
                    user_id=order.user_id,
                    market=market,
                    side=order.side,
                    role=role,
                    price=price,
                    quantity=quantity,
                    fee=fee,
                    created_at=self.now,
                )
            )

    # Postings --------------------------------------------------------------------------

    def _post(self, user_id, asset, kind, *, available=ZERO, held=ZERO, reference=""):
        if available or held:
            self.postings.append(Posting(user_id, asset, kind, available, held, reference=reference))

    def _release(self, user_id, asset, amount, reference):
        self._post(user_id, asset, Kind.RELEASE, available=amount, held=-amount, reference=reference)

    def hold(self, order: Order, amount: Decimal) -> None:
        asset = self.market.quote_id if order.side == Side.BUY else self.market.base_id
        self._post(order.user_id, asset, Kind.HOLD, available=-amount, held=amount, reference=_reference(order))
        order.held += amount

    def release(self, order: Order, amount: Decimal) -> None:
        asset = self.market.quote_id if order.side == Side.BUY else self.market.base_id
        self._release(order.user_id, asset, amount, _reference(order))
        order.held -= amount

    def balance_keys(self, user_ids) -> set[tuple[int, str]]:
        return {(user_id, asset) for user_id in user_ids for asset in (self.market.base_id, self.market.quote_id)}

    # Commit ----------------------------------------------------------------------------

    def finish(self, taker: Order | None) -> list[Fill]:
        """Write the command's last stage, run the stops its trades crossed, publish.

        Returns the fills of `taker` (the command's own order) in this command, and
        brings `taker` up to date: a triggered stop may have traded with it.
        """
        fills = self.flush(taker)
        self._run_stops()
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
        lock, see `begin`; trades' and fills' in one query here), so on PostgreSQL every
        write goes out in one pipeline and its answers are read after it: one round trip,
        whatever the stage did, the look for the pending stops its trades crossed
        included. Returns the stage's taker fills.
        """
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
            self._post(*fee_key, Kind.FEE, available=self.fee_total, reference=reference)
        if self.trades:
            for trade, trade_id in zip(self.trades, ids[Trade], strict=True):
                trade.pk, trade.taker_order_id = trade_id, taker.pk
            for index, (fill, fill_id) in enumerate(zip(self.fills, ids[Fill], strict=True)):
                fill.pk, fill.trade = fill_id, self.trades[index // 2]
        inserting = taker is not None and taker._state.adding
        if taker is not None and not inserting:
            self.changed_orders[taker.pk] = taker
        balance_events = []
        crossed = None
        with connection.wrap_database_errors, pipeline():
            if inserting:
                taker.created_at = taker.updated_at = self.now
                insert_rows(Order, ["id", *ORDER_INSERT_FIELDS], [[taker.pk, *_values(taker, ORDER_INSERT_FIELDS)]])
                taker._state.adding = False
            ledger_post(self.postings, balances, events=balance_events, with_ids=False)
            insert_rows(Trade, ["id", *TRADE_FIELDS], ([t.pk, *_values(t, TRADE_FIELDS)] for t in self.trades))
            # The candles of every interval move with the tape, in one more statement.
            candles_record(market=market, trades=self.trades)
            insert_rows(Fill, ["id", *FILL_FIELDS], ([f.pk, *_values(f, FILL_FIELDS)] for f in self.fills))
            update_rows(
                Order,
                ORDER_STATE_FIELDS,
                ([o.pk, *_values(o, ORDER_STATE_FIELDS)] for o in self.changed_orders.values()),
            )
            levels = book_levels_apply(market=market, seq=self.seq, deltas=self.level_deltas, later=True)
            if self.trades:
                low, high = min(t.price for t in self.trades), max(t.price for t in self.trades)
                crossed = self._stops_crossed(low, high, later=True)
        # The pipeline has ended: one round trip brought every answer.
        levels = levels()
        crossed = crossed() if crossed else []
        if taker is not None:
            self.changed_orders[taker.pk] = taker
        for stop in crossed:
            self.crossed_stops.setdefault(stop.pk, stop)
        taker_fills = [fill for fill in self.fills if fill.role == Fill.Role.TAKER]
        self.written_trades += self.trades
        self.written_fills += self.fills
        self.written_orders.update(self.changed_orders)
        self.written_levels.update({(side, price): quantity for side, price, quantity in levels})
        self.balance_events.update({(event.user_id, event.asset): event for event in balance_events})
        self._stage()
        return taker_fills

    # Stops -----------------------------------------------------------------------------

    def _stops_crossed(self, low: Decimal | None, high: Decimal | None, *, later: bool = False):
        """Pending stops that trades between `low` and `high` crossed, and those marked
        triggered that an earlier command left for later, in the order they were accepted
        (at most as many as the command may still trigger). `later` as for `select_models`."""
        if low is not None:
            self.traded_low = low if self.traded_low is None else min(low, self.traded_low)
            self.traded_high = high if self.traded_high is None else max(high, self.traded_high)
        # Literals, not parameters, for the status and sides: a prepared statement's generic
        # plan can then still use the partial indexes order_pending_stops and order_due_stops.
        where = f"market_id = %s AND status = '{OrderStatus.PENDING}' AND (triggered_at IS NOT NULL"
        params = [self.market.pk]
        if low is not None:
            where += f" OR (side = '{Side.BUY}' AND stop_price <= %s) OR (side = '{Side.SELL}' AND stop_price >= %s)"
            params += [high, low]
        limit = MAX_TRIGGERS_PER_COMMAND - self.triggered + 1
        rows = select_models(Order, where + ")", params, tail=f"ORDER BY priority LIMIT {limit}", later=True)

        def read() -> list[Order]:
            found = rows()
            for order in found:
                order.market = self.market
            return found

        return read if later else read()

    def _run_stops(self) -> None:
        """Trigger the stops the command's trades crossed, in the order they were accepted;
        their own trades may cross more (a cascade, MAX_TRIGGERS_PER_COMMAND at most)."""
        while self.crossed_stops:
            stop_id = min(self.crossed_stops, key=lambda pk: self.crossed_stops[pk].priority)
            if self.triggered == MAX_TRIGGERS_PER_COMMAND:
                self._defer_stops()
                return
            stop = self.crossed_stops.pop(stop_id)
            self.triggered += 1
            stop.triggered_at = self.now
            stop.priority = self.next_priority()
            _execute(self, stop, new=False, triggered=True)

    def _defer_stops(self) -> None:
        """Mark every stop the command's trades crossed and that it could not trigger: they
        stay pending, marked triggered, and the next command on the market runs them first."""
        with sql_cursor() as statement:
            statement.execute(
                f"UPDATE {Order._meta.db_table} SET triggered_at = %s WHERE market_id = %s "
                f"AND status = '{OrderStatus.PENDING}' AND triggered_at IS NULL "
                f"AND ((side = '{Side.BUY}' AND stop_price <= %s) OR (side = '{Side.SELL}' AND stop_price >= %s))",
                [self.now, self.market.pk, self.traded_high, self.traded_low],
            )
        self.crossed_stops.clear()
        self.stops_due = True

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
        events += [OrderChanged.of(order) for order in self.written_orders.values()]
        events += [FillCreated.of(fill) for fill in self.written_fills]
        return events + list(self.balance_events.values())


def _values(instance, names) -> list:
    """The values of `names` on a model instance, by attribute (a foreign key's id)."""
    return [getattr(instance, instance._meta.get_field(name).attname) for name in names]


def _apply_fill(order: Order, quantity: Decimal, notional: Decimal, now) -> None:
    order.filled_quantity += quantity
    order.remaining_quantity -= quantity
    order.filled_notional += notional
    if order.remaining_quantity == 0:
        order.status = OrderStatus.FILLED
    else:
        order.status = OrderStatus.PARTIALLY_FILLED
    order.updated_at = now  # the command's time, as every change it makes


def _reference(order: Order) -> str:
    """What a ledger entry says it was for."""
    return f"order:{order.pk}"


_fee_account_cache: dict[str, int] = {}


def _fee_account_id() -> int:
    # The fee account never changes once created; one query per process, keyed by the
    # database name because tests create and destroy databases.
    name = connection.settings_dict["NAME"]
    if name not in _fee_account_cache:
        _fee_account_cache[name] = fee_account().pk
    return _fee_account_cache[name]


# Markets by symbol as this process last read them: the rules an order is checked against
# before the book lock, without a query per order. Under the lock the engine reads the
# market again and checks the order once more if its rules changed meanwhile (`_place`),
# so a copy a few seconds old never lets through an order the current rules refuse.
MARKET_CACHE_SECONDS = 5.0
RULES = ("tick_size", "lot_size", "min_notional")
_markets: dict = {}


def _resolve_market(market: Market | str) -> Market:
    if isinstance(market, Market):
        return market
    if not isinstance(market, str):
        raise InvalidInput("symbol must be a market symbol such as QTX-USD.", field="symbol")
    key = (connection.alias, market)
    entry = _markets.get(key)
    if entry is not None and entry[0] > time.monotonic():
        return entry[1]
    # Through select_models: compiling the ORM query cost more than running it.
    found = select_models(Market, "symbol = %s", [market])
    if not found:
        raise InvalidInput(f"There is no market {market[:24]!r}.", field="symbol")
    if len(_markets) > 1000:
        _markets.clear()
    _markets[key] = (time.monotonic() + MARKET_CACHE_SECONDS, found[0])
    return found[0]


def forget_markets() -> None:
    _markets.clear()


# --- Commands ---------------------------------------------------------------------------


def order_place(
    *,
    user: User,
    market: Market | str,
    side,
    type=OrderType.LIMIT,
    quantity,
    price=None,
    time_in_force=None,
    post_only=False,
    client_order_id=None,
    stop_price=None,
) -> OrderResult:
    """Place an order. A repeated client_order_id returns the original order (created=False).

    A stop order (`stop_limit`, `stop_market`) is accepted as `pending`: it holds its funds
    and waits off the book for a trade at or through its stop price (`_run_stops`).
    """
    market = _resolve_market(market)
    request = order_validate(
        market=market,
        side=side,
        type=type,
        quantity=quantity,
        price=price,
        time_in_force=time_in_force,
        post_only=post_only,
        client_order_id=client_order_id,
        stop_price=stop_price,
    )
    try:
        if not market.is_trading:
            raise Conflict(f"{market.symbol} is halted: new orders are refused.", code="MARKET_HALTED")
        result = _place(user, request)
    except (IntegrityError, ServiceError):
        # A repeated client_order_id is caught by its unique constraint as the new order
        # is written, so the usual order (a new id) costs no lookup. A repeat that the
        # book, the funds or a halt would now refuse still answers with the original.
        if request.client_order_id is not None:
            existing = _existing(user, request.client_order_id)
            if existing is not None:
                return existing
        raise
    if result.stops_due:
        _stops_due_run(market.pk)
    return result


def _existing(user, client_order_id) -> OrderResult | None:
    order = Order.objects.filter(user=user, client_order_id=client_order_id).select_related("market").first()
    if order is None:
        return None
    return OrderResult(order=order, fills=list(order.fills.select_related("market").order_by("id")), created=False)


@_book_command(lambda user, request: request.market.pk)
def _place(user: User, request: OrderRequest) -> OrderResult:
    # The new order's id and the first look at the book it may trade with come with the
    # lock, in the same round trip (a stop rests off the book: it only needs its id).
    look = None if request.type in STOP_TYPES else (Side.SELL if request.side == Side.BUY else Side.BUY, request.price)
    try:
        market = request.market
        command = _Command.begin(
            market.pk, look=look, taker=(user.pk, market.base_id, market.quote_id) if look else None, new_order=True
        )
    except Market.DoesNotExist:  # gone since this process last read it
        forget_markets()
        raise InvalidInput(f"There is no market {request.market.symbol[:24]!r}.", field="symbol") from None
    market = command.market
    if not market.is_trading:
        raise Conflict(f"{market.symbol} is halted: new orders are refused.", code="MARKET_HALTED")
    if any(getattr(market, rule) != getattr(request.market, rule) for rule in RULES):
        # The rules changed since the order was checked: check it against today's.
        order_validate(
            **{f.name: getattr(request, f.name) for f in fields(request) if f.name != "market"}, market=market
        )
    taker = Order(
        id=command.new_order_id,
        user=user,
        market=market,
        client_order_id=request.client_order_id,
        side=request.side,
        type=request.type,
        time_in_force=request.time_in_force,
        post_only=request.post_only,
        price=request.price,
        stop_price=request.stop_price,
        quantity=request.quantity,
        remaining_quantity=request.quantity,
        # Decimal zeros at the money precision, as the database would hand them back.
        filled_quantity=money(ZERO),
        filled_notional=money(ZERO),
        held=money(ZERO),
        status=OrderStatus.OPEN,
        priority=command.priority,
    )
    if taker.type in STOP_TYPES:
        return _accept_stop(command, taker)
    fills = _execute(command, taker, new=True)
    return OrderResult(order=taker, fills=fills, created=True, stops_due=command.stops_due)


def _last_price(market: Market) -> Decimal | None:
    """The price of the market's last trade (book lock held, so it is the last one)."""
    found = select_models(Trade, "market_id = %s", [market.pk], tail="ORDER BY id DESC LIMIT 1")
    return found[0].price if found else None


def _refuse_crossed_stop(market: Market, side: str, stop_price: Decimal) -> None:
    """A stop that the last trade already reached would trigger at once: refuse it, so the
    trader places the limit or market order they mean instead (DESIGN section 2)."""
    last = _last_price(market)
    if last is None:
        return
    if side == Side.BUY and last >= stop_price:
        raise InvalidInput(
            f"The last trade, at {last.normalize():f}, is already at or above this buy stop: "
            "a buy stop_price must be above the last trade price.",
            field="stop_price",
        )
    if side == Side.SELL and last <= stop_price:
        raise InvalidInput(
            f"The last trade, at {last.normalize():f}, is already at or below this sell stop: "
            "a sell stop_price must be below the last trade price.",
            field="stop_price",
        )


def _accept_stop(command: _Command, order: Order) -> OrderResult:
    """Accept a stop order as pending: hold what it will need, keep it off the book (book lock held)."""
    market = command.market
    _refuse_crossed_stop(market, order.side, order.stop_price)
    balances = command.lock_balances({order.user_id})
    asset = market.quote_id if order.side == Side.BUY else market.base_id
    order.status = OrderStatus.PENDING
    needed = order_hold(order)
    available = balances[(order.user_id, asset)].available
    if available < needed:
        raise _insufficient(asset, needed, available)
    command.hold(order, needed)
    command.finish(order)
    return OrderResult(order=order, fills=[], created=True)


def _execute(command: _Command, taker: Order, *, new: bool, triggered: bool = False) -> list[Fill]:
    """Match `taker` against the book, hold for what rests, write it all (book lock held).

    `taker.held` is what the order already holds (an amended order, a triggered stop); a
    new order holds nothing yet. A triggered stop's stage is written, not finished: the
    command that triggered it finishes (`_Command._run_stops`). It trades on what it held
    since acceptance and is never refused: what it cannot pay for expires.
    """
    market = command.market
    command.met_own_order = False
    opposite = Side.SELL if taker.side == Side.BUY else Side.BUY
    makers = command.resting(opposite, taker.price, taker.remaining_quantity)

    if taker.post_only and makers:
        if new:
            taker.status = OrderStatus.REJECTED
            return command.finish(taker)
        raise Conflict(
            "The new price would take liquidity, which a post-only order may not.", code="POST_ONLY_WOULD_TAKE"
        )

    balances = command.lock_balances({taker.user_id, *(m.user_id for m in makers)})
    hold_asset = market.quote_id if taker.side == Side.BUY else market.base_id
    available = balances[(taker.user_id, hold_asset)].available + taker.held

    budget, needed = None, ZERO
    if taker.type in PRICED_TYPES:
        needed = hold_for(market=market, side=taker.side, price=taker.price, quantity=taker.remaining_quantity)
    elif taker.side == Side.BUY:
        # A market buy spends at most what is available; a triggered stop-market buy at
        # most what it held (see STOP_MARKET_BUY_MARGIN).
        budget = taker.held if triggered else available
    else:
        needed = taker.remaining_quantity
    if available < needed:
        if not triggered:
            raise _insufficient(hold_asset, needed, available)
        # Only when the market's fees rose since the stop was accepted: it cannot pay.
        makers = []

    if taker.time_in_force == TimeInForce.FOK and not _fills_completely(command, taker, makers, budget):
        makers = []  # kill: no trade at all
    # An amended order gives back its old hold first; what still rests is held again below.
    if taker.held:
        command.release(taker, taker.held)
    filled = command.match(taker, makers, budget=budget)
    if budget is not None and filled == 0 and makers and not command.met_own_order and not triggered:
        # There was something to buy, but not even one lot of it was affordable (fee included,
        # or the message would claim a need below what is available).
        one_lot = money(makers[0].price * market.lot_size)
        raise _insufficient(hold_asset, one_lot + fee_for(one_lot, market.taker_fee), available)

    # Self-trade prevention: having met its owner's resting order, the rest expires.
    rests = (
        taker.type in PRICED_TYPES
        and taker.time_in_force == TimeInForce.GTC
        and taker.remaining_quantity > 0
        and not command.met_own_order
        and available >= needed
    )
    if rests:
        command.hold(
            taker,
            hold_for(
                market=market,
                side=taker.side,
                price=taker.price,
                quantity=taker.remaining_quantity,
            ),
        )
        command.level_deltas[(taker.side, taker.price)] += taker.remaining_quantity
        if taker.status not in OPEN_STATUSES:
            taker.status = OrderStatus.OPEN
    elif taker.remaining_quantity > 0:
        taker.status = OrderStatus.EXPIRED
    taker.updated_at = command.now
    return command.flush(taker) if triggered else command.finish(taker)


def _fills_completely(command: _Command, taker: Order, makers: list[Order], budget) -> bool:
    wanted, budget_left = taker.remaining_quantity, budget
    for maker in makers:
        if maker.user_id == taker.user_id:
            return False
        quantity = min(wanted, maker.remaining_quantity)
        if budget_left is not None:
            quantity = min(quantity, command._affordable(maker.price, budget_left))
            notional = money(maker.price * quantity)
            budget_left -= notional + fee_for(notional, command.market.taker_fee)
            if quantity < min(wanted, maker.remaining_quantity):
                return False
        wanted -= quantity
        if wanted <= 0:
            return True
    return wanted <= 0


def _insufficient(asset, needed, available) -> InsufficientFunds:
    return InsufficientFunds(
        f"Not enough {asset}: the order needs {needed.normalize():f}, {available.normalize():f} is available.",
        field="quantity",
    )


def _locked_order(command: _Command, user: User, order_id: int) -> Order:
    found = select_models(Order, "id = %s AND user_id = %s AND market_id = %s", [order_id, user.pk, command.market.pk])
    if not found:
        raise NotFound("No such order.")
    order = found[0]
    order.market = command.market
    _refuse_done(order.status)
    return order


def _refuse_done(status: str) -> None:
    if status not in ACTIVE_STATUSES:
        raise Conflict(f"The order is {status}, no longer open.", code="ORDER_NOT_OPEN")


_ORDER_OF_SQL = f"SELECT market_id, status FROM {Order._meta.db_table} WHERE id = %s AND user_id = %s"


def _order_of(user: User, order_id) -> tuple[int, str]:
    """(market id, status) of one of the user's orders, read without the book lock.

    Filled, cancelled, expired and rejected are final: an order read so here can never be
    open again, so its cancel or amend is refused at once (`_refuse_done`), without the book
    lock, a place in the market's queue, or the rollback that a refusal under the lock costs.
    Any other status is checked again under the lock (`_locked_order`).
    """
    if isinstance(order_id, bool):  # True is an int to Python, never an order id
        raise NotFound("No such order.")
    try:
        order_id = int(order_id)
    except (TypeError, ValueError):
        raise NotFound("No such order.") from None
    if not 0 < order_id <= MAX_ID:
        raise NotFound("No such order.")
    # On the engine's prepared cursor: through the ORM the query was 4-5 % of the engine's
    # Python at eight threads, most of it compiling, and PostgreSQL planned it anew each
    # time (docs/BENCHMARKS.md, "Indexes that only cost").
    with sql_cursor() as statement:
        statement.execute(_ORDER_OF_SQL, [order_id, user.pk])
        found = statement.fetchone()
    if found is None:
        raise NotFound("No such order.")
    return found


def order_cancel(*, user: User, order_id: int) -> Order:
    """Cancel an open order and release what it holds. Works on halted markets too."""
    market_id, status = _order_of(user, order_id)
    _refuse_done(status)
    return _cancel(user, market_id, int(order_id))


@_book_command(lambda user, market_id, *rest: market_id)
def _cancel(user: User, market_id: int, order_id: int) -> Order:
    command = _Command.begin(market_id)
    order = _locked_order(command, user, order_id)
    _cancel_one(command, order)
    command.lock_balances({user.pk})
    command.finish(None)
    return order


def _cancel_one(command: _Command, order: Order) -> None:
    command.release(order, order.held)
    if order.status in OPEN_STATUSES:  # a pending stop is not in the book
        command.level_deltas[(order.side, order.price)] -= order.remaining_quantity
    order.status = OrderStatus.CANCELLED
    order.updated_at = command.now
    command.changed_orders[order.pk] = order


def orders_cancel_all(*, user: User, market: Market | str | None = None) -> list[Order]:
    """Cancel all of a user's open orders and pending stops, on one market or on all (one
    command per market)."""
    orders = Order.objects.active().filter(user=user)
    if market is not None:
        orders = orders.filter(market=_resolve_market(market))
    cancelled = []
    for market_id in sorted(set(orders.values_list("market_id", flat=True))):
        cancelled += _cancel_all_in(user, market_id)
    return cancelled


@_book_command(lambda user, market_id, *rest: market_id)
def _cancel_all_in(user: User, market_id: int) -> list[Order]:
    command = _Command.begin(market_id)
    orders = list(Order.objects.active().filter(user=user, market_id=market_id).order_by("id"))
    for order in orders:
        _cancel_one(command, order)
    command.lock_balances({user.pk})
    command.finish(None)
    return orders


def order_amend(*, user: User, order_id: int, price=None, quantity=None, stop_price=None) -> OrderResult:
    """Change an open limit order's price and/or total quantity, or a pending stop's.

    Reducing the quantity keeps the order's place in the queue. A new price or a larger
    quantity takes a new place, as if the order were placed again, and may trade at once.
    A pending stop may also get a new stop price (not one the last trade already reached);
    it stays pending whatever changes, and keeps its place among the stops only when its
    quantity shrinks and nothing else changes.
    """
    if price is None and quantity is None and stop_price is None:
        raise InvalidInput("Give a new price, quantity or stop price.", field="price")
    market_id, status = _order_of(user, order_id)
    market = Market.objects.get(pk=market_id)
    new_price = _amount(price, "price") if price is not None else None
    new_quantity = _amount(quantity, "quantity") if quantity is not None else None
    new_stop_price = _amount(stop_price, "stop_price") if stop_price is not None else None
    if new_price is not None:
        _multiple_of(new_price, market.tick_size, "price", "tick size")
    if new_quantity is not None:
        _multiple_of(new_quantity, market.lot_size, "quantity", "lot size")
    if new_stop_price is not None:
        _multiple_of(new_stop_price, market.tick_size, "stop_price", "tick size")
    _refuse_done(status)
    result = _amend(user, market_id, int(order_id), new_price, new_quantity, new_stop_price)
    if result.stops_due:
        _stops_due_run(market_id)
    return result


@_book_command(lambda user, market_id, *rest: market_id)
def _amend(user, market_id, order_id, new_price, new_quantity, new_stop_price=None) -> OrderResult:
    command = _Command.begin(market_id)
    market = command.market
    order = _locked_order(command, user, order_id)
    if order.status == OrderStatus.PENDING:
        return _amend_stop(command, order, new_price, new_quantity, new_stop_price)
    if new_stop_price is not None:
        if order.type in STOP_TYPES:
            raise Conflict(
                "The stop has triggered: its stop price can no longer change.",
                code="STOP_TRIGGERED",
                field="stop_price",
            )
        raise InvalidInput("Only stop orders have a stop_price.", field="stop_price")
    price = new_price if new_price is not None else order.price
    quantity = new_quantity if new_quantity is not None else order.quantity
    if quantity <= order.filled_quantity:
        raise InvalidInput(
            f"The new quantity must exceed the {order.filled_quantity.normalize():f} already filled.",
            field="quantity",
        )
    remaining = quantity - order.filled_quantity
    # The same ceiling as `order_validate`: past it the hold can not even be computed.
    if price * quantity > MONEY_MAX:
        raise InvalidInput("price x quantity is too large.", field="quantity")
    if price * remaining < market.min_notional:
        raise InvalidInput(
            f"price x remaining quantity is below the minimum notional of {market.min_notional.normalize():f}.",
            field="quantity",
        )
    if price == order.price and quantity == order.quantity:
        command.lock_balances({user.pk})
        command.finish(None)
        return OrderResult(order=order, created=False)

    command.level_deltas[(order.side, order.price)] -= order.remaining_quantity
    if price == order.price and quantity < order.quantity:
        # Smaller, same price: keeps its priority; the hold shrinks to match.
        order.quantity, order.remaining_quantity = quantity, remaining
        command.release(
            order,
            order.held
            - hold_for(
                market=market,
                side=order.side,
                price=price,
                quantity=remaining,
            ),
        )
        command.level_deltas[(order.side, price)] += remaining
        order.updated_at = command.now
        command.changed_orders[order.pk] = order
        command.lock_balances({user.pk})
        command.finish(None)
        return OrderResult(order=order, created=False)

    if market.status != Market.Status.TRADING:
        raise Conflict(f"{market.symbol} is halted: orders can be cancelled, not re-priced.", code="MARKET_HALTED")
    # A new price or more quantity: back of the queue, and it may trade at once.
    order.price, order.quantity, order.remaining_quantity = price, quantity, remaining
    order.priority = command.priority
    fills = _execute(command, order, new=False)
    return OrderResult(order=order, fills=fills, created=False, stops_due=command.stops_due)


def _amend_stop(command: _Command, order: Order, new_price, new_quantity, new_stop_price) -> OrderResult:
    """Amend a pending stop (book lock held): it stays pending, off the book, so nothing
    trades; its hold follows the new terms, and it is checked as a new stop would be."""
    market = command.market
    if order.type == OrderType.STOP_MARKET and new_price is not None:
        raise InvalidInput("A stop-market order takes no price.", field="price")
    price = new_price if new_price is not None else order.price
    quantity = new_quantity if new_quantity is not None else order.quantity
    stop_price = new_stop_price if new_stop_price is not None else order.stop_price
    keeps_place = price == order.price and stop_price == order.stop_price and quantity <= order.quantity
    if not keeps_place and not market.is_trading:
        raise Conflict(f"{market.symbol} is halted: orders can be cancelled, not re-priced.", code="MARKET_HALTED")
    if order.type == OrderType.STOP_MARKET:
        _stop_market_notional_check(market, stop_price, quantity)
    else:
        if price * quantity > MONEY_MAX:
            raise InvalidInput("price x quantity is too large.", field="quantity")
        if price * quantity < market.min_notional:
            raise InvalidInput(
                f"price x quantity is below the minimum notional of {market.min_notional.normalize():f}.",
                field="quantity",
            )
    if stop_price != order.stop_price:
        _refuse_crossed_stop(market, order.side, stop_price)
    balances = command.lock_balances({order.user_id})
    if (price, quantity, stop_price) != (order.price, order.quantity, order.stop_price):
        order.price, order.stop_price = price, stop_price
        order.quantity = order.remaining_quantity = quantity
        needed = order_hold(order)
        asset = market.quote_id if order.side == Side.BUY else market.base_id
        available = balances[(order.user_id, asset)].available + order.held
        if available < needed:
            raise _insufficient(asset, needed, available)
        if needed > order.held:
            command.hold(order, needed - order.held)
        else:
            command.release(order, order.held - needed)
        if not keeps_place:
            order.priority = command.priority
        order.updated_at = command.now
        command.changed_orders[order.pk] = order
    command.finish(None)
    return OrderResult(order=order, created=False)


def _stops_due_run(market_id: int) -> None:
    """Run the stops that earlier commands crossed but could not trigger within their bound,
    each command again bounded, until none is left (or the market halts)."""
    while _stops_due(market_id):
        pass


@_book_command(lambda market_id: market_id)
def _stops_due(market_id: int) -> bool:
    """One command that triggers stops left for later; True if it left some again."""
    command = _Command.begin(market_id)
    if not command.market.is_trading:
        return False
    for stop in command._stops_crossed(None, None):
        command.crossed_stops[stop.pk] = stop
    if not command.crossed_stops:
        return False
    command.finish(None)
    return command.stops_due
