"""The venue's activity as it happens, counted where it happens: every order placed or
refused (`order_outcome`, recorded at the one door every channel passes, `order_place`),
the trades and auctions the engine commits (`on_events`), and the open sockets.

Two audiences read these counts:

- Prometheus: each process's own series (quantumtrades/core/metrics.py; docs/ARCHITECTURE.md,
  "Metrics"); Prometheus adds the processes up.
- The operators' console, which must work without Prometheus: refusals are never written
  to the database (a refused order leaves no row), so `order_outcome` also adds one to a
  dict of this process (no I/O per order). Every FLUSH_SECONDS the scheduler's
  `activity_publish` (every server process runs it) moves those counts into the shared
  cache as per-minute buckets, one key per (minute, result), with an atomic increment, so
  every process adds to the same buckets; and writes this process's open sockets under its
  own key, which expires unless refreshed. The console sums them: `outcomes_recent` and
  `sockets_open`. Without Redis the cache is this process's memory and the figures are
  this process's. Counts since the last flush are lost if a process dies: at most
  FLUSH_SECONDS of them.
"""

import functools
import os
import threading
import time
from collections import Counter

from django.core.cache import cache

from marketdata.events import MarketStatusChanged, TradeExecuted
from marketdata.models import Market
from quantumtrades.core import metrics
from quantumtrades.core.errors import ErrorCode, ServiceError
from quantumtrades.core.unavailable import is_unavailable

from .models import OrderSource, OrderType

# How often each process moves its counts into the shared cache.
FLUSH_SECONDS = 5.0
# How many minutes of buckets the cache keeps (the console shows the last few).
KEEP_MINUTES = 60
# A process's socket count expires unless refreshed: a dead process's sockets vanish
# from the total within this time.
SOCKETS_TTL = 3 * FLUSH_SECONDS
ACCEPTED = "accepted"
# A repeated client_order_id: answered with the original order, nothing placed.
REPEATED = "repeated"
RESULTS = (ACCEPTED, REPEATED, *ErrorCode)
_PREFIX = "qt:activity"

_counts: Counter = Counter()
_lock = threading.Lock()
# Each (source, type, result) series, resolved once: the label lookup was most of the cost.
_orders = functools.cache(metrics.ORDERS.labels)


def order_outcome(*, source: str, type: str, result: str) -> None:
    """One order came through `source` as `type` and was `result` (ACCEPTED, REPEATED, or
    the error code it was refused with): a Prometheus counter and an increment of this
    process's console counts, under a lock; no I/O."""
    if metrics.ENABLED:
        _orders(source, type, result).inc()
    minute = int(time.time() // 60)
    with _lock:
        _counts[(minute, str(result))] += 1


def recorded(place):
    """`order_place`, with each outcome recorded (`order_outcome`)."""

    @functools.wraps(place)
    def run(**arguments):
        source = arguments.get("source", OrderSource.SYSTEM)
        try:
            result = place(**arguments)
        except Exception as exc:
            kind = arguments.get("type", OrderType.LIMIT)
            # A refused order's type is the caller's input: only known types name a series.
            kind = kind if kind in OrderType.values else "invalid"
            if isinstance(exc, ServiceError):
                code = exc.code
            else:
                code = ErrorCode.SERVICE_UNAVAILABLE if is_unavailable(exc) else ErrorCode.INTERNAL_ERROR
            order_outcome(source=source, type=kind, result=str(code))
            raise
        order_outcome(source=source, type=result.order.type, result=ACCEPTED if result.created else REPEATED)
        return result

    return run


def on_events(batch: list) -> None:
    """Event bus subscriber (after commit): the trades and the auctions begun, by market."""
    if not metrics.ENABLED:
        return
    for event in batch:
        kind = type(event)
        if kind is TradeExecuted:
            metrics.TRADES.labels(event.symbol).inc()
        elif kind is MarketStatusChanged and event.status == Market.Status.AUCTION:
            metrics.AUCTIONS.labels(event.symbol).inc()


def _outcome_key(minute: int, result: str) -> str:
    return f"{_PREFIX}:outcome:{minute}:{result}"


def _sockets_key(process: str) -> str:
    return f"{_PREFIX}:sockets:{process}"


_SOCKETS_INDEX = f"{_PREFIX}:sockets"


def activity_publish() -> None:
    """Move this process's counts into the shared cache, and publish its open sockets.
    A scheduler job (orders.apps): a few cache calls every FLUSH_SECONDS per process."""
    global _counts
    with _lock:
        counts, _counts = _counts, Counter()
    try:
        for (minute, result), count in counts.items():
            key = _outcome_key(minute, result)
            cache.add(key, 0, timeout=KEEP_MINUTES * 60)
            try:
                cache.incr(key, count)
            except ValueError:  # expired between add and incr
                cache.set(key, count, timeout=KEEP_MINUTES * 60)
        _sockets_publish()
    except Exception:
        # Kept for the next flush rather than lost (the cache answered nothing).
        with _lock:
            _counts.update(counts)
        raise


def _process() -> str:
    return f"{os.uname().nodename}:{os.getpid()}"


def _sockets_publish() -> None:
    from marketdata.streams import open_sockets

    process = _process()
    cache.set(_sockets_key(process), open_sockets(), timeout=SOCKETS_TTL)
    # The index of processes that ever published; entries whose key expired count 0.
    known = cache.get(_SOCKETS_INDEX) or []
    if process not in known:
        cache.set(_SOCKETS_INDEX, [*known[-63:], process], timeout=None)


def sockets_open() -> dict[str, int]:
    """Open sockets per live server process (those that published in the last SOCKETS_TTL)."""
    known = cache.get(_SOCKETS_INDEX) or []
    found = cache.get_many([_sockets_key(process) for process in known])
    return {process: found[_sockets_key(process)] for process in known if _sockets_key(process) in found}


def outcomes_recent(minutes: int = 5) -> dict[str, int]:
    """Orders by result over the last `minutes` whole minutes and the current one, summed
    across processes (what they flushed): {result: count}, largest first."""
    now = int(time.time() // 60)
    keys = {_outcome_key(minute, result): result for minute in range(now - minutes, now + 1) for result in RESULTS}
    totals: Counter = Counter()
    for key, count in cache.get_many(list(keys)).items():
        totals[keys[key]] += int(count)
    return dict(totals.most_common())


def refusals_recent(minutes: int = 5) -> dict[str, int]:
    """The refusals among `outcomes_recent`: {error code: count}, largest first."""
    return {result: count for result, count in outcomes_recent(minutes).items() if result != ACCEPTED}


def forget() -> None:
    """Drop this process's unflushed counts (a test starts from none)."""
    with _lock:
        _counts.clear()
