"""Order lists: place an OCO or a bracket, cancel a list.

A list is placed as one command that writes several orders (`engine.lists` writes them
and keeps the pair's rules as they fill, trigger or are cancelled); placing one checks
what a single order's placing does not (the legs' prices against each other, a market in
an auction), answers a repeated client_order_id with the whole list, and names the
refusals' fields as the list's body does. That is why lists have their own module; what
they share with a single order (cancelling one under the lock, the stops left for later)
comes from `orders`.
"""

from dataclasses import dataclass, field, fields

from django.db import IntegrityError

from accounts.models import User
from marketdata.models import Market, Side
from quantumtrades.core.errors import Conflict, ErrorCode, InvalidInput, NotFound, ServiceError

from ..engine import lists
from ..engine.caches import forget_markets, resolve_market
from ..engine.command import Command
from ..engine.matching import execute
from ..engine.rules import MARKET_RULES, OrderRequest, amount, order_validate, price_band_check
from ..engine.transactions import book_command
from ..models import MAX_ID, Fill, Order, OrderList, OrderSource, OrderType
from .orders import _cancel_one, _stops_due_run


@dataclass
class OrderListResult:
    order_list: OrderList
    orders: list[Order]
    # What the command traded at once, oldest first.
    fills: list[Fill] = field(default_factory=list)
    created: bool = True


def oco_place(
    *,
    user: User,
    market: Market | str,
    side,
    quantity,
    price,
    stop_price,
    stop_limit_price=None,
    client_order_id=None,
    source=OrderSource.SYSTEM,
    socket_id=None,
) -> OrderListResult:
    """Place an OCO: a limit order at `price` and, on the same side and for the same
    quantity, a stop at `stop_price` (a stop-limit at `stop_limit_price`, else a
    stop-market), one hold for both; the first to act cancels the other (`engine.lists`).

    A repeated client_order_id (it names the limit order) returns the original list.
    `source` and `socket_id` as for `order_place`.
    """
    market = resolve_market(market)
    limit = order_validate(market=market, side=side, quantity=quantity, price=price, client_order_id=client_order_id)
    try:
        stop = order_validate(
            market=market,
            side=side,
            type=OrderType.STOP_LIMIT if stop_limit_price is not None else OrderType.STOP_MARKET,
            quantity=quantity,
            price=stop_limit_price,
            stop_price=stop_price,
        )
    except InvalidInput as exc:
        if exc.field == "price":  # the stop's limit price, named as the OCO names it
            exc.field = "stop_limit_price"
            exc.message = exc.message.replace("price", "stop_limit_price", 1)
        raise
    return _list_placed(user, market, client_order_id, lambda: _oco_place(user, limit, stop, source, socket_id))


def _list_placed(user: User, market: Market, client_order_id, place) -> OrderListResult:
    """Run a list's command (`place`), then the stops it left for later; a repeated
    client_order_id, caught as the command writes, answers the original list (as
    `order_place` answers the original order)."""
    try:
        result = place()
    except (IntegrityError, ServiceError):
        if client_order_id is not None:
            existing = _existing_list(user, client_order_id)
            if existing is not None:
                return existing
        raise
    if result.stops_due:
        _stops_due_run(market.pk)
    return OrderListResult(order_list=result.order_list, orders=result.orders, fills=result.fills)


@dataclass
class _Placed:
    order_list: OrderList
    orders: list[Order]
    fills: list[Fill]
    stops_due: bool


@book_command(lambda user, limit, *rest: limit.market.pk)
def _oco_place(user: User, limit: OrderRequest, stop: OrderRequest, source: str, socket_id: int | None) -> _Placed:
    command = _list_command(user, limit)
    market = command.market
    if any(getattr(market, rule) != getattr(stop.market, rule) for rule in MARKET_RULES):
        order_validate(**{f.name: getattr(stop, f.name) for f in fields(stop) if f.name != "market"}, market=market)
    order_list, limit_order, stop_order = lists.oco_orders(command, user, limit, stop, source, socket_id)
    fills = execute(command, limit_order, new=True)
    return _Placed(order_list, [limit_order, stop_order], fills, command.stops_due)


def bracket_place(
    *,
    user: User,
    market: Market | str,
    side,
    quantity,
    price,
    time_in_force=None,
    take_profit_price,
    stop_loss_stop_price,
    stop_loss_price=None,
    client_order_id=None,
    source=OrderSource.SYSTEM,
    socket_id=None,
) -> OrderListResult:
    """Place a bracket: an entry (a limit buy) whose fills place an OCO of exits on the
    other side, for the quantity filled: a take-profit at `take_profit_price` and a
    stop-loss at `stop_loss_stop_price` (a stop-limit at `stop_loss_price`, else a
    stop-market), in the same command as each fill (`engine.lists`).

    The exits must lie on either side of the entry: take_profit_price > price >
    stop_loss_stop_price. A repeated client_order_id (it names the entry) returns the
    original list. `source` and `socket_id` as for `order_place`.
    """
    market = resolve_market(market)
    with _fields_named("entry."):
        entry = order_validate(
            market=market,
            side=side,
            quantity=quantity,
            price=price,
            time_in_force=time_in_force,
            client_order_id=client_order_id,
        )
    if entry.side != Side.BUY:
        raise InvalidInput(
            "A bracket's entry is a buy: its exits sell what it bought. To protect a sale, place an OCO.",
            field="entry.side",
        )
    with _fields_named("take_profit."):
        order_validate(market=market, side=Side.SELL, quantity=entry.quantity, price=take_profit_price)
    with _fields_named("stop_loss."):
        stop_loss = order_validate(
            market=market,
            side=Side.SELL,
            type=OrderType.STOP_LIMIT if stop_loss_price is not None else OrderType.STOP_MARKET,
            quantity=entry.quantity,
            price=stop_loss_price,
            stop_price=stop_loss_stop_price,
        )
    take_profit_price = amount(take_profit_price, "take_profit.price")
    if not take_profit_price > entry.price:
        raise InvalidInput("The take-profit's price must be above the entry's price.", field="take_profit.price")
    if not stop_loss.stop_price < entry.price:
        raise InvalidInput("The stop-loss's stop_price must be below the entry's price.", field="stop_loss.stop_price")
    exits = (take_profit_price, stop_loss.stop_price, stop_loss.price)
    return _list_placed(user, market, client_order_id, lambda: _bracket_place(user, entry, exits, source, socket_id))


class _fields_named:
    """Name the fields of the refusals raised inside it as the bracket's body does
    (`entry.price`, `take_profit.price`, `stop_loss.stop_price`)."""

    def __init__(self, prefix: str):
        self.prefix = prefix

    def __enter__(self):
        return self

    def __exit__(self, kind, error, traceback):
        if isinstance(error, ServiceError) and error.field and "." not in error.field:
            error.field = self.prefix + error.field
        return False


@book_command(lambda user, entry, *rest: entry.market.pk)
def _bracket_place(user: User, entry: OrderRequest, exits: tuple, source: str, socket_id: int | None) -> _Placed:
    command = _list_command(user, entry)
    order_list, entry_order = lists.bracket_orders(command, user, entry, exits, (source, socket_id))
    fills = execute(command, entry_order, new=True)
    orders = list(lists.orders_known(command, order_list.pk))
    return _Placed(order_list, orders, fills, command.stops_due)


def _list_command(user: User, request: OrderRequest) -> Command:
    """The command of a new list whose first order is `request`: the book lock with the
    look, balances and id of a new order, and the checks of `_place`."""
    market = request.market
    opposite = Side.SELL if request.side == Side.BUY else Side.BUY
    try:
        command = Command.begin(
            market.pk,
            look=(opposite, request.price),
            taker=(user.pk, market.base_id, market.quote_id),
            new_order=True,
            trader=(user.pk, True),
        )
    except Market.DoesNotExist:
        forget_markets()
        raise InvalidInput(f"There is no market {market.symbol[:24]!r}.", field="symbol") from None
    market = command.market
    if market.status == Market.Status.HALTED:
        raise Conflict(f"{market.symbol} is halted: new orders are refused.", code=ErrorCode.MARKET_HALTED)
    if market.in_auction:
        raise Conflict(
            f"{market.symbol} is in a call auction: order lists wait for continuous trading.",
            code=ErrorCode.MARKET_IN_AUCTION,
        )
    if any(getattr(market, rule) != getattr(request.market, rule) for rule in MARKET_RULES):
        order_validate(
            **{f.name: getattr(request, f.name) for f in fields(request) if f.name != "market"}, market=market
        )
    command.trader_check(adds=True)
    if market.price_band is not None:
        price_band_check(command.band, request.price)
    return command


def _existing_list(user, client_order_id) -> OrderListResult | None:
    """The list whose first order a repeated client_order_id names, or None if no order
    has it; an order outside a list that has it refuses the new list."""
    order = Order.objects.filter(user=user, client_order_id=client_order_id).first()
    if order is None:
        return None
    if order.order_list_id is None:
        raise InvalidInput(
            f"client_order_id {client_order_id!r} already names your order {order.pk}, which is not in a list.",
            field="client_order_id",
        )
    order_list = OrderList.objects.get(pk=order.order_list_id)
    orders = list(order_list.orders.select_related("market").order_by("id"))
    fills = list(Fill.objects.filter(order__in=orders).select_related("market").order_by("id"))
    return OrderListResult(order_list=order_list, orders=orders, fills=fills, created=False)


def order_list_cancel(*, user: User, list_id) -> OrderList:
    """Cancel every open order of one of the user's lists, releasing what they hold.
    Someone else's list is as missing as one that never was."""
    if isinstance(list_id, bool) or not isinstance(list_id, int) or not 0 < list_id <= MAX_ID:
        raise NotFound("No such order list.")
    found = OrderList.objects.filter(pk=list_id, user=user).values_list("market_id", "status").first()
    if found is None:
        raise NotFound("No such order list.")
    market_id, status = found
    if status == OrderList.Status.DONE:
        raise Conflict("The order list is done: none of its orders is open.", code=ErrorCode.ORDER_NOT_OPEN)
    _order_list_cancel(user, market_id, list_id)
    return OrderList.objects.get(pk=list_id)


@book_command(lambda user, market_id, *rest: market_id)
def _order_list_cancel(user: User, market_id: int, list_id: int) -> list[Order]:
    command = Command.begin(market_id)
    orders = Order.objects.active().filter(user=user, market_id=market_id, order_list_id=list_id)
    orders = list(orders.order_by("id"))
    if not orders:
        raise Conflict("The order list is done: none of its orders is open.", code=ErrorCode.ORDER_NOT_OPEN)
    for order in orders:
        order.market = command.market
        _cancel_one(command, order)
    command.lock_balances({user.pk})
    command.finish(None)
    return orders
