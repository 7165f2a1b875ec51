"""Operator commands on markets. Trading itself lives in orders.services."""

from decimal import Decimal

from django.db import connection, transaction

from accounts.money import MONEY_DECIMAL_PLACES, MONEY_QUANTUM
from quantumtrades.sql import for_update, select_models

from .models import BookLevel, Market


@transaction.atomic
def market_set_status(*, market: Market, status: str) -> Market:
    """Halt or resume trading. Takes the book lock, so no command is half-way through."""
    market = Market.objects.select_for_update().get(pk=market.pk)
    if market.status != status:
        market.status = status
        market.save(update_fields=["status"])
    return market


def market_halt(*, market: Market) -> Market:
    return market_set_status(market=market, status=Market.Status.HALTED)


def market_resume(*, market: Market) -> Market:
    return market_set_status(market=market, status=Market.Status.TRADING)


def market_lock(*, market_id: int) -> Market:
    """Lock the market's row (`SELECT ... FOR UPDATE`): the book lock, taken first by
    every command on the market. Held until the transaction ends."""
    found = select_models(Market, "id = %s", [market_id], tail=for_update())
    if not found:
        raise Market.DoesNotExist(f"no market {market_id}")
    return found[0]


def market_seq_set(*, market: Market, seq: int) -> None:
    """Record the book sequence of the command that is finishing (book lock held)."""
    with connection.cursor() as cursor:
        cursor.execute(f"UPDATE {Market._meta.db_table} SET book_seq = %s WHERE id = %s", [seq, market.pk])
    market.book_seq = seq


def book_levels_apply(
    *, market: Market, deltas: dict[tuple[str, Decimal], Decimal]
) -> list[tuple[str, Decimal, Decimal]]:
    """Add quantity deltas to the market's book levels; return (side, price, new quantity).

    One upsert for all levels. A level that empties keeps its row at quantity 0 (snapshots
    skip it), so a level that comes back is an update and nothing needs a second statement.
    The caller holds the book lock (the market row), which is why read-add-write is safe.
    """
    changes = [(side, price, delta) for (side, price), delta in sorted(deltas.items()) if delta]
    if not changes:
        return []
    table = BookLevel._meta.db_table
    rows = ", ".join(["(%s, %s, %s, %s)"] * len(changes))
    params = [value for side, price, delta in changes for value in (market.pk, side, price, delta)]
    with connection.cursor() as cursor:
        cursor.execute(
            f"INSERT INTO {table} (market_id, side, price, quantity) VALUES {rows} "
            # ROUND keeps SQLite, which adds in floating point, from leaving 1e-17 where a level
            # emptied (a no-op on PostgreSQL's exact numeric).
            f"ON CONFLICT (market_id, side, price) DO UPDATE SET quantity = "
            f"ROUND({table}.quantity + excluded.quantity, {MONEY_DECIMAL_PLACES}) "
            "RETURNING side, price, quantity",
            params,
        )
        return [(side, _money(price), _money(quantity)) for side, price, quantity in cursor.fetchall()]


def _money(value) -> Decimal:
    # SQLite hands numbers back as int or float; PostgreSQL as Decimal.
    return Decimal(str(value)).quantize(MONEY_QUANTUM)
