"""Round trips to PostgreSQL per command, counted on the wire.

Every round trip ends with a message that makes the server answer what it was sent: a Sync
(extended protocol, pipelines), a Flush (a result read in the middle of a pipeline) or a
simple Query. libpq's protocol trace (`PGconn.trace`) lists each message the client sends,
so counting those counts the waits for the server, whatever the statements were. (psycopg
follows the Sync that ends a pipeline with a Flush in the same wait; that one is not a
round trip of its own.)
"""

import re
import tempfile
from decimal import Decimal

import pytest
from django.db import connection

from orders.engine.transactions import _Queued, _run_group
from orders.services import forget_markets, order_validate
from orders.services.orders import _place

from .stories import buy, sell

pytestmark = [pytest.mark.postgres, pytest.mark.django_db(transaction=True)]

WAITS = re.compile(r"^[^\t]*\tF\t\d+\t(Sync|Flush|Query)\b", re.MULTILINE)


@pytest.fixture(autouse=True)
def postgres_only(on_postgres):
    pass


def traced(command) -> str:
    """Run `command`; the protocol trace of what this thread's connection sent and received."""
    connection.ensure_connection()
    pgconn = connection.connection.pgconn
    with tempfile.TemporaryFile("w+") as trace:
        pgconn.trace(trace.fileno())
        try:
            command()
        finally:
            pgconn.untrace()
        trace.seek(0)
        return trace.read()


def round_trips(command) -> tuple[int, list[str]]:
    """Run `command` and count the round trips it made on this thread's connection."""
    return waits_in(traced(command))


def waits_in(trace: str) -> tuple[int, list[str]]:
    """The round trips in a protocol trace (`traced`), and the messages that ended them."""
    messages = WAITS.findall(trace)
    waits = [m for i, m in enumerate(messages) if not (m == "Flush" and i and messages[i - 1] == "Sync")]
    return len(waits), messages


def test_a_resting_order_costs_three_round_trips(market, alice, bob):
    buy(alice, "1", at="99")  # warm: the fee account is known, statements are prepared

    count, waits = round_trips(lambda: buy(alice, "1", at="98"))

    # BEGIN with the lock, the order's id, the first look at the book and the balances;
    # every write; COMMIT.
    assert count == 3, waits


def test_an_order_that_trades_costs_one_more_for_its_trade_and_fill_ids(market, alice, bob):
    sell(bob, "2", at="100")
    buy(alice, "1", at="100")  # warm: a trade's statements are prepared on first use

    count, waits = round_trips(lambda: buy(alice, "1", at="100"))

    assert count == 4, " ".join(waits)
    assert alice.fills.filter(price=Decimal("100")).count() == 2


def test_a_command_of_a_group_opens_its_savepoint_in_the_round_trip_of_its_lock(market, alice, bob):
    # Commands queued on one market share a transaction, each in a savepoint of its own
    # (`_run_group`): the savepoint costs no round trip of its own.
    buy(alice, "1", at="99")  # warm
    place = _place.__wrapped__  # the command as the market's queue runs it
    group = [
        _Queued(
            place,
            (alice, order_validate(market=market, side="buy", price=Decimal(at), quantity=Decimal(1)), "system", None),
            {},
        )
        for at in ("97", "96", "95")
    ]

    trace = traced(lambda: _run_group(group))

    # For each command, its savepoint, lock and look at the book (the first's with BEGIN),
    # then its writes; COMMIT.
    count, waits = waits_in(trace)
    assert count == 3 * 2 + 1, waits
    assert len(re.findall(r'"SAVEPOINT ', trace)) == 3
    assert [queued.result.order.status for queued in group] == ["open"] * 3


STATEMENTS = re.compile(r"^[^\t]*\tF\t\d+\t(Bind|Query)\b", re.MULTILINE)


def statements(command) -> int:
    """Run `command` and count the statements it sent (a Bind each, or a simple Query)."""
    return len(STATEMENTS.findall(traced(command)))


def test_statements_of_an_order_resting_and_trading(market, alice, bob):
    # Each statement costs the driver's Python about as much as the database spends on it:
    # the book sequence rides in the book levels' upsert, the balances in their ledger
    # entries' insert (data-modifying CTEs).
    buy(alice, "1", at="98")
    sell(bob, "2", at="100")
    buy(alice, "1", at="100")

    resting = statements(lambda: buy(alice, "1", at="97"))
    trading = statements(lambda: buy(alice, "1", at="100"))

    # BEGIN; lock, order id with the trader's standing (kill switch, open orders), look,
    # balances; order, balances and ledger, book levels and sequence (and last price);
    # COMMIT. (Eleven with a statement each.) Trading adds the trades' and fills' ids with
    # the lock of the fee account's balance, the trades, fills, candles, the makers' new
    # state and the look for crossed stops. The market integrity controls add none.
    assert resting == 9, resting
    assert trading == 16, trading


def test_the_circuit_breaker_costs_no_round_trip(market, alice, bob):
    # Its reference price rides in the round trip of the lock (`Command.begin`).
    market.circuit_breaker = Decimal("0.05")
    market.save(update_fields=["circuit_breaker"])
    sell(bob, "2", at="100")
    buy(alice, "1", at="100")  # warm, and a reference price to judge by

    assert round_trips(lambda: buy(alice, "1", at="98"))[0] == 3
    assert round_trips(lambda: buy(alice, "1", at="100"))[0] == 4


def test_a_busy_market_s_circuit_breaker_costs_no_statement(market, alice, bob):
    # The window's first trade stays its first until it leaves the window: once read, the
    # process remembers it (`auction.breaker_reference_remembered`), and an order on a
    # market that traded within the window sends what it would without a breaker.
    sell(bob, "3", at="100")
    buy(alice, "1", at="100")
    without = statements(lambda: buy(alice, "1", at="97"))
    market.circuit_breaker = Decimal("0.05")
    market.save(update_fields=["circuit_breaker"])
    forget_markets()  # as if this process's copy of the market were older than the change
    # Reads the market again, then the window's first trade, with the lock.
    assert statements(lambda: buy(alice, "1", at="96")) == without + 2
    assert statements(lambda: buy(alice, "1", at="95")) == without
    assert statements(lambda: buy(alice, "1", at="100")) == statements(lambda: buy(alice, "1", at="100")) > without
