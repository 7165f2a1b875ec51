"""GTD orders expire at their `expire_at`, even on a market where nothing else happens
(docs/API.md, "Good till date"): a scheduler job, every EXPIRY_TICK seconds in every
server process (`quantumtrades.core.scheduler`, registered in `OrdersConfig.ready`).

`orders_expire_due` finds the markets with orders past their time (the partial index
`order_expiring` holds only GTD orders still active, so the look costs next to nothing
when none is due) and expires them in one engine command per market: under the book lock
it reads the due orders again, so an order that a fill, a cancel or another process's
expiry took meanwhile is no longer active and is left alone. Two processes running the
job at once do the work once: the second finds nothing left under the lock. Each expired
order releases its hold, leaves the book and goes out as OrderChanged (status `expired`)
after commit, as a cancel does.

The engine also expires a due GTD order it meets while matching, instead of trading with
it (`engine.matching`), and a due GTD stop its trades cross, instead of triggering it
(`engine.stops`): the job may be up to a tick late, the engine never is.
"""

import logging

from django.utils import timezone

from quantumtrades.core import unavailable
from quantumtrades.core.sql import cursor as sql_cursor
from quantumtrades.core.sql import select_models

from .engine.command import Command
from .engine.rules import book_quantity
from .engine.transactions import book_command
from .models import ACTIVE_STATUSES, OPEN_STATUSES, Order, OrderStatus

log = logging.getLogger(__name__)

# How often every process looks for GTD orders that are due.
EXPIRY_TICK = 1.0

# Literals, not parameters, for the statuses: a prepared statement's generic plan can then
# still prove the partial index order_expiring's condition.
_DUE_SQL = (
    "expire_at IS NOT NULL AND expire_at <= %s AND status IN ("
    + ", ".join(f"'{status}'" for status in ACTIVE_STATUSES)
    + ")"
)


def orders_expire_due() -> dict[int, list[Order]]:
    """Expire every active GTD order whose expire_at has come; return them by market id
    (a scheduler job, in every process)."""
    now = timezone.now()
    with sql_cursor() as statement:
        statement.execute(f"SELECT DISTINCT market_id FROM {Order._meta.db_table} WHERE {_DUE_SQL}", [now])
        market_ids = sorted(market_id for (market_id,) in statement.fetchall())
    expired = {}
    for market_id in market_ids:
        try:
            orders = _expire_in(market_id)
        except Exception as exc:  # the other markets still expire theirs; this one at the next tick
            if unavailable.is_unavailable(exc):
                raise
            log.exception("GTD expiry on market %s failed", market_id)
            continue
        if orders:
            expired[market_id] = orders
    return expired


@book_command(lambda market_id: market_id)
def _expire_in(market_id: int) -> list[Order]:
    """One engine command: expire the market's GTD orders that are due now (book lock held)."""
    command = Command.begin(market_id)
    due = select_models(Order, f"market_id = %s AND {_DUE_SQL}", [market_id, command.now], tail="ORDER BY priority")
    if not due:
        return []  # a fill, a cancel or another process got there first: nothing to write
    for order in due:
        order.market = command.market
        command.release(order, order.held)
        if order.status in OPEN_STATUSES:  # a pending stop is not in the book
            command.level_deltas[(order.side, order.price)] -= book_quantity(order)
        order.status = OrderStatus.EXPIRED
        order.updated_at = command.now
        command.changed_orders[order.pk] = order
    command.lock_balances({order.user_id for order in due})
    command.finish(None)
    return due
