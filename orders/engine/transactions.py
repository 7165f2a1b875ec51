"""The transaction a command runs in: retried when the database gives up on it, and shared
with the commands queued behind it on the same market.

A deadlock or serialization failure rolls the transaction back and the command is run
again from its first statement, a bounded number of times (`_retrying`). Commands that
queue for the same market in one process share a transaction, each in a savepoint of its
own (`_MarketQueue`). A book command is declared with `book_command`, which does both.
A batch of commands (`book_batch`) takes one place in the queue and the lock once.

What each command costs is measured here, once per command and once per group, from the
clock alone (`_timed`): its latency, from its arrival in the queue to its outcome; its wait
for the book, from its arrival to its turn; and the size of its group
(quantumtrades/core/metrics.py).
"""

import logging
import random
import threading
import time
from contextlib import contextmanager

from django.db import OperationalError, connection, transaction

from quantumtrades.core import metrics
from quantumtrades.core.handlers import keeps_connections
from quantumtrades.core.sql import savepoint

log = logging.getLogger(__name__)

MAX_ATTEMPTS = 5
# Commands of one market that may share a transaction (`book_command`).
GROUP_MAX = 32


def _retryable(exc: Exception) -> bool:
    cause = exc.__cause__
    sqlstate = getattr(cause, "sqlstate", None)
    if sqlstate in ("40001", "40P01"):  # serialization_failure, deadlock_detected
        return True
    return connection.vendor == "sqlite" and "locked" in str(exc)


def _retrying(command):
    """Run `command` in its own transaction; retry it on deadlock or serialization failure.

    Only the outermost transaction can be retried: inside a caller's transaction the
    failure has already aborted that transaction, so it is raised as it is.
    """

    def run(*args, **kwargs):
        for attempt in range(1, MAX_ATTEMPTS + 1):
            try:
                with transaction.atomic():
                    return command(*args, **kwargs)
            except OperationalError as exc:
                if connection.in_atomic_block or attempt == MAX_ATTEMPTS or not _retryable(exc):
                    raise
                log.info("%s: retrying after %s (attempt %d)", command.__name__, exc.__cause__ or exc, attempt)
                time.sleep(random.uniform(0, 0.005 * 2**attempt))
        raise AssertionError("unreachable")

    run.__name__ = command.__name__
    run.__doc__ = command.__doc__
    run.attempts = MAX_ATTEMPTS
    return run


class _Queued:
    """One command waiting its turn on a market, and then its outcome."""

    def __init__(self, command, args, kwargs):
        self.command, self.args, self.kwargs = command, args, kwargs
        self.arrived = self.started = time.perf_counter()
        self.woken = threading.Event()
        # Savepoints the command opens (a batch: one per call), toward GROUP_MAX.
        self.weight = 1
        self.finished = False
        self.result = self.error = None

    def outcome(self):
        if self.error is not None:
            raise self.error
        return self.result


class _MarketQueue:
    """The commands on one market waiting in this process for the book lock.

    Commands on a market run one at a time anyway (the book lock). Instead of each taking
    the lock and committing in turn, the first in line takes every command queued behind it
    (up to GROUP_MAX) into one transaction: one lock, one commit, each command in a
    savepoint of its own, so a refused one leaves no trace and the others stand. Then it
    wakes them with their own results, after the commit, so nothing is acknowledged that is
    not durable, and hands the lead to the next in line. Alone in the queue, a command runs
    exactly as before: its own transaction, no savepoint. Each command still bumps the book
    sequence by one and publishes its own events after the commit.

    Grouping pays where the lock is contended: with eight threads on one market, the book
    lock was held twice as long per command as with one (GIL waits inside the lock, a
    commit each), docs/BENCHMARKS.md, "Matching engine".
    """

    def __init__(self):
        self.lock = threading.Lock()
        self.waiting: list[_Queued] = []
        self.busy = False

    def run(self, command, args, kwargs, weight=1):
        mine = _Queued(command, args, kwargs)
        mine.weight = weight
        with self.lock:
            self.waiting.append(mine)
            leads = not self.busy
            self.busy = True
        if not leads:
            pooled = getattr(connection, "pool", None) is not None and connection.connection is not None
            if pooled and not keeps_connections():
                # Another thread runs this command on its connection. Waiting with one of
                # the pool's connections could leave the thread that leads the next group
                # without one (with more waiting threads than the pool has connections).
                # A request thread keeps its connection between requests anyway, and the
                # pool is sized for that (docs/OPERATIONS.md): its wait takes nothing more,
                # and it saves a return to the pool and a new borrowing per command.
                connection.close()
            mine.woken.wait()
        if not mine.finished:  # first in line: run a group that starts with this command
            with self.lock:
                taken = weight = 0
                for queued in self.waiting:
                    weight += queued.weight
                    if taken and weight > GROUP_MAX:
                        break
                    taken += 1
                group, self.waiting = self.waiting[:taken], self.waiting[taken:]
            try:
                _run_group(group)
            finally:
                with self.lock:
                    if self.waiting:
                        self.waiting[0].woken.set()  # the next in line leads the next group
                    else:
                        self.busy = False
                for queued in group:
                    if queued.result is None and queued.error is None:  # the leader was interrupted
                        queued.error = RuntimeError("the command's group stopped before running it")
                    queued.finished = True
                    queued.woken.set()
        return mine.outcome()


class _GroupState(threading.local):
    # The markets the running group's transaction has locked (None outside a group).
    markets = None
    # The savepoint of the group's running command, once the command has opened it.
    savepoint = None
    # Inside a batch (`book_batch`): its book commands run in its transaction, each in a
    # savepoint of its own.
    batch = False

    def open_savepoint(self) -> None:
        """Open the running command's savepoint, if it runs in a group and has none yet.
        Inside `pipeline()` the SAVEPOINT waits for the pipeline's round trip."""
        if self.markets is not None and self.savepoint is None:
            self.savepoint = savepoint()
            # As transaction.atomic() does: what the command registers with on_commit is
            # dropped if it rolls back to this savepoint.
            connection.savepoint_ids.append(self.savepoint)


# The group this thread is running, if any: what `Command.begin` asks before it locks.
current_group = _GroupState()


def _timed(group: list[_Queued]) -> None:
    """The group's commands' latency and wait for the book, and its size (after its commit)."""
    done = time.perf_counter()
    for queued in group:
        latency, wait = metrics.command_timers(queued.command.__name__.lstrip("_"))
        latency.observe(done - queued.arrived)
        wait.observe(queued.started - queued.arrived)
    metrics.ENGINE_GROUP.observe(len(group))


def _run_group(group: list[_Queued]) -> None:
    try:
        _run(group)
    finally:
        if metrics.ENABLED:
            _timed(group)


def _run(group: list[_Queued]) -> None:
    if len(group) == 1:
        [queued] = group
        queued.started = time.perf_counter()
        try:
            queued.result = _retrying(queued.command)(*queued.args, **queued.kwargs)
        except Exception as exc:
            queued.error = exc
        return

    def together():
        current_group.markets = {}
        try:
            for queued in group:
                queued.result = queued.error = None
                # Each command in a savepoint, so that a refusal leaves no trace. The command
                # opens it with its first statements, in their round trip (`Command.begin`,
                # which every book command starts with). A savepoint is not released when
                # its command succeeds: the commit releases them all, and a RELEASE of its
                # own would cost each command one more round trip under the book lock. (A
                # group stays well under the 64 subtransactions PostgreSQL caches per
                # transaction: GROUP_MAX.)
                current_group.savepoint = None
                queued.started = time.perf_counter()
                try:
                    queued.result = queued.command(*queued.args, **queued.kwargs)
                except OperationalError:
                    raise  # the transaction is lost: the whole group runs again
                except Exception as exc:
                    queued.error = exc
                    connection.needs_rollback = False
                    if current_group.savepoint is not None:
                        connection.savepoint_rollback(current_group.savepoint)
                    # A refused command's changes to the locked market rolled back with it.
                    current_group.markets.clear()
                finally:
                    if current_group.savepoint is not None:
                        connection.savepoint_ids.pop()
                    current_group.savepoint = None
        finally:
            current_group.markets = None

    together.__name__ = f"group of {len(group)}"
    try:
        _retrying(together)()
    except Exception as exc:
        for queued in group:
            queued.error = exc


# Each market's queue in this process, by (database alias, market id).
_queues: dict = {}
_queues_lock = threading.Lock()


def book_command(market_of):
    """Run the decorated command on its market's queue (`_MarketQueue`): in a transaction
    of its own or shared with the commands queued behind it, retried on deadlock or
    serialization failure. `market_of(*args)` names the market. Inside a caller's
    transaction the command runs in a savepoint of that transaction."""

    def decorate(command):
        def run(*args, **kwargs):
            if current_group.batch:
                with _batch_savepoint():
                    return command(*args, **kwargs)
            if connection.in_atomic_block:
                with transaction.atomic():  # a savepoint: a refusal leaves the caller's transaction usable
                    return command(*args, **kwargs)
            key = (connection.alias, market_of(*args, **kwargs))
            with _queues_lock:
                queue = _queues.get(key) or _queues.setdefault(key, _MarketQueue())
            return queue.run(command, args, kwargs)

        run.__name__ = command.__name__
        run.__doc__ = command.__doc__
        run.__wrapped__ = command  # what the queue runs
        return run

    return decorate


@contextmanager
def _batch_savepoint():
    """One command of a batch, in a savepoint of its own, as a group runs each of its
    commands (`_run_group`): opened by the command's first statements (`Command.begin`),
    rolled back if it raises, so that its refusal leaves no trace, and then raised again."""
    current_group.savepoint = None
    try:
        yield
    except OperationalError:
        raise  # the transaction is lost: the batch runs again
    except Exception:
        connection.needs_rollback = False
        if current_group.savepoint is not None:
            connection.savepoint_rollback(current_group.savepoint)
        current_group.markets.clear()
        raise
    finally:
        if current_group.savepoint is not None:
            connection.savepoint_ids.pop()
        current_group.savepoint = None


def _batch(calls):
    outcomes = []
    outer = current_group.markets
    current_group.markets = {} if outer is None else outer
    current_group.batch = True
    try:
        for call in calls:
            try:
                outcomes.append(call())
            except OperationalError:
                raise
            except Exception as exc:
                outcomes.append(exc)
    finally:
        current_group.batch = False
        current_group.markets = outer
        current_group.savepoint = None
    return outcomes


def book_batch(market_id: int, calls: list) -> list:
    """Run `calls` (functions of no argument, each making book commands on the market
    `market_id`) one after the other in one transaction, under one take of the book lock:
    one place in the market's queue, the market row locked by the first command and kept
    by the others (`Command.begin`). Each book command runs in a savepoint of its own, so a
    call that raises leaves no trace and the others stand. Answers each call's result, or
    the exception it raised, in order. Like a book command, the batch is retried whole on
    deadlock or serialization failure, and runs in a savepoint of a caller's transaction."""
    if connection.in_atomic_block:
        with transaction.atomic():
            return _batch(calls)
    with _queues_lock:
        key = (connection.alias, market_id)
        queue = _queues.get(key) or _queues.setdefault(key, _MarketQueue())
    return queue.run(_batch, (calls,), {}, weight=len(calls))
