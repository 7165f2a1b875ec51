"""Market streams: each market's book, tape, ticker, candles and page fragments, live in
every server process, on the transport of `quantumtrades.core.streams`.

    channel layer -> Hub (one per process, `hub`): applies each market's changes in
        sequence order and renders every frame once
        -> MarketStream (one per market, `market`): the book, the tape, the stats and
           the fragments of the market's pages
        -> the transport's Sinks: the consumers' sockets (`marketdata.consumers`)

Nothing is missed silently:
- The hub applies book changes in sequence order, buffers early ones briefly, and resyncs
  from the database (`book_snapshot`) on a gap that does not fill, each time Redis
  confirms its subscription (so after an outage nothing is missed from that moment on),
  and when a periodic check finds the database ahead of it. A resync reaches integrators
  as an ordinary conflated `book_update` (the difference), so their chain stays unbroken.
- While the layer is down, orders go on (publishing never blocks nor raises), the books
  follow the database every DOWN_AUDIT_INTERVAL, and a new subscriber's snapshot is read
  from the database.
- Commit order survives processes that publish at their own pace: a trade waits until
  its command's book change is applied, and a late order or balance event older than
  one already sent is dropped (docs/ARCHITECTURE.md, "The live streams").
- A socket that does not read falls behind: it stops getting book updates and page
  fragments (the latest state is sent once it drains: a fresh `book_snapshot` and the
  current fragments); past a hard limit it gets an error and is closed.

Read them in this order: `options` (this app's knobs), `market`, `hub`.
"""

from quantumtrades.core.streams import option

from .hub import Hub, StreamUnavailable, get_hub, open_sockets, stop_hub
from .market import MarketStream, TapeTrade, stats_key

__all__ = [
    "Hub",
    "MarketStream",
    "StreamUnavailable",
    "TapeTrade",
    "get_hub",
    "open_sockets",
    "option",
    "stats_key",
    "stop_hub",
]
