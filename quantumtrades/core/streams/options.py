"""Settings of the live streams (`settings.STREAMS`) and the small helpers every part uses.

The transport's own knobs are listed here; an app that builds streams on it adds its own
with `register_defaults` (marketdata.streams does, for books, tapes and page fragments), so
`option(name)` answers every knob from one table and settings.STREAMS overrides any of them.
"""

import json
from datetime import UTC, datetime

from django.conf import settings

# The one channel-layer group every hub listens to and every publisher sends to.
GROUP = "streams"

# Defaults of settings.STREAMS (seconds unless named otherwise).
DEFAULTS = {
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
    # How long a page socket counts as "watching" (users_watching) without a refresh.
    "PRESENCE_TTL": 60,
}


def register_defaults(defaults: dict) -> None:
    """Add an app's knobs to the table (at import; a name is registered once)."""
    taken = DEFAULTS.keys() & defaults.keys()
    if taken:
        raise ValueError(f"stream options registered twice: {sorted(taken)}")
    DEFAULTS.update(defaults)


def option(name):
    return getattr(settings, "STREAMS", {}).get(name, DEFAULTS[name])


def dumps(message) -> str:
    return json.dumps(message, separators=(",", ":"))


def utc_now_text() -> str:
    return datetime.now(UTC).isoformat().replace("+00:00", "Z")
