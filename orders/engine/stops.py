"""Stop orders (docs/API.md, "Orders"): accepted as pending, off the book, holding what they
will need; triggered by the command whose trade reaches their stop price.

A pending stop is accepted (`accept`) and amended (`amend`) under the book lock like any
order, but never trades there. After a command writes its trades (`Command.flush`), it
looks for the pending stops their prices crossed (`crossed`), and once its own order is
written it triggers them, earliest accepted first (`run_crossed`): each is matched like
a new order (`matching.execute`), and its trades may cross more.

A trailing stop (`trailing_stop`) starts from the last trade (`_trailing_start`) and its
stop follows the best trade price since: the same look moves it, in the order the trades
were made (`crossed_and_moved`), and it triggers like any stop, as a market order or, with
a `limit_offset`, as a limit that far beyond its stop.
"""

import functools
from decimal import Decimal
from typing import TYPE_CHECKING

from django.db import connection

from marketdata.models import Market, Side, Trade
from quantumtrades.core.errors import Conflict, ErrorCode, InvalidInput
from quantumtrades.core.money import MONEY_MAX
from quantumtrades.core.sql import answer, models_of, select_models, send
from quantumtrades.core.sql import cursor as sql_cursor

from ..models import Order, OrderStatus, OrderType
from . import lists
from .matching import execute
from .rules import (
    insufficient,
    order_hold,
    stop_amend_terms_check,
    stop_market_buy_price,
    trailing_limit_price,
    trailing_stop_price,
)

if TYPE_CHECKING:
    from .command import Command

# The cascade bound: one command triggers at most this many stops, its own trades' and
# those of the stops it triggered. Stops crossed beyond it are marked triggered
# (`triggered_at`) but stay pending, and run in the commands that follow at once
# (`orders.services.orders._stops_due_run`), each bounded the same way, so no command holds the book
# lock for an unbounded time and no crossed stop is forgotten.
MAX_TRIGGERS_PER_COMMAND = 100


# --- A pending stop -------------------------------------------------------------------


def accept(command: "Command", order: Order) -> None:
    """Accept a stop order as pending: hold what it will need, keep it off the book (book lock held)."""
    market = command.market
    if order.type == OrderType.TRAILING_STOP:
        _trailing_start(market, order)
    else:
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
    if order.type == OrderType.TRAILING_STOP:
        raise InvalidInput(
            "A pending trailing stop follows the market and cannot be amended: cancel it and place a new one.",
            field="stop_price" if new_stop_price is not None else ("price" if new_price is not None else "quantity"),
        )
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


# --- Trailing stops -------------------------------------------------------------------


def _trailing_start(market: Market, order: Order) -> None:
    """A new trailing stop's first stop price, from the last trade (book lock held), and
    the price its hold is sized at; refused when the market never traded, or when its
    first stop, its limit or its notional would not make an order."""
    last = _last_price(market)
    if last is None:
        raise InvalidInput(
            f"{market.symbol} has not traded yet: a trailing stop follows the last trade price.", field="type"
        )
    distance = "trailing_delta" if order.trailing_delta is not None else "trailing_percent"
    stop = trailing_stop_price(order.side, last, order.trailing_delta, order.trailing_percent, market.tick_size)
    if stop <= 0 or stop == last or stop > MONEY_MAX:
        raise InvalidInput(
            f"With the last trade at {last.normalize():f}, this {distance} gives no stop price a tick or more "
            "away from it.",
            field=distance,
        )
    price = stop
    if order.limit_offset is not None:
        price = trailing_limit_price(order.side, stop, order.limit_offset)
        if price <= 0:
            raise InvalidInput(
                f"The limit would be {price.normalize():f}: limit_offset is larger than the stop price.",
                field="limit_offset",
            )
    order.trailing_reference, order.stop_price = last, stop
    if order.side == Side.BUY:
        order.trailing_hold_price = price if order.limit_offset is not None else stop_market_buy_price(market, stop)
    # Judged as the stop-limit or stop-market it would be now (`rules.stop_amend_terms_check`).
    kind = OrderType.STOP_LIMIT if order.limit_offset is not None else OrderType.STOP_MARKET
    stop_amend_terms_check(market, kind, price, stop, order.quantity)


def crossed_and_moved(command: "Command", low: Decimal, high: Decimal, first: str):
    """After a stage's trades (prices `low` to `high`, the taker on side `first`): move the
    pending trailing stops whose best trade price they improve on, and find the pending
    stops they crossed (`crossed`). Returns a function that reads (crossed, moved) once
    the pipeline it was sent in has its answers (`Command.flush`).

    A stage's trades are monotonic (a buy taker lifts asks upward, a sell taker hits bids
    downward), so the order they were made in is known without reading them one by one:
    the trailing stops on the taker's side met their best price first, so they move before
    the look for crossed stops; those on the other side met the prices that could cross them
    first, so they are judged at their old stop and move only if those did not cross them.
    On PostgreSQL the moves ride in the look's statement (data-modifying CTEs): the common
    order pays no statement for them."""
    market = command.market
    other = Side.SELL if first == Side.BUY else Side.BUY
    where, params, tail = _crossed_query(command, low, high)
    if connection.vendor != "postgresql":  # three statements, no round trip to save
        moved_first = _trailing_update(command, first, low, high, uncrossed=False)
        found = select_models(Order, where, params, tail=tail, later=True)
        moved_other = _trailing_update(command, other, low, high, uncrossed=True)

        def read_apart():
            return _on(market, found()), _on(market, moved_first() + moved_other())

        return read_apart
    columns = _order_columns(connection.vendor)
    table = connection.ops.quote_name(Order._meta.db_table)
    first_sql, first_params = _trailing_update_sql(command, first, low, high, uncrossed=False, returning=columns)
    other_sql, other_params = _trailing_update_sql(command, other, low, high, uncrossed=True, returning=columns)
    reached = f"(side = '{Side.BUY}' AND stop_price <= %s) OR (side = '{Side.SELL}' AND stop_price >= %s)"
    statement = send(
        f"WITH moved_first AS ({first_sql}), moved_other AS ({other_sql}), "
        f"found AS (SELECT {columns} FROM {table} WHERE {where} AND id NOT IN (SELECT id FROM moved_first) "
        f"UNION ALL SELECT {columns} FROM moved_first WHERE {reached} {tail}) "
        f"SELECT true, {columns} FROM found "
        f"UNION ALL SELECT false, {columns} FROM moved_first WHERE NOT ({reached}) "
        f"UNION ALL SELECT false, {columns} FROM moved_other",
        [*first_params, *other_params, *params, high, low, high, low],
    )

    def read():
        rows = answer(statement)
        found = models_of(Order, [row[1:] for row in rows if row[0]])
        moved = models_of(Order, [row[1:] for row in rows if not row[0]])
        return _on(market, found), _on(market, moved)

    return read


@functools.cache
def _order_columns(vendor: str) -> str:
    """An order's columns, quoted, as the trailing stops' statements return them: built once
    per database vendor, not per command (the profile of a command that trades showed the
    quoting of every column, twice, among its costs)."""
    return ", ".join(connection.ops.quote_name(field.column) for field in Order._meta.concrete_fields)


def _on(market: Market, orders: list[Order]) -> list[Order]:
    for order in orders:
        order.market = market  # saves a query per order when events render it
    return orders


def _trailing_update_sql(command: "Command", side: str, low, high, *, uncrossed: bool, returning: str):
    """(UPDATE, parameters) that moves the pending trailing stops on `side` whose best
    trade price `low` (buys) or `high` (sells) improves on; with `uncrossed`, only those the
    same trades did not reach. The stop by `rules.trailing_stop_price`'s rule: PostgreSQL's
    numeric is exact, SQLite's decimals are floats, so it gets the rule as a function."""
    market = command.market
    extreme = high if side == Side.SELL else low
    if connection.vendor == "postgresql":
        sign, rounding, bound = ("-", "CEIL", "LEAST") if side == Side.SELL else ("+", "FLOOR", "GREATEST")
        stop = (
            f"CASE WHEN trailing_delta IS NOT NULL THEN %s::numeric {sign} trailing_delta "
            f"ELSE {bound}({rounding}(%s::numeric * (100 {sign} trailing_percent) / 100 / %s::numeric) * %s::numeric, "
            f"%s::numeric {sign} %s::numeric) END"
        )
        tick = market.tick_size
        stop_params = [extreme, extreme, tick, tick, extreme, tick]
    else:
        stop = "qt_trailing_stop(%s, %s, trailing_delta, trailing_percent, %s)"
        stop_params = [side, str(extreme), str(market.tick_size)]
    worse = "<" if side == Side.SELL else ">"  # the reference the extreme improves on
    # Literals for the side, status and type, as in `crossed`: the partial index
    # order_trailing_stops serves a generic plan.
    where = (
        f"market_id = %s AND side = '{Side(side)}' AND status = '{OrderStatus.PENDING}' "
        f"AND type = '{OrderType.TRAILING_STOP}' AND triggered_at IS NULL AND trailing_reference {worse} %s"
    )
    params = [market.pk, extreme]
    if uncrossed:
        where += " AND stop_price < %s" if side == Side.SELL else " AND stop_price > %s"
        params.append(low if side == Side.SELL else high)
    table = connection.ops.quote_name(Order._meta.db_table)
    sql = f"UPDATE {table} SET trailing_reference = %s, stop_price = {stop}, updated_at = %s WHERE {where} RETURNING {returning}"
    return sql, [extreme, *stop_params, command.now, *params]


def _trailing_update(command: "Command", side: str, low, high, *, uncrossed: bool):
    """`_trailing_update_sql` sent on its own; a function that reads the moved orders."""
    columns = _order_columns(connection.vendor)
    sql, params = _trailing_update_sql(command, side, low, high, uncrossed=uncrossed, returning=columns)
    statement = send(sql, params)
    return lambda: models_of(Order, answer(statement))


def sqlite_trailing_stop(side, reference, delta, percent, tick):
    """`trailing_stop_price` for SQLite's UPDATE, on its floats read back as the decimals they spell."""

    def decimal(value):
        return None if value is None else Decimal(str(value))

    return str(trailing_stop_price(side, decimal(reference), decimal(delta), decimal(percent), decimal(tick)))


def _last_price(market: Market) -> Decimal | None:
    """The price of the market's last trade (book lock held, so it is the last one)."""
    found = select_models(Trade, "market_id = %s", [market.pk], tail="ORDER BY id DESC LIMIT 1")
    return found[0].price if found else None


# --- Triggering -----------------------------------------------------------------------


def crossed(command: "Command", low: Decimal | None, high: Decimal | None, *, later: bool = False):
    """Pending stops that trades between `low` and `high` crossed, and those marked
    triggered that an earlier command left for later, in the order they were accepted
    (at most as many as the command may still trigger). `later` as for `select_models`."""
    where, params, tail = _crossed_query(command, low, high)
    rows = select_models(Order, where, params, tail=tail, later=True)

    def read() -> list[Order]:
        found = rows()
        for order in found:
            order.market = command.market
        return found

    return read if later else read()


def _crossed_query(command: "Command", low: Decimal | None, high: Decimal | None) -> tuple[str, list, str]:
    """(WHERE, parameters, ORDER BY and LIMIT) of `crossed`'s look."""
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
    return where + ")", params, f"ORDER BY priority LIMIT {limit}"


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
        if stop.limit_offset is not None:  # a trailing stop triggers as a limit beyond its stop
            limit = trailing_limit_price(stop.side, stop.stop_price, stop.limit_offset)
            stop.price = max(limit, command.market.tick_size)  # a sell's limit never below one tick
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
