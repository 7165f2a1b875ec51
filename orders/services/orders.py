"""One order at a time: place, cancel and amend an order, cancel all of a user's orders,
and run the stops a command left for later.

The commands of the doors that take one order (REST, /ws, FIX, the pages, the admin).
What an order list or a batch needs beyond them is in `lists` and `batches`, which build
on the pieces here: cancelling one order under the lock (`_cancel_one`, `_cancel`), the
lock-free look at a user's order (`_order_of`) and the stops left for later
(`_stops_due_run`), which any command that trades may leave.
"""

import logging
from dataclasses import dataclass, field, fields

from django.db import IntegrityError
from django.utils import timezone

from accounts.models import User
from marketdata.models import Market, Side
from quantumtrades.core import logs
from quantumtrades.core.errors import Conflict, ErrorCode, InvalidInput, NotFound, ServiceError
from quantumtrades.core.money import ZERO, money
from quantumtrades.core.sql import cursor as sql_cursor
from quantumtrades.core.sql import select_models

from .. import activity
from ..engine import auction, lists, stops
from ..engine.caches import forget_markets, resolve_market
from ..engine.command import Command
from ..engine.matching import execute
from ..engine.rules import (
    MARKET_RULES,
    RESTING_TIMES_IN_FORCE,
    OrderRequest,
    amend_terms_check,
    amount,
    book_quantity,
    hold_for,
    market_order_size_check,
    multiple_of,
    order_validate,
    price_band_check,
    refuse_done,
)
from ..engine.transactions import book_command
from ..models import (
    MAX_ID,
    OPEN_STATUSES,
    STOP_TYPES,
    Fill,
    Order,
    OrderSource,
    OrderStatus,
    OrderType,
    SelfTradePrevention,
)

# One line per command at DEBUG, with the order and market (LOG_LEVEL_ENGINE=DEBUG): the
# request's id comes from the context (quantumtrades.core.logs). Off, a command pays one
# level check. The log keeps the package's name, which settings and docs/OPERATIONS.md use.
log = logging.getLogger("orders.services")


@dataclass
class OrderResult:
    order: Order
    fills: list[Fill] = field(default_factory=list)
    created: bool = True
    # The command crossed more stops than one command may trigger: the rest run next.
    stops_due: bool = False


# --- Place ----------------------------------------------------------------------------


@activity.recorded  # every outcome, accepted or refused, through every channel
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
    stp=SelfTradePrevention.EXPIRE_TAKER,
    expire_at=None,
    display_quantity=None,
    trailing_delta=None,
    trailing_percent=None,
    limit_offset=None,
    source=OrderSource.SYSTEM,
    socket_id=None,
) -> OrderResult:
    """Place an order. A repeated client_order_id returns the original order (created=False).

    `source` is the door it came through (web, rest, ws, fix, admin, system); `socket_id`
    the cancel-on-disconnect socket that placed it, if any (orders.LiveSocket).

    A stop order (`stop_limit`, `stop_market`) is accepted as `pending`: it holds its funds
    and waits off the book for a trade at or through its stop price (`engine.stops`).
    A GTD order (`time_in_force` GTD) rests until `expire_at` (`orders.expiry`). An
    iceberg (`display_quantity`) shows at most that much of itself in the book at a time.
    A trailing stop (`trailing_stop`, with `trailing_delta` or `trailing_percent`, and
    `limit_offset` to trigger as a limit) is a stop whose stop price follows the market.
    """
    market = resolve_market(market)
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
        stp=stp,
        expire_at=expire_at,
        display_quantity=display_quantity,
        trailing_delta=trailing_delta,
        trailing_percent=trailing_percent,
        limit_offset=limit_offset,
    )
    try:
        # The market's status is judged under the book lock only (`_place`): this copy of
        # the market may be seconds old, and a halt, a resume or an auction counts at once.
        result = _place(user, request, source, socket_id)
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
    if log.isEnabledFor(logging.DEBUG):
        log.debug(
            "order placed: %s, %d fills", result.order.status, len(result.fills), extra=logs.order_of(result.order)
        )
    return result


def _existing(user, client_order_id) -> OrderResult | None:
    order = Order.objects.filter(user=user, client_order_id=client_order_id).select_related("market").first()
    if order is None:
        return None
    return OrderResult(order=order, fills=list(order.fills.select_related("market").order_by("id")), created=False)


@book_command(lambda user, request, *rest: request.market.pk)
def _place(user: User, request: OrderRequest, source: str, socket_id: int | None) -> OrderResult:
    # The new order's id and the first look at the book it may trade with come with the
    # lock, in the same round trip (a stop rests off the book: it only needs its id).
    look = None if request.type in STOP_TYPES else (Side.SELL if request.side == Side.BUY else Side.BUY, request.price)
    try:
        market = request.market
        # An order that could rest, or a stop, counts against the user's open orders.
        adds = request.type in STOP_TYPES or request.time_in_force in RESTING_TIMES_IN_FORCE
        # The circuit breaker's reference rides with the lock, unless this process knows it.
        since = auction.breaker_since(market, timezone.now()) if look else None
        remembered = auction.breaker_reference_remembered(market, since)
        command = Command.begin(
            market.pk,
            look=look,
            taker=(user.pk, market.base_id, market.quote_id) if look else None,
            new_order=True,
            breaker_since=since if remembered is auction.UNREAD else None,
            trader=(user.pk, adds),
        )
    except Market.DoesNotExist:  # gone since this process last read it
        forget_markets()
        raise InvalidInput(f"There is no market {request.market.symbol[:24]!r}.", field="symbol") from None
    if remembered is not auction.UNREAD:
        command.breaker_reference = auction.breaker_reference_of(command, since, lambda: remembered)
    market = command.market
    if market.status == Market.Status.HALTED:
        raise Conflict(f"{market.symbol} is halted: new orders are refused.", code=ErrorCode.MARKET_HALTED)
    if any(getattr(market, rule) != getattr(request.market, rule) for rule in MARKET_RULES):
        # The rules changed since the order was checked: check it against today's.
        order_validate(
            **{f.name: getattr(request, f.name) for f in fields(request) if f.name != "market"}, market=market
        )
    command.trader_check(adds=adds)
    # The price band (docs/API.md, "Market integrity"): a limit price within it; a market
    # order's size judged at its bound. A stop's prices are judged when it triggers.
    if request.type == OrderType.LIMIT and market.price_band is not None:
        price_band_check(command.band, request.price)
    elif request.type == OrderType.MARKET and market.max_order_notional is not None:
        market_order_size_check(market, command.band, request.side, request.quantity)
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
        stp=request.stp,
        expire_at=request.expire_at,
        # An iceberg shows its first slice once it rests (`matching`); nothing before.
        display_quantity=request.display_quantity,
        visible_quantity=None if request.display_quantity is None else money(ZERO),
        trailing_delta=request.trailing_delta,
        trailing_percent=request.trailing_percent,
        limit_offset=request.limit_offset,
        source=source,
        socket_id=socket_id,
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
        stops.accept(command, taker)
        return OrderResult(order=taker, fills=[], created=True)
    if market.in_auction:  # rests without matching, or is refused
        return OrderResult(order=taker, fills=auction.place(command, taker), created=True)
    fills = execute(command, taker, new=True)
    return OrderResult(order=taker, fills=fills, created=True, stops_due=command.stops_due)


# --- One of the user's orders, to cancel or amend -------------------------------------

_ORDER_OF_SQL = f"SELECT market_id, status FROM {Order._meta.db_table} WHERE id = %s AND user_id = %s"


def _order_of(user: User, order_id) -> tuple[int, str]:
    """(market id, status) of one of the user's orders, read without the book lock.

    Filled, cancelled, expired and rejected are final: an order read so here can never be
    open again, so its cancel or amend is refused at once (`refuse_done`), without the book
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


def _locked_order(command: Command, user: User, order_id: int) -> Order:
    found = select_models(Order, "id = %s AND user_id = %s AND market_id = %s", [order_id, user.pk, command.market.pk])
    if not found:
        raise NotFound("No such order.")
    order = found[0]
    order.market = command.market
    refuse_done(order.status)
    return order


# --- Cancel ---------------------------------------------------------------------------


def order_cancel(*, user: User, order_id: int) -> Order:
    """Cancel an open order and release what it holds. Works on halted markets too."""
    market_id, status = _order_of(user, order_id)
    refuse_done(status)
    order = _cancel(user, market_id, int(order_id))
    if log.isEnabledFor(logging.DEBUG):
        log.debug("order cancelled", extra=logs.order_of(order))
    return order


@book_command(lambda user, market_id, *rest: market_id)
def _cancel(user: User, market_id: int, order_id: int) -> Order:
    command = Command.begin(market_id)
    order = _locked_order(command, user, order_id)
    _cancel_one(command, order)
    if order.order_list_id:
        lists.leg_cancelled(command, order)  # one order of a list cancels the list
    command.lock_balances({user.pk})
    command.finish(None)
    return order


def _cancel_one(command: Command, order: Order) -> None:
    command.release(order, order.held)
    if order.status in OPEN_STATUSES:  # a pending stop is not in the book
        command.level_deltas[(order.side, order.price)] -= book_quantity(order)
    order.status = OrderStatus.CANCELLED
    order.updated_at = command.now
    command.changed_orders[order.pk] = order


def orders_cancel_all(*, user: User, market: Market | str | None = None, socket_id: int | None = None) -> list[Order]:
    """Cancel all of a user's open orders and pending stops, on one market or on all (one
    command per market); with `socket_id`, only those that cancel-on-disconnect socket
    placed (`orders.protection`)."""
    orders = Order.objects.active().filter(user=user)
    if market is not None:
        orders = orders.filter(market=resolve_market(market))
    if socket_id is not None:
        orders = orders.filter(socket_id=socket_id)
    cancelled = []
    for market_id in sorted(set(orders.values_list("market_id", flat=True))):
        cancelled += _cancel_all_in(user, market_id, socket_id)
    if log.isEnabledFor(logging.DEBUG):
        log.debug("orders cancelled: %d of user %s", len(cancelled), user.pk)
    return cancelled


@book_command(lambda user, market_id, *rest: market_id)
def _cancel_all_in(user: User, market_id: int, socket_id: int | None = None) -> list[Order]:
    command = Command.begin(market_id)
    orders = Order.objects.active().filter(user=user, market_id=market_id)
    if socket_id is not None:
        orders = orders.filter(socket_id=socket_id)
    orders = list(orders.order_by("id"))
    for order in orders:
        _cancel_one(command, order)
    command.lock_balances({user.pk})
    command.finish(None)
    return orders


# --- Amend ----------------------------------------------------------------------------


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
    new_price = amount(price, "price") if price is not None else None
    new_quantity = amount(quantity, "quantity") if quantity is not None else None
    new_stop_price = amount(stop_price, "stop_price") if stop_price is not None else None
    if new_price is not None:
        multiple_of(new_price, market.tick_size, "price", "tick size")
    if new_quantity is not None:
        multiple_of(new_quantity, market.lot_size, "quantity", "lot size")
    if new_stop_price is not None:
        multiple_of(new_stop_price, market.tick_size, "stop_price", "tick size")
    refuse_done(status)
    result = _amend(user, market_id, int(order_id), new_price, new_quantity, new_stop_price)
    if result.stops_due:
        _stops_due_run(market_id)
    if log.isEnabledFor(logging.DEBUG):
        log.debug(
            "order amended: %s, %d fills", result.order.status, len(result.fills), extra=logs.order_of(result.order)
        )
    return result


@book_command(lambda user, market_id, *rest: market_id)
def _amend(user, market_id, order_id, new_price, new_quantity, new_stop_price=None) -> OrderResult:
    command = Command.begin(market_id, trader=(user.pk, False))
    market = command.market
    order = _locked_order(command, user, order_id)
    if order.order_list_id:
        lists.refuse_amend(order)
    command.trader_check()
    if order.status == OrderStatus.PENDING:
        stops.amend(command, order, new_price, new_quantity, new_stop_price)
        return OrderResult(order=order, created=False)
    if new_stop_price is not None:
        if order.type in STOP_TYPES:
            raise Conflict(
                "The stop has triggered: its stop price can no longer change.",
                code=ErrorCode.STOP_TRIGGERED,
                field="stop_price",
            )
        raise InvalidInput("Only stop orders have a stop_price.", field="stop_price")
    price = new_price if new_price is not None else order.price
    quantity = new_quantity if new_quantity is not None else order.quantity
    remaining = amend_terms_check(market, order, price, quantity)
    if price == order.price and quantity == order.quantity:
        command.lock_balances({user.pk})
        command.finish(None)
        return OrderResult(order=order, created=False)

    command.level_deltas[(order.side, order.price)] -= book_quantity(order)
    if price == order.price and quantity < order.quantity:
        # Smaller, same price: keeps its priority; the hold shrinks to match (and an
        # iceberg's shown slice, to at most what remains).
        order.quantity, order.remaining_quantity = quantity, remaining
        if order.visible_quantity is not None:
            order.visible_quantity = min(order.visible_quantity, remaining)
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
        command.level_deltas[(order.side, price)] += book_quantity(order)
        order.updated_at = command.now
        command.changed_orders[order.pk] = order
        command.lock_balances({user.pk})
        command.finish(None)
        return OrderResult(order=order, created=False)

    if market.status == Market.Status.HALTED:
        raise Conflict(
            f"{market.symbol} is halted: orders can be cancelled, not re-priced.", code=ErrorCode.MARKET_HALTED
        )
    if price != order.price and market.price_band is not None:
        price_band_check(command.band, price)
    # A new price or more quantity: back of the queue, and it may trade at once.
    order.price, order.quantity, order.remaining_quantity = price, quantity, remaining
    order.priority = command.priority
    if market.in_auction:  # re-rests without matching
        return OrderResult(order=order, fills=auction.rest(command, order), created=False)
    fills = execute(command, order, new=False)
    return OrderResult(order=order, fills=fills, created=False, stops_due=command.stops_due)


# --- Stops left for later -------------------------------------------------------------


def _stops_due_run(market_id: int) -> None:
    """Run the stops that earlier commands crossed but could not trigger within their bound,
    each command again bounded, until none is left (or the market halts)."""
    while _stops_due(market_id):
        pass


@book_command(lambda market_id: market_id)
def _stops_due(market_id: int) -> bool:
    """One command that triggers stops left for later; True if it left some again."""
    command = Command.begin(market_id)
    if not command.market.is_trading:
        return False
    for stop in stops.crossed(command, None, None):
        command.crossed_stops[stop.pk] = stop
    if not command.crossed_stops:
        return False
    command.finish(None)
    return command.stops_due
