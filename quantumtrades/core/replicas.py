"""Reads that may lag a little, from PostgreSQL hot standbys (docs/ARCHITECTURE.md, "Read replicas").

`DATABASE_REPLICA_URLS` names standbys; settings makes each a database alias, `replica_1`,
`replica_2`, ... Nothing reads from them unless it says so: the views that serve public market
data (markets, the tape, candles, the book's snapshot, the overview and a market page's public
part) ask `public_reads(request)` for a database and hand it to the selectors as `using=`. Every
other read and every write names no database, and `PrimaryRouter` sends it to the primary: the
engine, authentication, a trader's own orders, fills and balances, the live streams (which follow
the book's sequence and must never see it go back).

A public read goes to the primary instead when:
- the reader wrote something in the last REPLICA_READ_YOUR_WRITES_SECONDS (`writes_seen`,
  kept in the shared cache, so every process knows): a trader who just placed an order sees it
  in the book and the tape they read next;
- no standby is healthy: one is skipped when its replay lags more than REPLICA_MAX_LAG_SECONDS
  or it does not answer, judged at most once every HEALTH_CHECK_SECONDS per process.
"""

import itertools
import logging
import threading
import time

from django.conf import settings
from django.db import connections

from quantumtrades.core.cache import default_cache
from quantumtrades.core.process_caches import ProcessCache

log = logging.getLogger(__name__)

PRIMARY = "default"
REPLICA_PREFIX = "replica_"
SAFE_METHODS = ("GET", "HEAD", "OPTIONS")
# How long a standby's health, once judged, is believed in this process; one that did not
# answer is left alone longer, since asking it again costs a request CHECK_TIMEOUT_SECONDS.
HEALTH_CHECK_SECONDS = 1.0
DOWN_RECHECK_SECONDS = 5.0
# The longest a health check waits for a connection to a standby: one that is away must cost
# the request that checks it a moment (the standby's pool keeps a connection ready otherwise).
CHECK_TIMEOUT_SECONDS = 0.25

# A standby's lag in seconds: 0 while it has replayed all the WAL it received from a live
# WAL receiver (an idle primary sends nothing, and the last replayed commit may be old);
# otherwise the age of the last transaction it replayed (replay paused or behind, or the
# primary out of reach). NULL (no transaction replayed yet) counts as too far behind.
LAG_QUERY = """
SELECT pg_is_in_recovery(),
       CASE WHEN pg_last_wal_receive_lsn() = pg_last_wal_replay_lsn()
                 AND EXISTS (SELECT FROM pg_stat_wal_receiver) THEN 0
            ELSE EXTRACT(EPOCH FROM now() - pg_last_xact_replay_timestamp()) END
"""


def replica_aliases() -> list[str]:
    """The standbys' aliases, in the order DATABASE_REPLICA_URLS gives them."""
    return [alias for alias in settings.DATABASES if alias.startswith(REPLICA_PREFIX)]


class _Health:
    """What this process last learnt of each standby: {alias: (believed until, healthy)}."""

    def __init__(self):
        self.known: dict[str, tuple[float, bool]] = ProcessCache("standbys' health")
        self.lock = threading.Lock()

    def healthy(self, alias: str) -> bool:
        now = time.monotonic()
        known = self.known.get(alias)
        if known is not None and now < known[0]:
            return known[1]
        healthy, answered, why = replica_judged(alias)
        with self.lock:
            before = self.known.get(alias)
            self.known[alias] = (now + (HEALTH_CHECK_SECONDS if answered else DOWN_RECHECK_SECONDS), healthy)
        was_healthy = before[1] if before is not None else True
        if healthy and not was_healthy:
            log.warning("read replica %s is back in use", alias)
        elif was_healthy and not healthy:
            log.warning("read replica %s is skipped: %s", alias, why)
        return healthy

    def forget(self, alias: str | None = None) -> None:
        with self.lock:
            if alias is None:
                self.known.clear()
            else:
                self.known.pop(alias, None)


health = _Health()
_turns = itertools.count()


def replica_lag(alias: str) -> float | None:
    """How far `alias` is behind the primary, in seconds; None when it is not a standby
    in recovery or has replayed nothing yet. Raises what the database raises.

    Asked on a connection of the standby's pool, waiting at most CHECK_TIMEOUT_SECONDS for
    it, outside whatever connection the calling thread holds."""
    pool = connections[alias].pool
    pool.open()  # as Django's first connection would; nothing when it is open
    with pool.connection(timeout=CHECK_TIMEOUT_SECONDS) as raw, raw.cursor() as cursor:
        cursor.execute(LAG_QUERY)
        in_recovery, lag = cursor.fetchone()
    return float(lag) if in_recovery and lag is not None else None


def replica_judged(alias: str) -> tuple[bool, bool, str]:
    """(healthy, answered, why not): whether `alias` may serve reads, whether it answered,
    and what is wrong with it, for the log."""
    try:
        lag = replica_lag(alias)
    except Exception as exc:
        return False, False, f"it does not answer ({exc.__class__.__name__}: {exc})"
    if lag is None:
        return False, True, "not a standby in recovery, or nothing replayed yet"
    return lag <= settings.REPLICA_MAX_LAG_SECONDS, True, f"{lag:.1f} s behind"


def _wrote_key(user_id) -> str:
    return f"replicas:wrote:{user_id}"


def writes_seen(user_id: int | None) -> None:
    """`user_id` just wrote: their public reads go to the primary for a while. Free
    when no standby is configured."""
    if user_id is not None and replica_aliases():
        default_cache().set(_wrote_key(user_id), 1, timeout=settings.REPLICA_READ_YOUR_WRITES_SECONDS)


def _user_id(request) -> int | None:
    user = getattr(request, "user", None) if request is not None else None
    return user.pk if user is not None and user.is_authenticated else None


def public_reads(request=None) -> str:
    """The database to read public market data from for `request` (None: no reader):
    a healthy standby, taken in turn, or the primary."""
    aliases = replica_aliases()
    if not aliases or getattr(request, "method", "GET") not in SAFE_METHODS:
        return PRIMARY  # a request that writes reads what it wrote
    user_id = _user_id(request)
    if user_id is not None and default_cache().get(_wrote_key(user_id)):
        return PRIMARY
    first = next(_turns)
    for step in range(len(aliases)):
        alias = aliases[(first + step) % len(aliases)]
        if health.healthy(alias):
            return alias
    return PRIMARY


class PrimaryRouter:
    """Everything that names no database reads and writes the primary, an object read from
    a standby included; only the primary is migrated. Standbys are read only through
    `public_reads`."""

    def db_for_read(self, model, **hints):
        return PRIMARY

    def db_for_write(self, model, **hints):
        return PRIMARY

    def allow_relation(self, obj1, obj2, **hints):
        return True

    def allow_migrate(self, db, app_label, model_name=None, **hints):
        return db == PRIMARY


class ReadYourWritesMiddleware:
    """After a request that may have written (any method but GET, HEAD, OPTIONS) by a
    signed-in user, their public reads go to the primary for a while (`writes_seen`).
    Outermost but the request id, so it sees the user a view authenticated (DRF's too)."""

    sync_capable = True
    async_capable = False

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        response = self.get_response(request)
        if request.method not in SAFE_METHODS and replica_aliases():
            writes_seen(_user_id(request))
        return response
