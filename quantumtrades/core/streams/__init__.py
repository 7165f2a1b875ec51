"""The live streams' transport: from committed events to every socket of every process.

    commit --on_commit--> publish_events()           (event bus subscriber, never blocks)
        -> Publisher: bounded queue, one background thread        (publishing)
        -> channel layer, group "streams": one StreamsMessage       (messages)
           per PUBLISH_INTERVAL (Redis: one PUBLISH)
        -> one Subscription per process (Redis pub/sub)           (subscription)
        -> the process's hub, an app's (marketdata.streams.Hub): it builds each frame once
        -> Sink, one per socket: the same frame bytes to every     (sinks, daphne)
           local socket

It imports no app: events say what they are by their attributes (`messages.PublicEvent`,
`messages.PrivateEvent`), and the hub registers itself in `publishing.hubs`.

Why this shape: with one group member per socket, Channels costs ~200 µs of CPU per
delivery and saturates near 5,000 deliveries/s (docs/BENCHMARKS.md, "Live streams"). Here
a change crosses Redis once per process, is serialised or rendered once, and a delivery is
one write of pre-built bytes to a socket.

Nothing is dropped silently: the publisher's queue is bounded, and on overflow, or when
the layer is unreachable, batches are dropped with a warning and every hub is told to
resync from the database (`messages.Resync`). `LayerHealth` logs once when the layer goes
and once when it is back.

Modules, in the order a change travels: `options` (settings.STREAMS and helpers),
`messages`, `publishing`, `subscription`, `sinks` and `daphne` (the fast path's adapter).
"""

from .messages import PrivateEvent, PublicEvent
from .options import DEFAULTS, GROUP, dumps, option, register_defaults, utc_now_text
from .publishing import (
    LayerHealth,
    Publisher,
    layer_health,
    publish_events,
    publisher,
    register_user_fragments,
    request_resync,
    stream_to_user,
    user_is_watching,
    users_watching,
)
from .sinks import Frame, Sink

__all__ = [
    "DEFAULTS",
    "GROUP",
    "Frame",
    "LayerHealth",
    "PrivateEvent",
    "PublicEvent",
    "Publisher",
    "Sink",
    "dumps",
    "layer_health",
    "option",
    "publish_events",
    "publisher",
    "register_defaults",
    "register_user_fragments",
    "request_resync",
    "stream_to_user",
    "user_is_watching",
    "users_watching",
    "utc_now_text",
]
