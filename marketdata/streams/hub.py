"""The hub: one per process, the only subscription, and every local socket."""

import asyncio
import collections
import contextlib
import logging
import time

from asgiref.sync import sync_to_async
from channels.db import database_sync_to_async
from channels.layers import get_channel_layer
from channels_redis.pubsub import RedisPubSubChannelLayer

from quantumtrades.core import metrics
from quantumtrades.core.errors import ErrorCode
from quantumtrades.core.streams import GROUP, Frame, Sink, dumps, option, publishing, utc_now_text
from quantumtrades.core.streams.messages import Batch, Item, Versions
from quantumtrades.core.streams.subscription import Subscription
from quantumtrades.core.websocket import CloseCode

from ..models import Market
from .market import MarketStream

log = logging.getLogger(__name__)

# --- The hub: one per process (per event loop) ---------------------------------------------


async def get_hub() -> "Hub":
    """This process's hub, started on first use; waits (bounded) for its subscription."""
    loop = asyncio.get_running_loop()
    hub = publishing.hubs.get(loop)
    if hub is None or hub.stopped:
        hub = Hub(loop)
        with publishing.hubs_lock:
            for other in [other for other in publishing.hubs if other.is_closed()]:
                del publishing.hubs[other]
            publishing.hubs[loop] = hub
        hub.start()
    await hub.wait_ready()
    return hub


async def stop_hub() -> None:
    """Stop this loop's hub (tests; a server stops with its process)."""
    with publishing.hubs_lock:
        hub = publishing.hubs.pop(asyncio.get_running_loop(), None)
    if hub is not None:
        await hub.stop()


def open_sockets() -> int:
    """The sockets attached to this process's hubs (`/healthz` reports it)."""
    with publishing.hubs_lock:
        hubs = list(publishing.hubs.values())
    return sum(len(hub.sinks) for hub in hubs if not hub.stopped)


class StreamUnavailable(Exception):
    """A market's book could not be read (the database is down); try again."""


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
        # user id -> the newest version sent of each of their orders and balances, kept
        # while they have a socket on `orders`
        self.private_versions = collections.defaultdict(Versions)
        self.user_pages = collections.defaultdict(set)  # user id -> page sinks
        self.overview = set()
        self.overview_new = set()  # overview sockets waiting for their first frame
        self.tasks = set()
        self.listener = None
        self.subscription = None  # Redis pub/sub: quantumtrades.core.streams.subscription
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
        self.local = publishing.layer_is_local(self.layer)
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
                publishing.layer_health.lost("no subscription yet")

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
        publishing.layer_health.lost(exc)

    def _layer_back(self):
        """The subscription stands (again): every change from now on reaches this hub, so
        the books reload from the database now, and the streams go on without a gap."""
        interrupted = self.ready.is_set() or self.gave_up_waiting
        self.layer_up = True
        self.ready.set()
        publishing.layer_health.back()
        self.resync_all(interrupted=interrupted)

    def resync_all(self, *, interrupted=True):
        """Reload every book; after an interruption also tell the private streams.

        Books and trades heal from the database. Private events missed meanwhile cannot be
        replayed, so integrators on `orders` are told to re-read them over REST, and
        signed-in pages get their private fragments afresh (`register_user_fragments`; with
        none registered their sockets are closed with RESTART and the pages reconnect).
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
                    "code": ErrorCode.STREAM_INTERRUPTED,
                    "message": "Live updates were interrupted; re-read /api/orders/open and /api/user/balances.",
                }
            )
        )
        for sinks in list(self.private.values()):
            for sink in list(sinks):
                sink.send(notice)
        for user_id, sinks in list(self.user_pages.items()):
            if publishing.user_fragments is not None:
                self._spawn(self._send_user_fragments(user_id, None))
                continue
            for sink in list(sinks):
                sink.closing = True
                self.detach(sink)
                asyncio.ensure_future(sink.consumer.close(code=CloseCode.RESTART))

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
                for market, key in sink.stats:
                    market.send_stats_to(sink, key)  # the latest ticker or candle it may have missed
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
                        "code": ErrorCode.AUTH_EXPIRED,
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
            rows = await database_sync_to_async(
                lambda: list(Market.objects.filter(pk__in=ids).values_list("pk", "book_seq", "status"))
            )()
        except Exception as exc:
            if not self.audit_failing:  # once per database outage, not every interval
                self.audit_failing = True
                log.warning("stream: audit query failed (%s: %s); books may lag", exc.__class__.__name__, exc)
            return
        self.audit_failing = False
        for market_id, db_seq, status in rows:
            market = self.markets.get(market_id)
            if market is None or market.seq is None:
                continue
            if status != market.market.status and market.loading is None:
                market.resync()  # a status change it missed: the reload reads the market row
            elif db_seq <= market.seq:
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

    def receive_items(self, items: list[Item]):
        if self.stopped:
            return
        for item in items:
            self.stats_items += 1
            try:
                kind = item["kind"]
                if kind == "batch":
                    if metrics.ENABLED:  # from the first of its commands' commit to here
                        metrics.STREAM_LAG.observe(max(0.0, time.time() - item["committed"]))
                    self._on_batch(item)
                elif kind == "user_fragments":
                    frame = Frame(item["html"])
                    for sink in list(self.user_pages.get(item["user_id"], ())):
                        sink.send(frame)
                elif kind == "resync":
                    self.resync_all(interrupted=True)
            except Exception:
                log.exception("stream: could not apply %r", item)

    def _on_batch(self, item: Batch):
        for message in item["public"]:
            market = self.markets.get(message.get("market_id"))
            if market is None:
                continue  # no socket here watches it; a first subscriber loads it fresh
            kind = message.get("type")
            if kind == "book_update":
                market.on_book(message)
            elif kind == "trade":
                market.on_trade(message)
            elif kind == "market_status":
                market.on_status(message)
        for entry in item["private"]:
            sinks = self.private.get(entry[0])
            if not sinks:
                continue
            # A publisher of an older release sends (user id, message) alone.
            user_id, message, key, version, final = entry if len(entry) == 5 else (*entry[:2], None, None, False)
            # Two processes' commands may arrive in either order: an order's or a balance's
            # event older than one already sent would show a stale state last.
            if key is not None and not self.private_versions[user_id].admit(key, version, final):
                continue
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
        for market, key in sink.stats:
            market.stat_subs[key].discard(sink)
        sink.stats = set()
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

    def subscribe_stats(self, sink: Sink, market: MarketStream, key: str):
        """`sink` follows the market's ticker ("ticker") or one interval's candles ("candles:1m")."""
        market.stat_subs[key].add(sink)
        sink.stats.add((market, key))
        market.send_stats_to(sink, key)

    def unsubscribe_stats(self, sink: Sink, market: MarketStream, key: str):
        market.stat_subs[key].discard(sink)
        sink.stats.discard((market, key))

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
                self.private_versions.pop(user_id, None)

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
        if publishing.user_fragments is not None:
            self._spawn(self._send_user_fragments(user_id, sink))

    async def _present(self, user_ids):
        try:
            await sync_to_async(publishing.mark_present, thread_sensitive=False)(user_ids)
        except Exception as exc:
            log.warning("stream: could not record page presence: %s", exc)

    async def _send_user_fragments(self, user_id, only: Sink | None):
        try:
            html = await database_sync_to_async(publishing.user_fragments)(user_id)
        except Exception:
            log.exception("stream: the private fragments of user %s failed", user_id)
            return
        if html:
            frame = Frame(html)
            for sink in [only] if only is not None else list(self.user_pages.get(user_id, ())):
                if sink in self.sinks and sink.page_user == user_id:
                    sink.send(frame)
