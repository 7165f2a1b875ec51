"""Batches: place or cancel 1 to BATCH_MAX orders under one take of a market's book lock,
each answered in its place.

Each order of a batch runs exactly as `order_place` or `order_cancel` would run it (in a
savepoint of its own, `engine.transactions.book_batch`): a batch adds its size, the one
market it places on and the grouping of its cancels by market, nothing to the commands,
so it sits beside them and builds on `orders`.
"""

from functools import partial

from accounts.models import User
from marketdata.models import Market
from quantumtrades.core.errors import InvalidInput, ServiceError

from ..engine.caches import resolve_market
from ..engine.rules import refuse_done
from ..engine.transactions import book_batch
from ..models import Order
from .orders import OrderResult, _cancel, _order_of, order_place

# The most orders a batch may place or cancel.
BATCH_MAX = 20


def _batch_size_check(items: list, name: str) -> None:
    if not 1 <= len(items) <= BATCH_MAX:
        raise InvalidInput(f"{name} takes 1 to {BATCH_MAX} items; {len(items)} were sent.", field=name)


def orders_place_batch(*, user: User, orders: list[dict], **common) -> list[OrderResult | Exception]:
    """Place 1 to BATCH_MAX orders of one market, each exactly as `order_place` would, in
    one transaction and under one take of the book lock (`book_batch`).

    `orders` are `order_place`'s keyword arguments, `common` those they share (source,
    socket_id). Each order is answered in its place: its OrderResult (created=False for a
    repeated client_order_id, as `order_place` answers), or the ServiceError that refused
    it (any other exception is answered in its place too: the others stand, committed).
    Each runs in a savepoint of its own, so one refusal undoes only that order; the
    orders run in the given order, so a later one may trade with an earlier one. Orders on
    two markets, or on none that exists, are refused together (InvalidInput).
    """
    _batch_size_check(orders, "orders")
    symbols = {order["market"].symbol if isinstance(order["market"], Market) else order["market"] for order in orders}
    if len(symbols) != 1:
        raise InvalidInput("A batch's orders are all on one market: send one batch per market.", field="orders")
    market = resolve_market(orders[0]["market"])
    calls = [partial(order_place, user=user, **{**order, "market": market}, **common) for order in orders]
    return book_batch(market.pk, calls)


def orders_cancel_batch(*, user: User, order_ids: list) -> list[Order | Exception]:
    """Cancel 1 to BATCH_MAX of the user's orders, each answered in its place: the cancelled
    Order, or the ServiceError that refused it (NotFound, or Conflict when it is no longer
    open, as `order_cancel` answers; any other exception in its place too). The orders of each market are cancelled in one
    transaction under one take of its book lock, the markets one after the other in
    ascending id (one market row per transaction: the lock order)."""
    _batch_size_check(order_ids, "ids")
    outcomes: list = [None] * len(order_ids)
    by_market: dict[int, list[tuple[int, int]]] = {}
    for at, order_id in enumerate(order_ids):
        try:
            market_id, status = _order_of(user, order_id)
            refuse_done(status)
        except ServiceError as exc:
            outcomes[at] = exc
        else:
            by_market.setdefault(market_id, []).append((at, int(order_id)))
    for market_id, orders in sorted(by_market.items()):
        cancelled = book_batch(market_id, [partial(_cancel, user, market_id, order_id) for _, order_id in orders])
        for (at, _), outcome in zip(orders, cancelled, strict=True):
            outcomes[at] = outcome
    return outcomes
