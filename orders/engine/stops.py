"""Stop orders (docs/API.md, "Orders"): accepted as pending, off the book, holding what they
will need; triggered by the command whose trade reaches their stop price.

A pending stop is accepted (`accept`) and amended (`amend`) under the book lock like any
order, but never trades there. After a command writes its trades (`Command.flush`), it
looks for the pending stops their prices crossed (`crossed`), and once its own order is
written it triggers them, earliest accepted first (`run_crossed`): each is matched like
a new order (`matching.execute`), and its trades may cross more.
"""

from decimal import Decimal
from typing import TYPE_CHECKING

from marketdata.models import Market, Side, Trade
from quantumtrades.core.errors import Conflict, ErrorCode, InvalidInput
from quantumtrades.core.sql import cursor as sql_cursor
from quantumtrades.core.sql import select_models

from ..models import Order, OrderStatus, OrderType
from . import lists
from .matching import execute
from .rules import insufficient, order_hold, stop_amend_terms_check

if TYPE_CHECKING:
    from .command import Command

# The cascade bound: one command triggers at most this many stops, its own trades' and
# those of the stops it triggered. Stops crossed beyond it are marked triggered
# (`triggered_at`) but stay pending, and run in the commands that follow at once
# (`orders.services._stops_due`), each bounded the same way, so no command holds the book
# lock for an unbounded time and no crossed stop is forgotten.
MAX_TRIGGERS_PER_COMMAND = 100


# --- A pending stop -------------------------------------------------------------------


def accept(command: "Command", order: Order) -> None:
    """Accept a stop order as pending: hold what it will need, keep it off the book (book lock held)."""
    market = command.market
    _refuse_crossed_stop(market, order.side, order.stop_price)
    balances = command.lock_balances({order.user_id})
    asset = market.quote_id if order.side == Side.BUY else market.base_id
    order.status = OrderStatus.PENDING
    needed = order_hold(order)
    available = balances[(order.user_id, asset)].available
    if available < needed:
        raise insufficient(asset, needed, available)
    command.hold(order, needed)
    command.finish(order)


def amend(command: "Command", order: Order, new_price, new_quantity, new_stop_price) -> None:
    """Amend a pending stop (book lock held): it stays pending, off the book, so nothing
    trades; its hold follows the new terms, and it is checked as a new stop would be."""
    market = command.market
    if order.type == OrderType.STOP_MARKET and new_price is not None:
        raise InvalidInput("A stop-market order takes no price.", field="price")
    price = new_price if new_price is not None else order.price
    quantity = new_quantity if new_quantity is not None else order.quantity
    stop_price = new_stop_price if new_stop_price is not None else order.stop_price
    keeps_place = price == order.price and stop_price == order.stop_price and quantity <= order.quantity
    if not keeps_place and market.status == Market.Status.HALTED:
        raise Conflict(
            f"{market.symbol} is halted: orders can be cancelled, not re-priced.", code=ErrorCode.MARKET_HALTED
        )
    stop_amend_terms_check(market, order.type, price, stop_price, quantity)
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
            raise insufficient(asset, needed, available)
        if needed > order.held:
            command.hold(order, needed - order.held)
        else:
            command.release(order, order.held - needed)
        if not keeps_place:
            order.priority = command.priority
        order.updated_at = command.now
        command.changed_orders[order.pk] = order
    command.finish(None)


def _refuse_crossed_stop(market: Market, side: str, stop_price: Decimal) -> None:
    """A stop that the last trade already reached would trigger at once: refuse it, so the
    trader places the limit or market order they mean instead (docs/API.md, "Orders")."""
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


def _last_price(market: Market) -> Decimal | None:
    """The price of the market's last trade (book lock held, so it is the last one)."""
    found = select_models(Trade, "market_id = %s", [market.pk], tail="ORDER BY id DESC LIMIT 1")
    return found[0].price if found else None


# --- Triggering -----------------------------------------------------------------------


def crossed(command: "Command", low: Decimal | None, high: Decimal | None, *, later: bool = False):
    """Pending stops that trades between `low` and `high` crossed, and those marked
    triggered that an earlier command left for later, in the order they were accepted
    (at most as many as the command may still trigger). `later` as for `select_models`."""
    if low is not None:
        command.traded_low = low if command.traded_low is None else min(low, command.traded_low)
        command.traded_high = high if command.traded_high is None else max(high, command.traded_high)
    # Literals, not parameters, for the status and sides: a prepared statement's generic
    # plan can then still use the partial indexes order_pending_stops and order_due_stops.
    where = f"market_id = %s AND status = '{OrderStatus.PENDING}' AND (triggered_at IS NOT NULL"
    params = [command.market.pk]
    if low is not None:
        where += f" OR (side = '{Side.BUY}' AND stop_price <= %s) OR (side = '{Side.SELL}' AND stop_price >= %s)"
        params += [high, low]
    limit = MAX_TRIGGERS_PER_COMMAND - command.triggered + 1
    rows = select_models(Order, where + ")", params, tail=f"ORDER BY priority LIMIT {limit}", later=True)

    def read() -> list[Order]:
        found = rows()
        for order in found:
            order.market = command.market
        return found

    return read if later else read()


def run_crossed(command: "Command") -> None:
    """Trigger the stops the command's trades crossed, in the order they were accepted;
    their own trades may cross more (a cascade, MAX_TRIGGERS_PER_COMMAND at most)."""
    crossed_stops = command.crossed_stops
    while crossed_stops:
        stop_id = min(crossed_stops, key=lambda pk: crossed_stops[pk].priority)
        if command.market.in_auction:
            # The circuit breaker stopped the command (or a stop it triggered): the rest
            # wait for the uncross, which runs every stop left marked triggered (`auction`).
            _defer(command)
            return
        if command.triggered == MAX_TRIGGERS_PER_COMMAND:
            _defer(command)
            return
        stop = crossed_stops.pop(stop_id)
        if stop.expire_at is not None and stop.expire_at <= command.now:
            _expire_due(command, stop)
            continue
        if stop.order_list_id and (stop := lists.triggered(command, stop)) is None:
            continue  # its list-mate acted first, in this command
        command.triggered += 1
        stop.triggered_at = command.now
        stop.priority = command.next_priority()
        execute(command, stop, new=False, triggered=True)
        lists.exits_place(command, execute)  # a bracket's entry it filled


def _expire_due(command: "Command", stop: Order) -> None:
    """A GTD stop crossed after its expire_at, before the expiry job got to it: it expires
    instead of triggering, its hold released (`orders.expiry`)."""
    command.lock_balances({stop.user_id})
    command.release(stop, stop.held)
    stop.status = OrderStatus.EXPIRED
    stop.updated_at = command.now
    command.changed_orders[stop.pk] = stop
    command.flush(None)


def _defer(command: "Command") -> None:
    """Mark every stop the command's trades crossed and that it could not trigger: they
    stay pending, marked triggered, and the next command on the market runs them first."""
    with sql_cursor() as statement:
        statement.execute(
            f"UPDATE {Order._meta.db_table} SET triggered_at = %s WHERE market_id = %s "
            f"AND status = '{OrderStatus.PENDING}' AND triggered_at IS NULL "
            f"AND ((side = '{Side.BUY}' AND stop_price <= %s) OR (side = '{Side.SELL}' AND stop_price >= %s))",
            [command.now, command.market.pk, command.traded_high, command.traded_low],
        )
    command.crossed_stops.clear()
    command.stops_due = True
