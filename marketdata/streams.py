"""Live streams: from the engine's committed events to every socket on every process.

    engine commit --on_commit--> publish_events()          (event bus subscriber, never blocks)
        -> Publisher: bounded queue, one background thread
        -> channel layer, group "streams": one message per command (Redis: one PUBLISH)
        -> Hub, one per daphne process: the only subscription in that process
             (on Redis it holds it itself: marketdata.subscription, which says why)
             per market (MarketStream): the book (applied in seq order), tape, ticker
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
"""

import asyncio
import atexit
import collections
import contextlib
import functools
import heapq
import json
import logging
import os
import struct
import threading
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal

from asgiref.sync import sync_to_async
from channels.db import database_sync_to_async
from channels.layers import InMemoryChannelLayer, get_channel_layer
from channels_redis.pubsub import RedisPubSubChannelLayer
from django.conf import settings
from django.core.cache import cache
from django.template.loader import render_to_string

from accounts.money import ZERO, money, money_text

from . import selectors
from .models import Market, Trade
from .subscription import Subscription

log = logging.getLogger(__name__)

# The one channel-layer group every hub listens to and every publisher sends to.
GROUP = "streams"

# Defaults of settings.STREAMS (seconds unless named otherwise).
DEFAULTS = {
    # Least time between two book_update messages of one market (conflation).
    "BOOK_INTERVAL": 0.02,
    # Least time between two renders of a market's page fragments.
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


# --- Publishing (any thread, after commit) ----------------------------------------------


def publish_events(batch: list) -> None:
    """Event bus subscriber (`quantumtrades.events`): one command's events, after commit.

    Never blocks and never raises into the engine. Events are read generically: each has
    `as_message()`; one with a `user_id` is private to that user, one with a `market_id`
    is public (this app must not import `orders`, whose events these partly are).
    """
    publisher.put(("events", time.time(), batch))


def stream_to_user(user_id: int, fragments_html: str) -> None:
    """Send rendered HTML fragments to every live page socket of one user, on every process.

    For the pages' private parts (open orders, fills, balances), which the orders app
    renders from its own events. `fragments_html` is one or more elements, each with an
    `id` and `hx-swap-oob="true"`; htmx swaps each into the element with that id.

    Call it after commit (from an event subscriber, `transaction.on_commit`, any thread):
    it only queues the fragments and returns at once; it never raises for a missing or
    unreachable channel layer (that is logged). Only sockets on `/ws/live/...` whose
    session belongs to `user_id` receive it; integrators' JSON sockets never do.
    """
    publisher.put(("user_html", int(user_id), str(fragments_html)))


def request_resync() -> None:
    """Ask every hub to reload its books from the database (after an operator's repair)."""
    publisher.put(("resync",))


_user_fragments = None


def register_user_fragments(render) -> None:
    """Register `render(user_id) -> html`: all of a user's private fragments as they are now.

    Sent to a signed-in page socket when it connects (so a reconnected page is current)
    and again after the channel layer was lost and came back. Called in a worker thread
    with database access.
    """
    global _user_fragments
    _user_fragments = render


def user_is_watching(user_id: int) -> bool:
    """Whether the user has a page socket open on any process (as of the last minute).

    Lets a renderer of private fragments skip users nobody is looking at. Errs on the side
    of True when it cannot tell.
    """
    try:
        return cache.get(_presence_key(user_id)) is not None
    except Exception:
        return True


def _presence_key(user_id) -> str:
    return f"{settings.CHANNEL_LAYER_PREFIX}watching.{user_id}"


def _mark_present(user_ids) -> None:
    cache.set_many({_presence_key(user_id): 1 for user_id in user_ids}, timeout=option("PRESENCE_TTL"))


def _wire_items(items) -> list:
    """Queue entries as channel-layer payloads: plain JSON-like data (msgpack over Redis)."""
    out = []
    for item in items:
        if item[0] == "events":
            _, committed, batch = item
            public, private = [], []
            for event in batch:
                try:
                    message = event.as_message()
                except Exception:
                    log.exception("stream: %r has no usable as_message(); not streamed", event)
                    continue
                user_id = getattr(event, "user_id", None)
                if user_id is not None:
                    private.append([user_id, message])
                elif getattr(event, "market_id", None) is not None:
                    public.append({**message, "market_id": event.market_id})
            if public or private:
                out.append({"k": "b", "t": committed, "pub": public, "prv": private})
        elif item[0] == "user_html":
            out.append({"k": "u", "u": item[1], "h": item[2]})
        elif item[0] == "resync":
            out.append({"k": "r"})
    return out


class LayerHealth:
    """This process's view of the channel layer, told by the publisher and the hub.

    Either may notice first that Redis went away or came back; the log gets one warning
    when it goes and one line when it is back, not a line per batch, ping or socket.
    """

    def __init__(self):
        self._lock = threading.Lock()
        self.down_since = None

    @property
    def up(self) -> bool:
        return self.down_since is None

    def lost(self, exc) -> None:
        with self._lock:
            if self.down_since is not None:
                return
            self.down_since = time.monotonic()
        reason = f"{exc.__class__.__name__}: {exc}" if isinstance(exc, BaseException) else str(exc)
        log.warning(
            "stream: channel layer unreachable (%s); live updates paused, orders and pages are not affected", reason
        )

    def back(self) -> None:
        with self._lock:
            if self.down_since is None:
                return
            since, self.down_since = self.down_since, None
        log.warning(
            "stream: channel layer back after %.1f s; live streams resync from the database", time.monotonic() - since
        )


layer_health = LayerHealth()


class StreamUnavailable(Exception):
    """A market's book could not be read (the database is down); try again."""


def _layer_is_local(layer) -> bool:
    return layer is None or isinstance(layer, InMemoryChannelLayer)


class Publisher:
    """Carries queued batches to the channel layer from one background thread.

    `put` only appends to a bounded queue, so the committing thread never waits on the
    network. The thread has its own event loop (and so its own Redis connection).
    """

    def __init__(self):
        self._items = collections.deque()
        self._lock = threading.Lock()
        self._wake = threading.Event()
        self._thread = None
        self._pid = None
        self._busy = False
        self._overflow = 0
        self._down_since = None
        self._next_try = 0.0
        self._lost = 0
        self.sent = 0

    def put(self, item) -> None:
        try:
            layer = get_channel_layer()
        except Exception:
            log.exception("stream: channel layer misconfigured; %s not streamed", item[0])
            return
        if _layer_is_local(layer):
            deliver_local(_wire_items([item]))
            return
        with self._lock:
            if len(self._items) >= option("PUBLISH_QUEUE"):
                self._items.popleft()
                self._overflow += 1
            self._items.append(item)
            if self._thread is None or self._pid != os.getpid() or not self._thread.is_alive():
                self._start()
        self._wake.set()

    def _start(self):
        self._pid = os.getpid()
        self._thread = threading.Thread(target=self._run, name="stream-publisher", daemon=True)
        self._thread.start()

    def _run(self):
        loop = asyncio.new_event_loop()
        while True:
            # While the layer is down, wake up by itself to try again: the hubs hear of
            # the recovery (a resync) even if nothing else is published for a while.
            woken = self._wake.wait(option("PUBLISH_RETRY") if self._down_since is not None else None)
            if not woken:
                with contextlib.suppress(Exception):
                    loop.run_until_complete(self._send([{"k": "r"}]))
                continue
            with self._lock:
                items = list(self._items)
                self._items.clear()
                self._wake.clear()
                overflow, self._overflow = self._overflow, 0
                self._busy = bool(items)
            if overflow:
                log.warning(
                    "stream: publish queue full; dropped the %d oldest batches (streams resync by sequence)", overflow
                )
                items.append(("resync",))
            try:
                if items:
                    loop.run_until_complete(self._send(_wire_items(items)))
            except Exception:
                log.exception("stream: publisher failed on %d batches", len(items))
            finally:
                self._busy = False

    async def _send(self, payloads):
        if not payloads:
            return
        now = time.monotonic()
        if self._down_since is not None and now < self._next_try:
            self._lost += len(payloads)
            return
        layer = get_channel_layer()
        timeout = option("PUBLISH_TIMEOUT")
        chunk = 100
        for start in range(0, len(payloads), chunk):
            try:
                await asyncio.wait_for(
                    layer.group_send(GROUP, {"type": "streams.items", "items": payloads[start : start + chunk]}),
                    timeout,
                )
            except Exception as exc:
                self._lost += len(payloads) - start
                self._next_try = time.monotonic() + option("PUBLISH_RETRY")
                if self._down_since is None:
                    self._down_since = now
                layer_health.lost(exc)
                return
            self.sent += 1
        if self._down_since is not None:
            log.info("stream: %d batches were not published while the layer was down", self._lost)
            self._down_since = None
            self._lost = 0
            layer_health.back()
            if any(payload.get("k") == "r" for payload in payloads):
                return
            try:
                await asyncio.wait_for(
                    layer.group_send(GROUP, {"type": "streams.items", "items": [{"k": "r"}]}), timeout
                )
            except Exception:
                log.warning("stream: could not announce the resync; hubs find the gap by sequence")

    def flush(self, timeout: float = 2.0) -> bool:
        """Wait until everything queued so far went out (tests, process exit)."""
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            with self._lock:
                idle = not self._items and not self._busy
            if idle:
                return True
            time.sleep(0.005)
        return False


publisher = Publisher()
atexit.register(publisher.flush, 1.0)


def deliver_local(payloads) -> None:
    """In-memory layer: hand payloads to every hub of this process, each in its own loop."""
    if not payloads:
        return
    with _hubs_lock:
        hubs = list(_hubs.values())
    for hub in hubs:
        if not hub.stopped and not hub.loop.is_closed():
            with contextlib.suppress(RuntimeError):  # the loop closed meanwhile
                hub.loop.call_soon_threadsafe(hub.receive_items, payloads)


# --- Frames and sockets -------------------------------------------------------------------


class Frame:
    """One message as it goes on the wire: serialised or rendered once, sent to many."""

    __slots__ = ("_wire", "data", "text")

    def __init__(self, text: str):
        self.text = text
        self.data = text.encode()
        self._wire = None

    @property
    def wire(self) -> bytes:
        # An unmasked, unfragmented, uncompressed server text frame (RFC 6455 section 5.2).
        if self._wire is None:
            n = len(self.data)
            if n < 126:
                header = struct.pack("!BB", 0x81, n)
            elif n < 65536:
                header = struct.pack("!BBH", 0x81, 126, n)
            else:
                header = struct.pack("!BBQ", 0x81, 127, n)
            self._wire = header + self.data
        return self._wire


def daphne_protocol(send):
    """The daphne (autobahn) protocol behind an ASGI `send`, if that is what it is.

    Daphne's websocket `send` is `functools.partial(server.handle_reply, protocol)`. With
    the protocol a frame is written to the transport without a coroutine per socket, and
    the bytes still queued for a socket can be read (daphne's ASGI send never blocks).
    """
    if isinstance(send, functools.partial) and getattr(send.func, "__name__", "") == "handle_reply":
        protocol = send.args[0] if len(send.args) == 1 else None
        if hasattr(protocol, "sendMessage") and hasattr(protocol, "transport"):
            return protocol
    return None


class Sink:
    """One socket as the hub sees it: where its frames go and how far behind it is."""

    __slots__ = (
        "__weakref__",
        "auth_expires",
        "behind",
        "books",
        "closing",
        "consumer",
        "hub",
        "kind",
        "market",
        "page_user",
        "private_user",
        "protocol",
        "raw",
        "trades",
        "_outbox",
        "_outbox_bytes",
        "_writer",
    )

    def __init__(self, hub, consumer, kind: str):
        self.hub = hub
        self.consumer = consumer
        # "api" (/ws JSON), "page" (/ws/live/<symbol>/), "overview" (/ws/live/), "private" (/ws/live/me/)
        self.kind = kind
        self.protocol = daphne_protocol(consumer.scope.get("server_send"))
        self.raw = None  # whether pre-built wire frames may go straight to the transport
        self.behind = False
        self.closing = False
        self.books = set()  # MarketStreams whose book this socket follows
        self.trades = set()
        self.market = None  # page: its MarketStream
        self.private_user = None  # api: user id of the private `orders` channel
        self.page_user = None  # page: user id that gets stream_to_user fragments
        self.auth_expires = None
        self._outbox = collections.deque()
        self._outbox_bytes = 0
        self._writer = None

    def pending_bytes(self) -> int:
        protocol = self.protocol
        if protocol is None:
            return self._outbox_bytes
        transport = protocol.transport
        try:
            # Twisted's FileDescriptor write buffer (dataBuffer from offset, plus the
            # writes not yet joined into it).
            return len(transport.dataBuffer) - transport.offset + transport._tempDataLen
        except (AttributeError, TypeError):
            return 0

    def send(self, frame: Frame, *, droppable: bool = False) -> bool:
        """Queue a frame. A droppable (conflatable) frame is refused while the socket is behind."""
        if self.closing:
            return False
        pending = self.pending_bytes()
        if pending > self.hub.hard_limit:
            self.overflow()
            return False
        if droppable and (self.behind or pending > self.hub.soft_limit):
            if not self.behind:
                self.behind = True
                self.hub.behind.add(self)
            return False
        protocol = self.protocol
        if protocol is None:
            self._outbox.append(frame)
            self._outbox_bytes += len(frame.data)
            if self._writer is None:
                self._writer = asyncio.ensure_future(self._drain())
            return True
        if protocol.state != protocol.STATE_OPEN:
            return False
        if self.raw is None:
            # Autobahn would send exactly these bytes: no compression, no server-side
            # masking, no automatic fragmentation were negotiated or configured.
            self.raw = (
                getattr(protocol, "_perMessageCompress", True) is None
                and getattr(protocol, "maskServerFrames", True) is False
                and not getattr(protocol, "autoFragmentSize", True)
                and hasattr(protocol, "send_queue")
            )
        if self.raw and protocol.send_state == protocol.SEND_STATE_GROUND and not protocol.send_queue:
            self._write_wire(protocol.transport, frame.wire)
        else:
            protocol.sendMessage(frame.data)
        return True

    @staticmethod
    def _write_wire(transport, data: bytes):
        """Write to the socket at once when Twisted holds nothing back for it.

        Twisted's `write` only buffers, then arms the reactor for writability and writes
        on the next turn: two epoll changes and a callback per frame and socket, most of
        the cost of a delivery. With its buffer empty, the kernel takes a small frame
        whole; whatever it does not take goes to Twisted's buffer behind it, in order.
        """
        sock = getattr(transport, "socket", None)
        if (
            sock is None
            or transport._tempDataLen
            or transport.offset != len(transport.dataBuffer)
            or transport.disconnecting
            or getattr(transport, "TLS", False)
        ):
            transport.write(data)
            return
        try:
            sent = sock.send(data)
        except (BlockingIOError, InterruptedError):
            sent = 0
        except OSError:
            transport.write(data)  # a broken connection: Twisted notices and closes it
            return
        if sent < len(data):
            transport.write(data[sent:])

    async def _drain(self):
        # ASGI servers other than daphne (and tests): one writer task per socket.
        try:
            while self._outbox:
                frame = self._outbox.popleft()
                self._outbox_bytes -= len(frame.data)
                await self.consumer.send(text_data=frame.text)
        except Exception:
            self._outbox.clear()
            self._outbox_bytes = 0
        finally:
            self._writer = None

    def send_message(self, message: dict) -> bool:
        return self.send(Frame(dumps(message)))

    def overflow(self):
        """Too far behind to catch up: say so (it is queued behind the rest) and close."""
        if self.closing:
            return
        log.warning("stream: closing a socket %d bytes behind", self.pending_bytes())
        if self.kind == "api":
            frame = Frame(
                dumps(
                    {
                        "type": "error",
                        "code": "SLOW_CONSUMER",
                        "message": "The connection fell too far behind and is closed; reconnect and subscribe again.",
                    }
                )
            )
            if self.protocol is None:
                self._outbox.append(frame)
                self._outbox_bytes += len(frame.data)
            elif self.protocol.state == self.protocol.STATE_OPEN:
                self.protocol.sendMessage(frame.data)
        self.closing = True
        self.hub.detach(self)
        asyncio.ensure_future(self._close())

    async def _close(self):
        if self.protocol is None and self._outbox and self._writer is None:
            self._writer = asyncio.ensure_future(self._drain())
        if self._writer is not None:
            await asyncio.wait([self._writer], timeout=5)
        # 1013 "try again later": htmx's ws extension reconnects on it.
        await self.consumer.close(code=1013)


# --- Per-market state ---------------------------------------------------------------------


@dataclass(frozen=True)
class TapeTrade:
    """A trade as the tape shows it: the attributes of `Trade` the fragments use."""

    id: int
    price: Decimal
    quantity: Decimal
    taker_side: str
    created_at: datetime

    @classmethod
    def of_message(cls, message: dict) -> "TapeTrade":
        return cls(
            id=message["id"],
            price=Decimal(message["price"]),
            quantity=Decimal(message["quantity"]),
            taker_side=message["taker_side"],
            created_at=datetime.fromisoformat(message["time"]),
        )

    @classmethod
    def of_trade(cls, trade: Trade) -> "TapeTrade":
        return cls(trade.pk, trade.price, trade.quantity, trade.taker_side, trade.created_at)

    def as_message(self, symbol: str) -> dict:
        return {
            "type": "trade",
            "symbol": symbol,
            "id": self.id,
            "price": money_text(self.price),
            "quantity": money_text(self.quantity),
            "taker_side": self.taker_side,
            "time": self.created_at.isoformat(),
        }


ZERO_TEXT = money_text(money(ZERO))
# Trade ids a market stream remembers, to send each trade once.
KNOWN_TRADES = 2000
RESYNC_TRADES = 200
SIDES = ("bids", "asks")


def _read_market(market_id: int, first: bool):
    """One database round for a (re)load: the market, its book, its latest trades."""
    market = Market.objects.select_related("base", "quote").get(pk=market_id)
    snapshot = selectors.book_snapshot(market=market, depth=selectors.MAX_DEPTH)
    # On a resync the latest trades are compared with those already sent: the missed ones
    # go out (a resync after more than RESYNC_TRADES trades were lost says so in the log).
    trades = selectors.trades_recent(market=market, limit=option("TAPE_LENGTH") if first else RESYNC_TRADES)
    return market, snapshot, [TapeTrade.of_trade(trade) for trade in trades]


def _read_stats(market: Market, chart: bool, sparkline: bool):
    ticker = selectors.ticker(market=market)
    candles = selectors.candle_tails(market=market) if chart else None
    spark = (
        selectors.candles(market=market, interval=option("SPARKLINE_INTERVAL"), limit=option("SPARKLINE_CANDLES"))
        if sparkline
        else None
    )
    return ticker, candles, spark


class MarketStream:
    """One market in one process: its book and tape, kept from the stream of changes."""

    def __init__(self, hub, market: Market):
        self.hub = hub
        self.loop = hub.loop
        self.market = market
        self.id = market.pk
        self.symbol = market.symbol
        self.seq = None  # None until loaded; changes wait meanwhile
        self.book = {"bids": {}, "asks": {}}  # Decimal price -> (price text, quantity text)
        self.changes = {"bids": {}, "asks": {}}  # since flushed_seq, same shape
        self.flushed_seq = None
        self.waiting = {}  # prev_seq -> book_update message that arrived early
        self.loading = None  # future of the (re)load in progress
        self.load_failing = False
        self.reload_again = False
        self.gap_timer = None
        self.suspect_seq = None
        self.book_subs = set()  # sockets in step with flushed_seq
        self.book_new = set()  # sockets that need a snapshot
        self.trade_subs = set()
        self.page_subs = set()
        self.page_new = set()
        self.tape = collections.deque(maxlen=option("TAPE_LENGTH"))  # newest first
        self.last_trade_id = 0
        self.trade_frames = []
        self.trade_timer = None
        self.known_trades = set()
        self.known_order = collections.deque()
        self.early_trades = []
        self.ticker = None
        self.candles = {}  # selectors.candle_tails
        self.chart_loaded = False
        self.sparkline = []
        self.sparkline_loaded = False
        self.fragments = {}  # id -> html, current
        self.stale = {"book", "tape", "ticker", "chart", "market_row"}
        self.dirty = set()
        self.stats_dirty = True
        self.stats_task = None
        self.stats_at = -1e9
        self.book_timer = None
        self.book_flushed_at = -1e9
        self.page_timer = None
        self.page_flushed_at = -1e9
        self.snapshot_frame = None  # (seq, Frame)

    # Loading -------------------------------------------------------------------------

    async def ready(self):
        if self.seq is None:
            await self.resync()

    def resync(self):
        """(Re)load the book and the missed trades from the database; returns a future."""
        if self.loading is not None:
            self.reload_again = True
            return self.loading
        self.loading = asyncio.ensure_future(self._load())
        return self.loading

    async def _load(self):
        try:
            while True:
                self.reload_again = False
                first = self.seq is None
                try:
                    market, snapshot, trades = await database_sync_to_async(_read_market)(self.id, first)
                except Market.DoesNotExist:
                    log.warning("stream: market %s is gone", self.symbol)
                    self.hub.forget(self)
                    return
                self.market = market
                self._apply_snapshot(snapshot, first)
                if not first and len(trades) == RESYNC_TRADES and trades[-1].id not in self.known_trades:
                    log.warning("stream: %s resync may have missed trades older than id %s", self.symbol, trades[-1].id)
                self._add_trades(reversed(trades), announce=not first)
                early, self.early_trades = self.early_trades, []
                self._add_trades([TapeTrade.of_message(m) for m in early], announce=True)
                if not self.reload_again:
                    break
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            if not self.load_failing:  # once until it works again (the database may be down)
                self.load_failing = True
                log.warning("stream: could not load %s (%s: %s); retrying", self.symbol, exc.__class__.__name__, exc)
            self.loop.call_later(1.0, self.resync)
        else:
            self.load_failing = False
        finally:
            self.loading = None

    def _apply_snapshot(self, snapshot, first):
        fresh = {
            "bids": {price: (money_text(price), money_text(quantity)) for price, quantity in snapshot.bids},
            "asks": {price: (money_text(price), money_text(quantity)) for price, quantity in snapshot.asks},
        }
        if first:
            self.book = fresh
            self.seq = self.flushed_seq = snapshot.seq
        elif snapshot.seq >= self.seq:
            # What changed between the book the sockets know and the database's, as one
            # conflated update: their chain of prev_seq/seq goes on without a break.
            for side in SIDES:
                old, new, changes = self.book[side], fresh[side], self.changes[side]
                for price, level in old.items():
                    if price not in new:
                        changes[price] = (level[0], ZERO_TEXT)
                for price, level in new.items():
                    if old.get(price) != level:
                        changes[price] = level
            if snapshot.seq != self.seq:
                log.debug("stream: %s resynced from seq %s to %s", self.symbol, self.seq, snapshot.seq)
            self.book = fresh
            self.seq = snapshot.seq
        self.mark_dirty("book")
        self.suspect_seq = None
        # Changes that arrived meanwhile: keep those past the snapshot.
        self.waiting = {prev: m for prev, m in self.waiting.items() if m["seq"] > self.seq}
        self._drain_waiting()
        if self.waiting:
            self._arm_gap_timer()
        self.schedule_book_flush()

    # Book changes ---------------------------------------------------------------------

    def on_book(self, message):
        seq = message["seq"]
        if self.seq is not None and seq <= self.seq:
            return  # already in the book (a resync read it, or a duplicate)
        if self.seq is not None and message["prev_seq"] == self.seq:
            self._apply(message)
            self._drain_waiting()
            self.schedule_book_flush()
            self.mark_dirty("book")
        else:
            self.waiting[message["prev_seq"]] = message
            if len(self.waiting) > option("MAX_WAITING"):
                log.warning(
                    "stream: %s has %d changes waiting for seq %s; resyncing", self.symbol, len(self.waiting), self.seq
                )
                self.resync()
            elif self.seq is not None:
                self._arm_gap_timer()
        if not self.waiting and self.gap_timer is not None:
            self.gap_timer.cancel()
            self.gap_timer = None

    def _apply(self, message):
        for side in SIDES:
            book, changes = self.book[side], self.changes[side]
            for price_text, quantity_text in message[side]:
                price = Decimal(price_text)
                level = (price_text, quantity_text)
                if Decimal(quantity_text):
                    book[price] = level
                else:
                    book.pop(price, None)
                changes[price] = level
        self.seq = message["seq"]

    def _drain_waiting(self):
        while self.seq in self.waiting:
            self._apply(self.waiting.pop(self.seq))
            self.mark_dirty("book")

    def _arm_gap_timer(self):
        if self.gap_timer is None:
            self.gap_timer = self.loop.call_later(option("GAP_TIMEOUT"), self._gap_expired)

    def _gap_expired(self):
        self.gap_timer = None
        if self.waiting and self.loading is None:
            log.warning(
                "stream: %s missed changes after seq %s (next waiting: %s); resyncing",
                self.symbol,
                self.seq,
                min(m["prev_seq"] for m in self.waiting.values()),
            )
            self.resync()

    # Integrator book frames -----------------------------------------------------------

    def schedule_book_flush(self):
        if self.book_timer is not None or self.seq is None:
            return
        delay = self.book_flushed_at + self.hub.book_interval - self.loop.time()
        if delay <= 0:
            # Soon, not now: changes already queued in this loop turn merge into one frame.
            self.book_timer = self.loop.call_soon(self.flush_book)
        else:
            self.book_timer = self.loop.call_later(delay, self.flush_book)

    def flush_book(self):
        self.book_timer = None
        if self.seq is None:
            return
        if self.seq != self.flushed_seq:
            self.book_flushed_at = self.loop.time()
            frame = Frame(
                dumps(
                    {
                        "type": "book_update",
                        "symbol": self.symbol,
                        "prev_seq": self.flushed_seq,
                        "seq": self.seq,
                        "bids": [list(level) for _, level in sorted(self.changes["bids"].items(), reverse=True)],
                        "asks": [list(level) for _, level in sorted(self.changes["asks"].items())],
                    }
                )
            )
            lagging = [sink for sink in list(self.book_subs) if not sink.send(frame, droppable=True)]
            for sink in lagging:
                self.book_subs.discard(sink)
                if not sink.closing:
                    self.book_new.add(sink)
            self.flushed_seq = self.seq
            self.changes = {"bids": {}, "asks": {}}
            self.hub.stats_book_frames += 1
        if self.book_new:
            self.send_snapshots()

    def send_snapshots(self):
        """Newcomers (and sockets that caught up) start from the book at flushed_seq."""
        if self.seq is None or self.seq != self.flushed_seq:
            self.schedule_book_flush()  # the flush sends them
            return
        frame = self.snapshot()
        for sink in list(self.book_new):
            if sink.behind or sink.closing:
                continue
            if sink.send(frame, droppable=True):
                self.book_new.discard(sink)
                self.book_subs.add(sink)

    def snapshot(self) -> Frame:
        if self.snapshot_frame is None or self.snapshot_frame[0] != self.seq:
            bids = sorted(self.book["bids"].items(), reverse=True)[: selectors.MAX_DEPTH]
            asks = sorted(self.book["asks"].items())[: selectors.MAX_DEPTH]
            message = {
                "type": "book_snapshot",
                "symbol": self.symbol,
                "seq": self.seq,
                "bids": [list(level) for _, level in bids],
                "asks": [list(level) for _, level in asks],
            }
            self.snapshot_frame = (self.seq, Frame(dumps(message)))
        return self.snapshot_frame[1]

    # Trades ----------------------------------------------------------------------------

    def on_trade(self, message):
        if message["id"] in self.known_trades:
            return
        if self.seq is None:
            self.early_trades.append(message)  # the first load may have read it, or not
            return
        self._add_trades([TapeTrade.of_message(message)], announce=True)

    def _add_trades(self, trades, *, announce):
        """Tape and subscribers get each trade once. Ids are told apart by a set, not a
        high-water mark: a resync may find an older trade after a newer one arrived."""
        added = False
        for trade in trades:
            if trade.id in self.known_trades:
                continue
            self.known_trades.add(trade.id)
            self.known_order.append(trade.id)
            if len(self.known_order) > KNOWN_TRADES:
                self.known_trades.discard(self.known_order.popleft())
            self.last_trade_id = max(self.last_trade_id, trade.id)
            if self.tape and trade.id < self.tape[0].id:
                self.tape = collections.deque(
                    sorted([*self.tape, trade], key=lambda t: t.id, reverse=True), maxlen=self.tape.maxlen
                )
            else:
                self.tape.appendleft(trade)
            added = True
            if announce and self.trade_subs:
                # Sent right after the book update of the same command (scheduled before).
                self.trade_frames.append(Frame(dumps(trade.as_message(self.symbol))))
                if self.trade_timer is None:
                    self.trade_timer = self.loop.call_soon(self.flush_trades)
        if added:
            self.stats_dirty = True
            self.mark_dirty("tape")
            self.schedule_stats()

    def flush_trades(self):
        self.trade_timer = None
        frames, self.trade_frames = self.trade_frames, []
        sinks = list(self.trade_subs)
        for frame in frames:
            for sink in sinks:
                sink.send(frame)

    # Page fragments --------------------------------------------------------------------

    @property
    def has_viewers(self) -> bool:
        return bool(self.page_subs or self.page_new or self.hub.overview or self.hub.overview_new)

    def mark_dirty(self, name):
        self.stale.add(name)
        if self.page_subs:
            self.dirty.add(name)
            self.schedule_page_flush()

    def schedule_page_flush(self):
        if self.page_timer is not None:
            return
        delay = self.page_flushed_at + self.hub.page_interval - self.loop.time()
        self.page_timer = self.loop.call_later(max(0.0, delay), self.flush_page)

    def flush_page(self):
        self.page_timer = None
        if self.seq is None:
            return
        names = [name for name in ("book", "tape", "ticker", "chart") if name in self.dirty]
        self.dirty.clear()
        if names and self.page_subs:
            self.page_flushed_at = self.loop.time()
            frame = Frame("".join(self.render(name) for name in names))
            for sink in list(self.page_subs):
                sink.send(frame, droppable=True)
            self.hub.stats_page_frames += 1

    def page_frame(self) -> Frame:
        """Every public fragment of the market as it is now (first frame, catching up)."""
        return Frame("".join(self.render(name) for name in ("book", "tape", "ticker", "chart")))

    def render(self, name) -> str:
        if name in self.stale or name not in self.fragments:
            self.fragments[name] = render_to_string(f"marketdata/fragments.html#{name}", self.context(name)).strip()
            self.stale.discard(name)
        return self.fragments[name]

    def context(self, name) -> dict:
        """The plain context the fragments render from (as a page's first render has it)."""
        context = {"market": self.market, "ticker": self.ticker}
        if name == "book":
            depth = option("PAGE_BOOK_DEPTH")
            bids = heapq.nlargest(depth, self.book["bids"].items())
            asks = heapq.nsmallest(depth, self.book["asks"].items())
            context["snapshot"] = selectors.BookSnapshot(
                symbol=self.symbol,
                seq=self.seq,
                bids=[(price, Decimal(level[1])) for price, level in bids],
                asks=[(price, Decimal(level[1])) for price, level in asks],
            )
        elif name == "tape":
            context["trades"] = list(self.tape)
        elif name == "chart":
            context["tails"] = self.candles
        elif name == "market_row":
            context["candles"] = self.sparkline
        return context

    def schedule_stats(self, now=False):
        """Refresh ticker and candles from the database, at most every STATS_INTERVAL."""
        if not self.has_viewers or self.stats_task is not None:
            return
        delay = 0.0 if now else max(0.0, self.stats_at + option("STATS_INTERVAL") - self.loop.time())
        self.stats_task = asyncio.ensure_future(self._refresh_stats(delay))

    async def _refresh_stats(self, delay):
        try:
            if delay:
                await asyncio.sleep(delay)
            self.stats_at = self.loop.time()
            self.stats_dirty = False
            ticker, candles, spark = await database_sync_to_async(_read_stats)(
                self.market, bool(self.page_subs or self.page_new), bool(self.hub.overview or self.hub.overview_new)
            )
            self.ticker = ticker
            if candles is not None:
                self.candles = candles
                self.chart_loaded = True
            if spark is not None:
                self.sparkline = spark
                self.sparkline_loaded = True
            self.mark_dirty("ticker")
            self.mark_dirty("chart")
            self.stale.add("market_row")
            if self.hub.overview:
                frame = Frame(self.render("market_row"))
                for sink in list(self.hub.overview):
                    sink.send(frame, droppable=True)
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("stream: could not refresh the ticker of %s", self.symbol)
        finally:
            self.stats_task = None
        if self.stats_dirty:
            self.schedule_stats()

    async def ready_for_pages(self, *, chart: bool):
        """Loaded, with a ticker and (for a market page) candles or (overview) a sparkline."""
        await self.ready()
        for _ in range(3):
            if self.stats_task is not None:
                await asyncio.shield(self.stats_task)
            if self.ticker is not None and (self.chart_loaded if chart else self.sparkline_loaded):
                return
            self.schedule_stats(now=True)

    def close(self):
        for timer in (self.gap_timer, self.book_timer, self.page_timer, self.trade_timer):
            if timer is not None:
                timer.cancel()
        for task in (self.loading, self.stats_task):
            if task is not None:
                task.cancel()


# --- The hub: one per process (per event loop) ---------------------------------------------

# One hub per event loop: a server has one loop; tests run one per test.
_hubs: "dict[asyncio.AbstractEventLoop, Hub]" = {}
_hubs_lock = threading.Lock()  # deliver_local reads it from any thread


async def get_hub() -> "Hub":
    """This process's hub, started on first use; waits (bounded) for its subscription."""
    loop = asyncio.get_running_loop()
    hub = _hubs.get(loop)
    if hub is None or hub.stopped:
        hub = Hub(loop)
        with _hubs_lock:
            for other in [other for other in _hubs if other.is_closed()]:
                del _hubs[other]
            _hubs[loop] = hub
        hub.start()
    await hub.wait_ready()
    return hub


async def stop_hub() -> None:
    """Stop this loop's hub (tests; a server stops with its process)."""
    with _hubs_lock:
        hub = _hubs.pop(asyncio.get_running_loop(), None)
    if hub is not None:
        await hub.stop()


class Hub:
    """The process's one subscription to the stream group and its local sockets."""

    def __init__(self, loop):
        self.loop = loop
        self.stopped = False
        self.layer = None
        self.local = True
        self.channel = None
        self.ready = asyncio.Event()
        self.layer_up = False
        self.markets = {}  # market id -> MarketStream
        self.symbols = {}  # symbol -> MarketStream
        self.sinks = set()
        self.behind = set()
        self.private = collections.defaultdict(set)  # user id -> api sinks on `orders`
        self.user_pages = collections.defaultdict(set)  # user id -> page sinks
        self.overview = set()
        self.overview_new = set()  # overview sockets waiting for their first frame
        self.tasks = set()
        self.listener = None
        self.subscription = None  # Redis pub/sub: marketdata.subscription.Subscription
        self.audit_failing = False
        self.gave_up_waiting = False
        self.book_interval = option("BOOK_INTERVAL")
        self.page_interval = option("PAGE_INTERVAL")
        self.soft_limit = option("SOCKET_SOFT_LIMIT")
        self.low_limit = option("SOCKET_LOW_LIMIT")
        self.hard_limit = option("SOCKET_HARD_LIMIT")
        self.stats_items = 0
        self.stats_book_frames = 0
        self.stats_page_frames = 0

    # Lifecycle -------------------------------------------------------------------------

    def start(self):
        self.layer = get_channel_layer()
        self.local = _layer_is_local(self.layer)
        if self.local:
            self.layer_up = True
            self.ready.set()
        elif isinstance(self.layer, RedisPubSubChannelLayer):
            self.subscription = Subscription(
                self.layer,
                GROUP,
                on_message=self.on_layer_message,
                on_subscribed=self._layer_back,
                on_lost=self._layer_down,
                ping_interval=option("PING_INTERVAL"),
                ping_timeout=option("PING_TIMEOUT"),
            )
            self.listener = self._spawn(self.subscription.run())
        else:
            self.listener = self._spawn(self._listen())
        self._spawn(self._tick())

    def _spawn(self, coroutine):
        task = self.loop.create_task(coroutine)
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)
        return task

    async def wait_ready(self):
        """Wait (once per hub, bounded) for the subscription, so that a first subscriber
        misses nothing; with the layer down, sockets are served without waiting again."""
        if self.ready.is_set() or self.gave_up_waiting:
            return
        try:
            await asyncio.wait_for(asyncio.shield(self.ready.wait()), option("READY_TIMEOUT"))
        except TimeoutError:
            if not self.gave_up_waiting:
                self.gave_up_waiting = True
                layer_health.lost("no subscription yet")

    async def stop(self):
        self.stopped = True
        for market in self.markets.values():
            market.close()
        if self.subscription is not None and self.listener is not None:
            self.subscription.stop()
            await asyncio.wait([self.listener], timeout=2.0)
        tasks = list(self.tasks)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        if self.channel is not None and not self.local:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self.layer.group_discard(GROUP, self.channel), 1.0)

    async def _listen(self):
        """Any other shared layer: subscribe through it and apply what arrives. (Such a
        layer does not say when it lost messages; the audit finds what it dropped.)"""
        backoff = 0.5
        while not self.stopped:
            try:
                if self.channel is None:
                    channel = await self.layer.new_channel("streams.hub.")
                    await self.layer.group_add(GROUP, channel)
                    self.channel = channel
                    self._layer_back()
                backoff = 0.5
                while True:
                    self.on_layer_message(await self.layer.receive(self.channel))
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                self._layer_down(exc)
                self.channel = None
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, 5.0)

    def on_layer_message(self, message):
        if message.get("type") == "streams.items":
            self.receive_items(message["items"])

    def _layer_down(self, exc=None):
        if self.layer_up:
            self.layer_up = False
        # Logged once per outage for the whole process (the publisher may have said it).
        layer_health.lost(exc)

    def _layer_back(self):
        """The subscription stands (again): every change from now on reaches this hub, so
        the books reload from the database now, and the streams go on without a gap."""
        interrupted = self.ready.is_set() or self.gave_up_waiting
        self.layer_up = True
        self.ready.set()
        layer_health.back()
        self.resync_all(interrupted=interrupted)

    def resync_all(self, *, interrupted=True):
        """Reload every book; after an interruption also tell the private streams.

        Books and trades heal from the database. Private events missed meanwhile cannot be
        replayed, so integrators on `orders` are told to re-read them over REST, and
        signed-in pages get their private fragments afresh (`register_user_fragments`; with
        none registered their sockets are closed with 1012 and htmx reconnects).
        """
        for market in list(self.markets.values()):
            if market.seq is not None:
                market.resync()
        if not interrupted:
            return
        notice = Frame(
            dumps(
                {
                    "type": "error",
                    "code": "STREAM_INTERRUPTED",
                    "message": "Live updates were interrupted; re-read /api/orders/open and /api/user/balances.",
                }
            )
        )
        for sinks in list(self.private.values()):
            for sink in list(sinks):
                sink.send(notice)
        for user_id, sinks in list(self.user_pages.items()):
            if _user_fragments is not None:
                self._spawn(self._send_user_fragments(user_id, None))
                continue
            for sink in list(sinks):
                sink.closing = True
                self.detach(sink)
                asyncio.ensure_future(sink.consumer.close(code=1012))

    async def _tick(self):
        """Housekeeping: sockets that caught up, heartbeats, audits, token expiry."""
        now = self.loop.time()
        next_heartbeat = now + option("HEARTBEAT_INTERVAL")
        last_audit = now
        next_presence = now + option("PRESENCE_TTL") / 3
        while not self.stopped:
            await asyncio.sleep(0.1)
            try:
                now = self.loop.time()
                if self.behind:
                    self._catch_up()
                if now >= next_heartbeat:
                    next_heartbeat = now + option("HEARTBEAT_INTERVAL")
                    self._heartbeat()
                    self._expire_tokens()
                if now >= last_audit + option("AUDIT_INTERVAL" if self.layer_up else "DOWN_AUDIT_INTERVAL"):
                    last_audit = now
                    self._spawn(self._audit())
                if now >= next_presence:
                    next_presence = now + option("PRESENCE_TTL") / 3
                    if self.user_pages:
                        self._spawn(self._present(list(self.user_pages)))
            except Exception:
                log.exception("stream: hub housekeeping failed")

    def _catch_up(self):
        for sink in list(self.behind):
            if sink.closing:
                self.behind.discard(sink)
            elif sink.pending_bytes() <= self.low_limit:
                self.behind.discard(sink)
                sink.behind = False
                for market in sink.books:
                    market.book_subs.discard(sink)
                    market.book_new.add(sink)
                    market.send_snapshots()
                if sink.kind == "page" and sink.market is not None:
                    sink.send(sink.market.page_frame(), droppable=True)
                elif sink.kind == "overview":
                    sink.send(Frame("".join(m.render("market_row") for m in self.markets.values())), droppable=True)

    def _heartbeat(self):
        seqs = {m.symbol: m.flushed_seq for m in self.markets.values() if m.flushed_seq is not None}
        frame = Frame(dumps({"type": "heartbeat", "time": utc_now_text(), "seqs": seqs}))
        for sink in list(self.sinks):
            if sink.kind == "api":
                sink.send(frame, droppable=True)

    def _expire_tokens(self):
        now = time.time()
        for sink in list(self.sinks):
            if sink.auth_expires is not None and sink.auth_expires <= now and sink.private_user is not None:
                self.unsubscribe_private(sink)
                sink.auth_expires = None
                sink.send_message(
                    {
                        "type": "error",
                        "code": "AUTH_EXPIRED",
                        "message": "The access token expired; send a new one and subscribe to orders again.",
                    }
                )

    async def _audit(self):
        """Find books behind the database for longer than an audit interval (a lost change
        with nothing after it to show the gap) and resync them."""
        ids = [market.id for market in self.markets.values() if market.seq is not None and market.loading is None]
        if not ids:
            return
        try:
            seqs = await database_sync_to_async(
                lambda: dict(Market.objects.filter(pk__in=ids).values_list("pk", "book_seq"))
            )()
        except Exception as exc:
            if not self.audit_failing:  # once per database outage, not every interval
                self.audit_failing = True
                log.warning("stream: audit query failed (%s: %s); books may lag", exc.__class__.__name__, exc)
            return
        self.audit_failing = False
        for market_id, db_seq in seqs.items():
            market = self.markets.get(market_id)
            if market is None or market.seq is None:
                continue
            if db_seq <= market.seq:
                market.suspect_seq = None
            elif not self.layer_up:
                # No changes arrive while the layer is down: follow the database instead.
                market.resync()
            elif market.suspect_seq is not None and market.seq < market.suspect_seq:
                log.warning("stream: %s at seq %s, database at %s; resyncing", market.symbol, market.seq, db_seq)
                market.resync()
            else:
                market.suspect_seq = db_seq

    # Incoming ----------------------------------------------------------------------------

    def receive_items(self, items):
        if self.stopped:
            return
        for item in items:
            self.stats_items += 1
            try:
                kind = item.get("k")
                if kind == "b":
                    self._on_batch(item)
                elif kind == "u":
                    frame = Frame(item["h"])
                    for sink in list(self.user_pages.get(item["u"], ())):
                        sink.send(frame)
                elif kind == "r":
                    self.resync_all(interrupted=True)
            except Exception:
                log.exception("stream: could not apply %r", item)

    def _on_batch(self, item):
        for message in item["pub"]:
            market = self.markets.get(message.get("market_id"))
            if market is None:
                continue  # no socket here watches it; a first subscriber loads it fresh
            kind = message.get("type")
            if kind == "book_update":
                market.on_book(message)
            elif kind == "trade":
                market.on_trade(message)
        for user_id, message in item["prv"]:
            sinks = self.private.get(user_id)
            if sinks:
                frame = Frame(dumps(message))
                for sink in list(sinks):
                    sink.send(frame)

    # Markets ---------------------------------------------------------------------------

    async def market(self, symbol: str) -> MarketStream | None:
        """The stream of `symbol`, loaded; None if there is no such market."""
        stream = self.symbols.get(symbol)
        if stream is None:
            market = await database_sync_to_async(
                lambda: Market.objects.select_related("base", "quote").filter(symbol=symbol).first()
            )()
            if market is None:
                return None
            stream = self.symbols.get(symbol)
            if stream is None:
                stream = MarketStream(self, market)
                self.markets[market.pk] = stream
                self.symbols[symbol] = stream
        await stream.ready()
        if not self.layer_up and stream.seq is not None:
            # No changes arrive while the layer is down: a newcomer starts from the
            # database, not from the book as it was when the layer went away.
            await stream.resync()
        if stream.seq is None:
            raise StreamUnavailable(symbol)
        return stream

    async def all_markets(self) -> list[MarketStream]:
        symbols = await database_sync_to_async(lambda: list(Market.objects.values_list("symbol", flat=True)))()
        streams = []
        for symbol in symbols:
            try:
                stream = await self.market(symbol)
            except StreamUnavailable:
                continue
            if stream is not None:
                streams.append(stream)
        return streams

    def forget(self, market: MarketStream):
        self.markets.pop(market.id, None)
        self.symbols.pop(market.symbol, None)
        market.close()

    # Sockets -----------------------------------------------------------------------------

    def attach(self, consumer, kind: str) -> Sink:
        sink = Sink(self, consumer, kind)
        self.sinks.add(sink)
        return sink

    def detach(self, sink: Sink):
        self.sinks.discard(sink)
        self.behind.discard(sink)
        for market in sink.books:
            market.book_subs.discard(sink)
            market.book_new.discard(sink)
        sink.books = set()
        for market in sink.trades:
            market.trade_subs.discard(sink)
        sink.trades = set()
        self.unsubscribe_private(sink)
        if sink.market is not None:
            sink.market.page_subs.discard(sink)
            sink.market.page_new.discard(sink)
        if sink.page_user is not None:
            users = self.user_pages.get(sink.page_user)
            if users is not None:
                users.discard(sink)
                if not users:
                    del self.user_pages[sink.page_user]
        self.overview.discard(sink)
        self.overview_new.discard(sink)

    def subscribe_book(self, sink: Sink, market: MarketStream):
        """Start (or restart) `sink` on the market's book: a snapshot, then updates."""
        market.book_subs.discard(sink)
        market.book_new.add(sink)
        sink.books.add(market)
        market.send_snapshots()

    def unsubscribe_book(self, sink: Sink, market: MarketStream):
        market.book_subs.discard(sink)
        market.book_new.discard(sink)
        sink.books.discard(market)

    def subscribe_trades(self, sink: Sink, market: MarketStream):
        market.trade_subs.add(sink)
        sink.trades.add(market)

    def unsubscribe_trades(self, sink: Sink, market: MarketStream):
        market.trade_subs.discard(sink)
        sink.trades.discard(market)

    def subscribe_private(self, sink: Sink, user_id: int):
        self.unsubscribe_private(sink)
        sink.private_user = user_id
        self.private[user_id].add(sink)

    def unsubscribe_private(self, sink: Sink):
        user_id = sink.private_user
        if user_id is None:
            return
        sink.private_user = None
        sinks = self.private.get(user_id)
        if sinks is not None:
            sinks.discard(sink)
            if not sinks:
                del self.private[user_id]

    async def attach_page(self, sink: Sink, market: MarketStream, user_id: int | None):
        """A market page socket: every public fragment now, then the changes; and the
        user's private fragments if the socket's session is a user's."""
        sink.market = market
        market.page_new.add(sink)
        try:
            await market.ready_for_pages(chart=True)
        finally:
            market.page_new.discard(sink)
        if sink.closing or sink not in self.sinks:
            return
        if user_id is not None:
            await self.attach_user_page(sink, user_id)
        market.page_subs.add(sink)
        sink.send(market.page_frame())

    async def attach_overview(self, sink: Sink, user_id: int | None):
        """The markets overview: one row per market (last, 24h change, volume, sparkline)."""
        self.overview_new.add(sink)
        try:
            markets = await self.all_markets()
            for market in markets:
                await market.ready_for_pages(chart=False)
        finally:
            self.overview_new.discard(sink)
        if sink.closing or sink not in self.sinks:
            return
        if user_id is not None:
            await self.attach_user_page(sink, user_id)
        self.overview.add(sink)
        sink.send(Frame("".join(market.render("market_row") for market in markets)))

    async def attach_user_page(self, sink: Sink, user_id: int):
        sink.page_user = user_id
        self.user_pages[user_id].add(sink)
        await self._present([user_id])
        if _user_fragments is not None:
            self._spawn(self._send_user_fragments(user_id, sink))

    async def _present(self, user_ids):
        try:
            await sync_to_async(_mark_present, thread_sensitive=False)(user_ids)
        except Exception as exc:
            log.warning("stream: could not record page presence: %s", exc)

    async def _send_user_fragments(self, user_id, only: Sink | None):
        try:
            html = await database_sync_to_async(_user_fragments)(user_id)
        except Exception:
            log.exception("stream: the private fragments of user %s failed", user_id)
            return
        if html:
            frame = Frame(html)
            for sink in [only] if only is not None else list(self.user_pages.get(user_id, ())):
                if sink in self.sinks and sink.page_user == user_id:
                    sink.send(frame)
