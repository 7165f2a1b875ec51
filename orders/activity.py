"""What the venue is doing right now, counted in each server process and summed across
them in the shared cache: order outcomes (refusals by error code) and open sockets.

Refusals are never written to the database (a refused order leaves no row), so they are
counted where they happen: `order_outcome`, called by `order_place` for every order,
adds one to a dict of this process (no I/O per order). Every FLUSH_SECONDS the
scheduler's `activity_publish` (every server process runs it) moves those counts into the
shared cache as per-minute buckets, one key per (minute, result), with an atomic
increment, so every process adds to the same buckets; and writes this process's open
sockets under its own key, which expires unless refreshed. The console sums them:
`outcomes_recent` and `sockets_open`. Without Redis the cache is this process's memory
and the figures are this process's.

Counts since the last flush are lost if a process dies: at most FLUSH_SECONDS of them.
"""

import os
import threading
import time
from collections import Counter

from django.core.cache import cache

from quantumtrades.core.errors import ErrorCode

# How often each process moves its counts into the shared cache.
FLUSH_SECONDS = 5.0
# How many minutes of buckets the cache keeps (the console shows the last few).
KEEP_MINUTES = 60
# A process's socket count expires unless refreshed: a dead process's sockets vanish
# from the total within this time.
SOCKETS_TTL = 3 * FLUSH_SECONDS
ACCEPTED = "accepted"
RESULTS = (ACCEPTED, *ErrorCode)
_PREFIX = "qt:activity"

_counts: Counter = Counter()
_lock = threading.Lock()


def order_outcome(*, source: str, type: str, result: str) -> None:
    """One order came through `source` as `type` and was `result` ("accepted", or the
    error code it was refused with). An increment under a lock: no I/O."""
    minute = int(time.time() // 60)
    with _lock:
        _counts[(minute, str(result))] += 1


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
