"""Order lists (docs/API.md, "Order lists"): orders linked so that what happens to one acts
on the others (book lock held throughout).

An OCO is a limit order in the book and a stop waiting off it, on one side, for one
quantity. Only one of them will ever act, so they share one hold (`rules.list_holds`):
while both wait, the limit holds the larger of the two needs and the stop nothing. The
first to act takes the list:

- a fill of the limit, even a partial one, cancels the stop (`filled`); the stop held
  nothing, and the limit's hold shrinks to its own need with the fill (`matching._trade`
  recomputes a maker's hold from what remains, releasing the rest);
- the stop's trigger cancels the limit, releasing its hold, and holds the stop's own need
  in the same stage, before the stop trades as it would alone (`triggered`);
- a cancel of either, by its owner or by self-trade prevention, cancels the other
  (`leg_cancelled`).

A bracket is an entry (a buy limit order) whose fills place an OCO of exits on the other
side: a take-profit (a limit) and a stop-loss (a stop), for the quantity filled, holding
the base the fills delivered. Each fill of the entry is noted (`filled`); once the stage
that made it is written, the exits are placed, or grown by the fill (`exits_place`), in
the same command. An exit acting closes the bracket: besides its pair, the entry's
unfilled rest is cancelled, so no position opens without its exits. The entry's own
cancel cancels only the entry: exits placed for its fills stay.

The hooks are called from `matching`, `stops`, `auction` and `orders.services` only for an
order whose `order_list_id` is set; `exits_place` and `settle` from `Command.finish` (and
`stops`, after each triggered stop), doing nothing unless a listed order filled or changed. An order's list-mates are read under the book lock in
one query (index order_list_orders) the first time the command needs them. The command
may hold a fresher copy of one of them than the database (changed in the stage, not yet
written): the latest copy is the one in `Command.changed_orders`, else `written_orders`.
At the end of a command a list none of whose orders is still active is done (`settle`).
"""

from decimal import Decimal
from typing import TYPE_CHECKING

from django.db.models import Max, Min, Q

from accounts.models import User
from marketdata.models import BookLevel, Side
from quantumtrades.core.errors import InvalidInput
from quantumtrades.core.money import ZERO, money
from quantumtrades.core.sql import allocate_ids, select_models
from quantumtrades.core.sql import cursor as sql_cursor

from ..models import (
    ACTIVE_STATUSES,
    OPEN_STATUSES,
    Leg,
    Order,
    OrderList,
    OrderSource,
    OrderStatus,
    OrderType,
    TimeInForce,
)
from .rules import LIST_PAIRS, OrderRequest, hold_for, insufficient, order_hold, stop_hold_for

if TYPE_CHECKING:
    from .command import Command

_STOP_OF = LIST_PAIRS
_BOOK_LEG_OF = {stop: book for book, stop in LIST_PAIRS.items()}
_ACTIVE_SQL = "status IN (" + ", ".join(f"'{status}'" for status in ACTIVE_STATUSES) + ")"


# --- Placing an OCO -------------------------------------------------------------------


def oco_orders(command: "Command", user: User, limit: OrderRequest, stop: OrderRequest, source: str, socket_id):
    """Check an OCO against the market and the trader's funds, write its list and its
    pending stop, and return (the list, the limit order still to be matched, the stop).

    The caller matches the limit (`matching.execute`), which finishes the command; the
    stop, written first, is already the limit's list-mate when the limit trades or rests.
    """
    market = command.market
    oco_prices_check(command, limit.side, limit.price, stop.stop_price)
    asset = market.quote_id if limit.side == Side.BUY else market.base_id
    need = max(
        hold_for(market=market, side=limit.side, price=limit.price, quantity=limit.quantity),
        stop_hold_for(
            market=market,
            side=stop.side,
            type=stop.type,
            price=stop.price,
            stop_price=stop.stop_price,
            quantity=stop.quantity,
        ),
    )
    available = command.lock_balances({user.pk})[(user.pk, asset)].available
    if available < need:
        raise insufficient(asset, need, available)
    order_list = OrderList.objects.create(user=user, market=market, kind=OrderList.Kind.OCO)
    stop_order = _order(command, user, stop, order_list, Leg.STOP, (source, socket_id), command.new_order_id)
    stop_order.status = OrderStatus.PENDING  # its priority among the stops: the limit's, the command's own
    command.flush(stop_order)  # written, holding nothing: the limit holds for both
    [limit_id] = allocate_ids({Order: 1})[Order]
    limit_order = _order(command, user, limit, order_list, Leg.LIMIT, (source, socket_id), limit_id)
    _mates(command, order_list.pk)[:] = [limit_order, stop_order]
    return order_list, limit_order, stop_order


def oco_prices_check(command: "Command", side: str, price: Decimal, stop_price: Decimal) -> None:
    """Neither order of an OCO may act at once: a sell needs stop_price < last trade < price,
    a buy price < last trade < stop_price (as the venues judge it). A market that never
    traded is judged by the middle of its book, and without one the OCO is refused."""
    last = command.market.last_price
    if last is None:
        last = _book_middle(command.market.pk)
    if last is None:
        raise InvalidInput(
            "This market has no last trade and no two-sided book to judge an OCO's prices by: "
            "place its orders one by one.",
            field="price",
        )
    shown = f"{last.normalize():f}"
    if side == Side.SELL:
        if price <= last:
            raise InvalidInput(f"A sell OCO's price must be above the last trade price, {shown}.", field="price")
        if stop_price >= last:
            raise InvalidInput(
                f"A sell OCO's stop_price must be below the last trade price, {shown}.", field="stop_price"
            )
    else:
        if price >= last:
            raise InvalidInput(f"A buy OCO's price must be below the last trade price, {shown}.", field="price")
        if stop_price <= last:
            raise InvalidInput(
                f"A buy OCO's stop_price must be above the last trade price, {shown}.", field="stop_price"
            )


def _order(command: "Command", user: User, request: OrderRequest, order_list, leg: str, origin, pk: int) -> Order:
    """A new order of the list; `origin` is (source, socket_id), as for `order_place`."""
    source, socket_id = origin
    return Order(
        id=pk,
        user=user,
        market=command.market,
        client_order_id=request.client_order_id,
        side=request.side,
        type=request.type,
        time_in_force=request.time_in_force,
        price=request.price,
        stop_price=request.stop_price,
        source=source,
        socket_id=socket_id,
        quantity=request.quantity,
        remaining_quantity=request.quantity,
        filled_quantity=money(ZERO),
        filled_notional=money(ZERO),
        held=money(ZERO),
        status=OrderStatus.OPEN,
        priority=command.priority,
        order_list=order_list,
        leg=leg,
    )


def _book_middle(market_id: int) -> Decimal | None:
    best = BookLevel.objects.filter(market_id=market_id, quantity__gt=0).aggregate(
        bid=Max("price", filter=Q(side=Side.BUY)), ask=Min("price", filter=Q(side=Side.SELL))
    )
    if best["bid"] is None or best["ask"] is None:
        return None
    return money((best["bid"] + best["ask"]) / 2)


# --- The hooks ------------------------------------------------------------------------


def _mates(command: "Command", list_id: int) -> list[Order]:
    """The orders of a list as this command knows them (read once, under the book lock)."""
    known = command.__dict__.setdefault("order_lists", {})
    if list_id not in known:
        found = select_models(Order, "list_id = %s", [list_id], tail="ORDER BY id")
        for order in found:
            order.market = command.market
        known[list_id] = found
    return known[list_id]


def _latest(command: "Command", order: Order) -> Order:
    return command.changed_orders.get(order.pk) or command.written_orders.get(order.pk) or order


def _mate(command: "Command", order: Order, leg: str) -> Order | None:
    """`order`'s list-mate in `leg`, its latest copy (None if the list has none)."""
    for mate in _mates(command, order.order_list_id):
        if mate.leg == leg and mate.pk != order.pk:
            return _latest(command, mate)
    return None


def filled(command: "Command", order: Order, quantity: Decimal) -> None:
    """A listed order traded `quantity` (its fill is applied): a limit's fill cancels its
    stop (and a take-profit's, the bracket's entry); an entry's fill is noted, for its
    exits to be placed once the stage is written (`exits_place`)."""
    if order.leg == Leg.ENTRY:
        due = command.__dict__.setdefault("exits_due", {})
        entry, filled_before = due.get(order.order_list_id, (order, ZERO))
        due[order.order_list_id] = (order, filled_before + quantity)
        return
    stop_leg = _STOP_OF.get(order.leg)
    if stop_leg is not None:
        stop = _mate(command, order, stop_leg)
        if stop is not None and stop.status == OrderStatus.PENDING:
            _cancel(command, stop)
        if order.leg == Leg.TAKE_PROFIT:
            _entry_close(command, order)


def rested(command: "Command", order: Order) -> None:
    """A listed order entered the book holding its own need: while its stop waits, it
    holds the pair's need (`rules.list_holds`)."""
    stop_leg = _STOP_OF.get(order.leg)
    if stop_leg is None or order.status not in OPEN_STATUSES:
        return
    stop = _mate(command, order, stop_leg)
    if stop is not None and stop.status == OrderStatus.PENDING:
        extra = order_hold(stop) - order.held
        if extra > 0:
            command.hold(order, extra)


def triggered(command: "Command", stop: Order) -> Order | None:
    """A listed stop is about to trigger: its limit is cancelled and the hold moves to the
    stop. Returns the stop's latest copy, or None when its list-mate acted first in this
    command (the stop was then cancelled) and it must not trigger."""
    stop = _latest(command, stop)
    if stop.status != OrderStatus.PENDING:
        return None
    book_leg = _BOOK_LEG_OF.get(stop.leg)
    if book_leg is not None:
        in_book = _mate(command, stop, book_leg)
        if in_book is not None and in_book.status in ACTIVE_STATUSES:
            _cancel(command, in_book)
    if stop.leg == Leg.STOP_LOSS:
        _entry_close(command, stop)
    command.lock_balances({stop.user_id})
    command.hold(stop, order_hold(stop) - stop.held)
    return stop


def leg_cancelled(command: "Command", order: Order) -> None:
    """An order of a list was cancelled (by its owner, or by self-trade prevention): the
    rest of its list goes with it, except for a bracket's entry, whose exits stay."""
    if order.leg == Leg.ENTRY:
        return
    for mate in _mates(command, order.order_list_id):
        mate = _latest(command, mate)
        if mate.pk != order.pk and mate.status in ACTIVE_STATUSES:
            _cancel(command, mate)


def _entry_close(command: "Command", exit_order: Order) -> None:
    """An exit of a bracket acted: the entry's unfilled rest is cancelled."""
    entry = _mate(command, exit_order, Leg.ENTRY)
    if entry is not None and entry.status in ACTIVE_STATUSES:
        _cancel(command, entry)


def _cancel(command: "Command", order: Order) -> None:
    """Cancel a list-mate: its hold released, its level reduced if it is in the book."""
    if order.held:
        command.release(order, order.held)
    if order.status in OPEN_STATUSES:
        command.level_deltas[(order.side, order.price)] -= order.remaining_quantity
    order.status = OrderStatus.CANCELLED
    order.updated_at = command.now
    command.changed_orders[order.pk] = order
    command.crossed_stops.pop(order.pk, None)  # crossed by an earlier stage: it no longer triggers


def settle(command: "Command") -> None:
    """Mark done each list the command touched that has no active order left (after its
    last stage is written)."""
    touched = {order.order_list_id for order in command.written_orders.values() if order.order_list_id}
    if not touched:
        return
    lists, orders = OrderList._meta.db_table, Order._meta.db_table
    with sql_cursor() as statement:
        statement.execute(
            f"UPDATE {lists} SET status = '{OrderList.Status.DONE}', updated_at = %s "
            f"WHERE id IN ({', '.join(['%s'] * len(touched))}) AND status = '{OrderList.Status.ACTIVE}' "
            f"AND NOT EXISTS (SELECT 1 FROM {orders} o WHERE o.list_id = {lists}.id AND o.{_ACTIVE_SQL})",
            [command.now, *sorted(touched)],
        )


# --- Brackets -------------------------------------------------------------------------


def bracket_orders(command: "Command", user: User, entry: OrderRequest, exits: tuple, origin) -> tuple:
    """Check a bracket's exits against its entry, write its list, and return (the list,
    the entry still to be matched). `exits` is (take_profit_price, stop_loss_stop_price,
    stop_loss_price); `origin` (source, socket_id). The caller matches the entry
    (`matching.execute`); its fills place the exits (`filled`, `exits_place`)."""
    take_profit_price, stop_loss_stop_price, stop_loss_price = exits
    order_list = OrderList.objects.create(
        user=user,
        market=command.market,
        kind=OrderList.Kind.BRACKET,
        take_profit_price=take_profit_price,
        stop_loss_stop_price=stop_loss_stop_price,
        stop_loss_price=stop_loss_price,
    )
    entry_order = _order(command, user, entry, order_list, Leg.ENTRY, origin, command.new_order_id)
    _mates(command, order_list.pk)[:] = [entry_order]
    command.__dict__.setdefault("list_rows", {})[order_list.pk] = order_list
    return order_list, entry_order


def exits_place(command: "Command", execute) -> None:
    """Place, or grow, the exits of each bracket whose entry the stage just written filled
    (book lock held; the stage's writes are done, the entry's fills delivered). `execute`
    is `matching.execute`, which matches a take-profit as it is placed."""
    due = command.__dict__.pop("exits_due", None)
    if not due:
        return
    for list_id, (entry, quantity) in sorted(due.items()):
        mates = {mate.leg: _latest(command, mate) for mate in _mates(command, list_id)}
        take_profit, stop_loss = mates.get(Leg.TAKE_PROFIT), mates.get(Leg.STOP_LOSS)
        if take_profit is None:
            _exits_new(command, entry, quantity, execute)
        elif take_profit.status in OPEN_STATUSES and stop_loss.status == OrderStatus.PENDING:
            _exits_grow(command, take_profit, stop_loss, quantity)


def orders_known(command: "Command", list_id: int) -> list[Order]:
    """The list's orders as the command left them (latest copies), oldest first."""
    return sorted((_latest(command, mate) for mate in _mates(command, list_id)), key=lambda order: order.pk)


def _list_row(command: "Command", list_id: int) -> OrderList:
    rows = command.__dict__.setdefault("list_rows", {})
    if list_id not in rows:
        rows[list_id] = OrderList.objects.get(pk=list_id)
    return rows[list_id]


def _exits_new(command: "Command", entry: Order, quantity: Decimal, execute) -> None:
    """The first fill of an entry: its stop-loss, pending and holding nothing, then its
    take-profit, which trades at once if the market is already past its price, and holds
    the base the fill delivered. A stop-loss the last trade already reached triggers."""
    order_list = _list_row(command, entry.order_list_id)
    take_profit_id, stop_loss_id = allocate_ids({Order: 2})[Order]
    side = Side.SELL if entry.side == Side.BUY else Side.BUY
    stop_loss = _exit(command, entry, stop_loss_id, Leg.STOP_LOSS, side, quantity)
    stop_loss.type = OrderType.STOP_LIMIT if order_list.stop_loss_price is not None else OrderType.STOP_MARKET
    stop_loss.time_in_force = TimeInForce.GTC if order_list.stop_loss_price is not None else TimeInForce.IOC
    stop_loss.price, stop_loss.stop_price = order_list.stop_loss_price, order_list.stop_loss_stop_price
    stop_loss.status = OrderStatus.PENDING
    take_profit = _exit(command, entry, take_profit_id, Leg.TAKE_PROFIT, side, quantity)
    take_profit.price = order_list.take_profit_price
    _mates(command, entry.order_list_id)[:] = [entry, take_profit, stop_loss]
    command.flush(stop_loss)  # written first: the take-profit's list-mate when it trades or rests
    execute(command, take_profit, new=False, triggered=True)
    last = command.written_trades[-1].price if command.written_trades else command.market.last_price
    if stop_loss.status == OrderStatus.PENDING and last is not None and _reached(stop_loss, last):
        command.crossed_stops.setdefault(stop_loss.pk, stop_loss)


def _exit(command: "Command", entry: Order, pk: int, leg: str, side: str, quantity: Decimal) -> Order:
    return Order(
        id=pk,
        user_id=entry.user_id,
        market=command.market,
        side=side,
        type=OrderType.LIMIT,
        time_in_force=TimeInForce.GTC,
        source=OrderSource.SYSTEM,
        socket_id=entry.socket_id,
        quantity=quantity,
        remaining_quantity=quantity,
        filled_quantity=money(ZERO),
        filled_notional=money(ZERO),
        held=money(ZERO),
        status=OrderStatus.OPEN,
        priority=command.next_priority(),
        order_list_id=entry.order_list_id,
        leg=leg,
    )


def _reached(stop: Order, last: Decimal) -> bool:
    return last >= stop.stop_price if stop.side == Side.BUY else last <= stop.stop_price


def _exits_grow(command: "Command", take_profit: Order, stop_loss: Order, quantity: Decimal) -> None:
    """A further fill of the entry: both exits grow by it, the take-profit to the back of
    its price level (more quantity takes a new time priority, as any order's would), and
    the pair's one hold by what the fill delivered."""
    command.lock_balances({take_profit.user_id})
    for order in (take_profit, stop_loss):
        order.quantity += quantity
        order.remaining_quantity += quantity
        order.updated_at = command.now
        command.changed_orders[order.pk] = order
    command.level_deltas[(take_profit.side, take_profit.price)] += quantity
    take_profit.priority = command.next_priority()
    need = max(order_hold(take_profit), order_hold(stop_loss))
    command.hold(take_profit, need - take_profit.held)
    command.flush(None)


def refuse_amend(order: Order) -> None:
    """The orders of a list share a hold and act on each other: they are not amended."""
    raise InvalidInput(
        "An order of a list (OCO or bracket) cannot be amended: cancel the list and place it again.", field="id"
    )
