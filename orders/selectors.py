"""Reads over orders and fills, and the order-side invariants of docs/ARCHITECTURE.md, "Money"."""

from collections import defaultdict

from django.db.models import F, Sum
from django.db.models.functions import Abs, Coalesce

from accounts.models import Balance
from accounts.selectors import Breach, ledger_breaches, summed, supply_breaches
from marketdata.models import BookLevel, Market, Side
from quantumtrades.core.money import MONEY_QUANTUM, ZERO, MoneyField

from .engine.rules import list_holds, order_hold
from .models import MAX_ID, Fill, Order, OrderList


def orders_open_for_user(user, market=None):
    """A trader's open orders: in the book, and pending stops."""
    orders = Order.objects.active().filter(user=user).select_related("market").order_by("-id")
    return orders.filter(market=market) if market is not None else orders


def orders_for_user(user, *, market=None, statuses=None):
    """A trader's orders, newest first (keyset pages on the (user, -id) index)."""
    orders = Order.objects.filter(user=user).select_related("market").order_by("-id")
    if market is not None:
        orders = orders.filter(market=market)
    if statuses is not None:
        orders = orders.filter(status__in=statuses)
    return orders


def order_for_user(user, order_id: int) -> Order | None:
    """One of the trader's orders, or None: someone else's order is as missing as one
    that never was (an id past the column's range included)."""
    if order_id > MAX_ID:
        return None
    return Order.objects.filter(pk=order_id, user=user).select_related("market").first()


def order_list_for_user(user, list_id: int) -> OrderList | None:
    """One of the trader's order lists with its orders (`orders_of_list`), or None:
    someone else's list is as missing as one that never was."""
    if list_id > MAX_ID:
        return None
    return OrderList.objects.filter(pk=list_id, user=user).select_related("market").first()


def orders_of_list(order_list: OrderList) -> list[Order]:
    """A list's orders, oldest first."""
    orders = list(order_list.orders.order_by("id"))
    for order in orders:
        order.market = order_list.market
    return orders


def fills_for_user(user, market=None):
    fills = Fill.objects.filter(user=user).select_related("market").order_by("-id")
    return fills.filter(market=market) if market is not None else fills


def held_breaches() -> list[Breach]:
    """Invariant 3: each user's held amount equals what their open orders still need
    (pending stops included: they hold from acceptance; an order list's pair counts its
    need once, `rules.list_holds`)."""
    needed = defaultdict(lambda: ZERO)
    breaches = []
    listed = defaultdict(list)
    for order in Order.objects.active().select_related("market").iterator():
        market = order.market
        asset = market.quote_id if order.side == Side.BUY else market.base_id
        if order.order_list_id:
            listed[order.order_list_id].append(order)
        else:
            must_hold = order_hold(order)
            if order.held != must_hold:
                breaches.append(Breach(3, f"order {order.pk}", f"holds {order.held} but needs {must_hold}"))
        needed[(order.user_id, asset)] += order.held
    for orders in listed.values():
        holds = list_holds(orders)
        breaches += [
            Breach(
                3, f"order {order.pk}", f"holds {order.held} but needs {holds[order.pk]} (list {order.order_list_id})"
            )
            for order in orders
            if order.held != holds[order.pk]
        ]
    for balance in Balance.objects.filter(held__gt=0).iterator():
        need = needed.pop((balance.user_id, balance.asset_id), ZERO)
        if balance.held != need:
            breaches.append(
                Breach(
                    3, f"user {balance.user_id} {balance.asset_id}", f"holds {balance.held}, open orders need {need}"
                )
            )
    for (user_id, asset), amount in needed.items():
        if amount:
            breaches.append(Breach(3, f"user {user_id} {asset}", f"holds 0, open orders need {amount}"))
    return breaches


def book_breaches() -> list[Breach]:
    """Invariant 4: no market's book is crossed; filled + remaining = quantity for every
    order; the book levels equal the sum of the open orders at each price (of the slices
    that icebergs show)."""
    breaches = []
    # The database picks out the orders that break it (the order table can be as long as
    # the history: nothing of it comes through Python). The tolerance of half a quantum is
    # the CHECK constraint's: SQLite does this arithmetic in floating point; on PostgreSQL
    # it means exactly equal.
    off = Order.objects.alias(
        off=Abs(F("filled_quantity") + F("remaining_quantity") - F("quantity"), output_field=MoneyField())
    ).filter(off__gte=MONEY_QUANTUM / 2)
    for pk, quantity, filled, remaining in off.values_list(
        "pk", "quantity", "filled_quantity", "remaining_quantity"
    ).iterator(chunk_size=5000):
        if filled + remaining != quantity:
            breaches.append(Breach(4, f"order {pk}", f"filled {filled} + remaining {remaining} != quantity {quantity}"))
    for market in Market.objects.all():
        best_bid = Order.objects.bids(market).values_list("price", flat=True).first()
        best_ask = Order.objects.asks(market).values_list("price", flat=True).first()
        # A call auction's book may cross (its orders rest without matching), and so may a
        # market halted during one: the uncross undoes it.
        crossed = best_bid is not None and best_ask is not None and best_bid >= best_ask
        if crossed and market.is_trading:
            breaches.append(Breach(4, market.symbol, f"crossed book: bid {best_bid} >= ask {best_ask}"))
        from_orders = {
            (row["side"], row["price"]): summed(row["quantity"])
            for row in Order.objects.open()
            .filter(market=market)
            .values("side", "price")
            # An iceberg shows its slice only (`visible_quantity`).
            .annotate(quantity=Sum(Coalesce("visible_quantity", "remaining_quantity")))
        }
        levels = {
            (level.side, level.price): level.quantity
            for level in BookLevel.objects.filter(market=market).exclude(quantity=0)
        }
        if from_orders != levels:
            differing = sorted(
                (side, price, levels.get((side, price)), from_orders.get((side, price)))
                for side, price in from_orders.keys() | levels.keys()
                if levels.get((side, price)) != from_orders.get((side, price))
            )
            breaches.append(
                Breach(
                    4,
                    market.symbol,
                    f"book levels differ from the open orders (side, price, level, orders): {differing}",
                )
            )
    return breaches


def reconcile() -> list[Breach]:
    """All four invariants (docs/ARCHITECTURE.md, "Money"); an empty list means the books balance."""
    return ledger_breaches() + supply_breaches() + held_breaches() + book_breaches()
