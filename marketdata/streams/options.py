"""Settings of the live streams and the small helpers every part uses."""

import json
from datetime import UTC, datetime

from django.conf import settings

# The one channel-layer group every hub listens to and every publisher sends to.
GROUP = "streams"

# Defaults of settings.STREAMS (seconds unless named otherwise).
DEFAULTS = {
    # Least time between two book_update messages of one market (conflation).
    "BOOK_INTERVAL": 0.02,
    # Least time between two renders of a market's page fragments, and of a process's
    # renders of traders' private fragments (orders.live).
    "PAGE_INTERVAL": 0.1,
    # Least time between two ticker/chart refreshes (database reads) of a market.
    "STATS_INTERVAL": 1.0,
    # How long an early book change waits for the one before it before the hub resyncs.
    "GAP_TIMEOUT": 0.5,
    # Book changes held while waiting for a missing one; past this the hub resyncs at once.
    "MAX_WAITING": 1000,
    # How often the hub compares its books' sequences with the database.
    "AUDIT_INTERVAL": 5.0,
    # ... and how often while the channel layer is down: the books then follow the
    # database at this pace, so open sockets keep getting (slower) updates.
    "DOWN_AUDIT_INTERVAL": 1.0,
    # Layer round trip the hub makes to prove its subscription is alive.
    "PING_INTERVAL": 1.0,
    "PING_TIMEOUT": 3.0,
    # How long a first connection waits for the hub's subscription before going on without it.
    "READY_TIMEOUT": 3.0,
    "HEARTBEAT_INTERVAL": 20.0,
    # Bytes queued for a socket past which it stops getting conflatable frames ...
    "SOCKET_SOFT_LIMIT": 256 * 1024,
    # ... below which it catches up with the latest state ...
    "SOCKET_LOW_LIMIT": 64 * 1024,
    # ... and past which it is told and closed.
    "SOCKET_HARD_LIMIT": 4 * 1024 * 1024,
    # Least time between two messages of a process's publisher: the commands committed
    # meanwhile go out together, in one message (docs/BENCHMARKS.md, "After-commit work").
    "PUBLISH_INTERVAL": 0.02,
    # Batches the publisher queues while the layer is slow; the oldest go first past it.
    "PUBLISH_QUEUE": 10000,
    "PUBLISH_TIMEOUT": 2.0,
    # While the layer is down, the publisher tries again this often (and drops batches in between).
    "PUBLISH_RETRY": 1.0,
    # Page fragments.
    "PAGE_BOOK_DEPTH": 16,
    "TAPE_LENGTH": 30,
    "CHART_INTERVAL": "1m",
    # Candles a market page's chart starts with (it follows the newest from the stream).
    "CHART_CANDLES": 300,
    "SPARKLINE_INTERVAL": "1h",
    "SPARKLINE_CANDLES": 24,
    # How long a page socket counts as "watching" (user_is_watching) without a refresh.
    "PRESENCE_TTL": 60,
}


def option(name):
    return getattr(settings, "STREAMS", {}).get(name, DEFAULTS[name])


def dumps(message) -> str:
    return json.dumps(message, separators=(",", ":"))


def utc_now_text() -> str:
    return datetime.now(UTC).isoformat().replace("+00:00", "Z")
