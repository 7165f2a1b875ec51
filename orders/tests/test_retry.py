"""A deadlock or serialization failure is retried a bounded number of times (`_retrying`).

The first story provokes a real deadlock on PostgreSQL: a session holds alice's USD
balance row, the engine takes the book lock and queues behind it, then the session asks
for the book lock. PostgreSQL breaks the cycle by failing the engine's attempt, and the
engine runs the command again, which then succeeds. The others pin down the wrapper's
rules with failures made to order: what is retried, how often, and what is not.
"""

import logging
import threading

import pytest
from django.db import OperationalError, connection, models, transaction

from accounts.models import Balance
from marketdata.models import Market
from orders.engine.command import Command
from orders.engine.transactions import MAX_ATTEMPTS, _Queued, _retrying, _run_group
from orders.models import Order
from orders.selectors import reconcile
from quantumtrades.core.errors import Conflict, ErrorCode

from .stories import buy


class DriverError(Exception):
    """Stands in for the psycopg error Django chains under its OperationalError."""

    def __init__(self, sqlstate):
        super().__init__(f"sqlstate {sqlstate}")
        self.sqlstate = sqlstate


def failing(times, sqlstate):
    """A command that fails `times` times with `sqlstate`, then answers "done"."""
    calls = []

    @_retrying
    def command():
        calls.append(connection.in_atomic_block)
        if len(calls) <= times:
            raise OperationalError("could not do it") from DriverError(sqlstate)
        return "done"

    return command, calls


@pytest.fixture
def retries(caplog):
    caplog.set_level(logging.INFO, logger="orders.engine.transactions")
    return lambda: [record for record in caplog.records if "retrying" in record.getMessage()]


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
@pytest.mark.timeout(120)
def test_an_order_caught_in_a_real_deadlock_is_retried_and_placed(on_postgres, market, alice, retries):
    usd_row = Balance.objects.get(user=alice, asset="USD").pk
    engine_pid = []
    engine_started = threading.Event()
    outcome = {}

    def other_session():
        # Takes the locks in the wrong order on purpose: a balance row, then the market row.
        try:
            with transaction.atomic(), connection.cursor() as cursor:
                cursor.execute("SET LOCAL deadlock_timeout = '10s'")  # so PostgreSQL picks the engine
                cursor.execute("SELECT id FROM accounts_balance WHERE id = %s FOR UPDATE", [usd_row])
                engine_started.set()
                _wait_until_blocked_by_me(cursor, engine_pid)
                cursor.execute("SELECT id FROM marketdata_market WHERE id = %s FOR UPDATE", [market.pk])
        finally:
            connection.close()

    def engine():
        try:
            with connection.cursor() as cursor:
                cursor.execute("SELECT pg_backend_pid()")
                engine_pid.append(cursor.fetchone()[0])
                cursor.execute("SET deadlock_timeout = '200ms'")
            engine_started.wait(timeout=30)
            outcome["result"] = buy(alice, "1", at="99")
        except Exception as error:
            outcome["error"] = error
        finally:
            connection.close()

    threads = [threading.Thread(target=engine), threading.Thread(target=other_session)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)

    assert "error" not in outcome, outcome.get("error")
    assert outcome["result"].order.status == "open"
    assert any("deadlock" in record.getMessage() for record in retries())
    assert Order.objects.filter(user=alice).count() == 1
    assert Market.objects.get().book_seq == 1
    assert reconcile() == []


def _wait_until_blocked_by_me(cursor, engine_pid):
    """Poll until the engine's session waits for a lock this session holds."""
    for _ in range(3000):
        if engine_pid:
            cursor.execute("SELECT pg_backend_pid() = ANY(pg_blocking_pids(%s))", [engine_pid[0]])
            if cursor.fetchone()[0]:
                return
        cursor.execute("SELECT pg_sleep(0.01)")
    raise AssertionError("the engine never queued behind the balance lock")


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("sqlstate", ["40001", "40P01"])
def test_a_serialization_failure_or_deadlock_is_run_again_until_it_succeeds(sqlstate, retries):
    command, calls = failing(2, sqlstate)

    assert command() == "done"
    assert len(calls) == 3
    assert len(retries()) == 2


@pytest.mark.django_db(transaction=True)
def test_retrying_gives_up_after_max_attempts(retries):
    command, calls = failing(MAX_ATTEMPTS + 1, "40P01")

    with pytest.raises(OperationalError):
        command()

    assert len(calls) == MAX_ATTEMPTS


@pytest.mark.django_db(transaction=True)
def test_any_other_operational_error_is_raised_at_once(retries):
    command, calls = failing(1, "53300")  # too_many_connections: retrying would not help

    with pytest.raises(OperationalError):
        command()

    assert len(calls) == 1
    assert retries() == []


@pytest.mark.django_db
def test_inside_a_callers_transaction_a_deadlock_is_not_retried(retries):
    # The failure has aborted the caller's transaction: running again inside it is pointless.
    command, calls = failing(1, "40P01")

    with pytest.raises(OperationalError):
        command()

    assert len(calls) == 1


@pytest.mark.django_db(transaction=True)
def test_a_refused_command_of_a_group_leaves_no_writes_and_nothing_to_run_on_commit(market):
    # Commands queued on one market share a transaction, each in a savepoint (`_run_group`)
    # that it opens with the book lock, as every book command starts (`Command.begin`).
    ran = []

    def accepted(name):
        Command.begin(market.pk)
        Market.objects.filter(pk=market.pk).update(book_seq=models.F("book_seq") + 1)
        transaction.on_commit(lambda: ran.append(name))
        return name

    def refused(name):
        Command.begin(market.pk)
        Market.objects.filter(pk=market.pk).update(book_seq=models.F("book_seq") + 100)
        transaction.on_commit(lambda: ran.append(name))
        raise Conflict("refused", code=ErrorCode.ORDER_NOT_OPEN)

    seq_before = Market.objects.get(pk=market.pk).book_seq
    group = [_Queued(accepted, ("a",), {}), _Queued(refused, ("b",), {}), _Queued(accepted, ("c",), {})]

    _run_group(group)

    assert [queued.result for queued in group] == ["a", None, "c"]
    assert isinstance(group[1].error, Conflict)
    assert ran == ["a", "c"]
    assert Market.objects.get(pk=market.pk).book_seq == seq_before + 2
