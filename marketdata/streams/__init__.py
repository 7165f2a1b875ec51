"""Live streams: from the engine's committed events to every socket on every process.

    engine commit --on_commit--> publish_events()          (event bus subscriber, never blocks)
        -> Publisher: bounded queue, one background thread
        -> channel layer, group "streams": one message per command (Redis: one PUBLISH)
        -> Hub, one per daphne process: the only subscription in that process
             (on Redis it holds it itself: marketdata.subscription, which says why)
             per market (MarketStream): the book (applied in seq order), tape, ticker,
             candles
             renders each frame once: integrator JSON and htmx fragments
        -> Sink, one per socket: the same frame bytes written to every local socket

Why this shape: with one group member per socket, Channels costs ~200 us of CPU per
delivery and saturates near 5,000 deliveries/s (shared/bench/README.md). Here a change
crosses Redis once per process, is serialised or rendered once per market, and a delivery
is one write of pre-built bytes to a socket.

Nothing is dropped silently:
- The publisher's queue is bounded; on overflow, or when the layer is unreachable, batches
  are dropped with a WARNING/ERROR and the hubs resync from the database (the next
  change's sequence shows the gap; the publisher also announces its recovery).
- The hub applies book changes in sequence order, buffers early ones briefly, and
  resyncs from `book_snapshot` on a gap that does not fill, each time Redis confirms its
  subscription (so after an outage nothing is missed from that moment on), and when a
  periodic check finds the database ahead of it. A resync reaches integrators as an
  ordinary conflated `book_update` (the difference), so their chain stays unbroken.
- While the layer is down, orders go on (publishing never blocks nor raises), the books
  follow the database every DOWN_AUDIT_INTERVAL, and a new subscriber's snapshot is read
  from the database. The log gets one warning when the layer goes and one line when it
  is back (`LayerHealth`).
- A socket that does not read falls behind: it stops getting book updates and page
  fragments (the latest state is sent once it drains: a fresh `book_snapshot` and the
  current fragments); past a hard limit it gets an error and is closed.

Layers: a channel layer shared between processes (Redis pub/sub) carries the messages;
with the in-memory layer (the embedded default, one process) the publisher hands them
straight to the hubs of this process.

Where each part lives (read them in this order):
- `options`: the STREAMS settings and their defaults, shared helpers.
- `publishing`: `publish_events`, `stream_to_user`, the `Publisher` thread, `LayerHealth`,
  and the in-memory layer's hand-over to this process's hubs.
- `sinks`: `Frame` (bytes built once) and `Sink` (one socket: its writes, its backlog).
- `market`: `MarketStream`, one market's book, tape, ticker and fragments in one process.
- `hub`: `Hub`, the process's one subscription, its markets and sockets; `get_hub`.
The consumers (`marketdata.consumers`) and the orders app use the names exported here.
"""

from .hub import Hub, StreamUnavailable, get_hub, open_sockets, stop_hub
from .market import MarketStream, TapeTrade, stats_key
from .options import DEFAULTS, GROUP, dumps, option, utc_now_text
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
from .sinks import Frame, Sink, daphne_protocol

__all__ = [
    "DEFAULTS",
    "GROUP",
    "Frame",
    "Hub",
    "LayerHealth",
    "MarketStream",
    "Publisher",
    "Sink",
    "StreamUnavailable",
    "TapeTrade",
    "daphne_protocol",
    "dumps",
    "get_hub",
    "layer_health",
    "open_sockets",
    "option",
    "publish_events",
    "publisher",
    "register_user_fragments",
    "request_resync",
    "stats_key",
    "stop_hub",
    "stream_to_user",
    "user_is_watching",
    "users_watching",
    "utc_now_text",
]
