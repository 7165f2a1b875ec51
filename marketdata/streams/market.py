"""One market in one process: its book, tape and fragments, kept from the stream of changes."""

import asyncio
import collections
import heapq
import logging
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal

from channels.db import database_sync_to_async
from django.template.loader import render_to_string

from quantumtrades.core.money import ZERO, money, money_text
from quantumtrades.core.streams import Frame, dumps, option

from .. import selectors
from ..auction import uncross_price
from ..models import Market, Trade
from ..payloads import candle_message, market_status_message, ticker_message, trade_message
from . import options  # noqa: F401  (registers the market streams' knobs)

log = logging.getLogger(__name__)

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
        return trade_message(
            id=self.id,
            symbol=symbol,
            price=self.price,
            quantity=self.quantity,
            taker_side=self.taker_side,
            time=self.created_at,
        )


ZERO_TEXT = money_text(money(ZERO))
# Trade ids a market stream remembers, to send each trade once.
KNOWN_TRADES = 2000
RESYNC_TRADES = 200
SIDES = ("bids", "asks")
# The market page's public fragments (marketdata/fragments.html), in the order they are sent.
PAGE_FRAGMENTS = ("status", "book", "tape", "ticker", "chart")


def read_market(market_id: int, first: bool):
    """One database round for a (re)load: the market, its book, its latest trades."""
    market = Market.objects.select_related("base", "quote").get(pk=market_id)
    snapshot = selectors.book_snapshot(market=market, depth=selectors.MAX_DEPTH)
    # On a resync the latest trades are compared with those already sent: the missed ones
    # go out (a resync after more than RESYNC_TRADES trades were lost says so in the log).
    trades = selectors.trades_recent(market=market, limit=option("TAPE_LENGTH") if first else RESYNC_TRADES)
    return market, snapshot, [TapeTrade.of_trade(trade) for trade in trades]


def read_stats(market: Market, chart: bool, sparkline: bool, intervals=()):
    """The ticker; candles for the page's chart and the overview's sparkline when asked;
    the latest candle of each interval integrators follow on /ws."""
    ticker = selectors.ticker(market=market)
    candles = selectors.candle_tails(market=market) if chart else None
    spark = (
        selectors.candles(market=market, interval=option("SPARKLINE_INTERVAL"), limit=option("SPARKLINE_CANDLES"))
        if sparkline
        else None
    )
    latest = {interval: selectors.latest_candle(market=market, interval=interval) for interval in intervals}
    return ticker, candles, spark, latest


def stats_key(channel: str, interval: str | None = None) -> str:
    """The name a market's ticker ("ticker") or candle stream ("candles:1m") goes by."""
    return channel if interval is None else f"{channel}:{interval}"


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
        # Trades of commands whose book change this stream has not applied yet: they go
        # out once it has, in id order (`release_trades`), so that trades that two
        # processes published reach sockets in commit order.
        self.held_trades = []
        self.ticker = None
        self.candles = {}  # selectors.candle_tails
        self.chart_loaded = False
        self.sparkline = []
        self.sparkline_loaded = False
        self.fragments = {}  # id -> html, current
        self.stale = {"book", "tape", "ticker", "chart", "status", "market_row"}
        self.dirty = set()
        self.stats_dirty = True
        self.stats_task = None
        self.stats_at = -1e9
        self.book_timer = None
        self.book_flushed_at = -1e9
        self.page_timer = None
        self.page_flushed_at = -1e9
        self.snapshot_frame = None  # (seq, Frame)
        # /ws ticker and candles: stats_key -> sockets, and the last frame each was sent
        # (with its message minus the time, to tell whether the next refresh changed it).
        self.stat_subs = collections.defaultdict(set)
        self.stat_frames = {}
        # /ws status (subscribed as the "status" key of stat_subs) and the page's banner:
        # the market's status and, in an auction, the indicative price and volume of the
        # book this stream keeps, recomputed as it changes (`refresh_status`).
        self.indicative = None
        self.status_frame = None  # (message, Frame)

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
                    market, snapshot, trades = await database_sync_to_async(read_market)(self.id, first)
                except Market.DoesNotExist:
                    log.warning("stream: market %s is gone", self.symbol)
                    self.hub.forget(self)
                    return
                self.market = market
                self._apply_snapshot(snapshot, first)
                self.refresh_status()
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
        self.release_trades()

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
            self.release_trades()
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
            if self.market.in_auction:
                self.refresh_status()  # the indicative price follows the book
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

    # Status ----------------------------------------------------------------------------

    def on_status(self, message):
        """The market's status changed (`events.MarketStatusChanged`)."""
        ends = message.get("auction_ends_at")
        self.market.status = message["status"]
        self.market.auction_ends_at = datetime.fromisoformat(ends.replace("Z", "+00:00")) if ends else None
        self.refresh_status()

    def refresh_status(self):
        """Send the `market_status` message to the status channel's subscribers and the
        page's banner, when it differs from the last one sent. In an auction the indicative
        price and volume are the uncross of the book as this stream has it, by the rules
        the engine's uncross follows (`marketdata.auction`)."""
        market = self.market
        indicative = None
        if market.in_auction:
            bids = [(price, Decimal(level[1])) for price, level in self.book["bids"].items()]
            asks = [(price, Decimal(level[1])) for price, level in self.book["asks"].items()]
            reference = self.tape[0].price if self.tape else market.last_price
            indicative = uncross_price(bids, asks, reference)
        message = market_status_message(
            symbol=self.symbol, status=market.status, auction_ends_at=market.auction_ends_at, indicative=indicative
        )
        if self.status_frame is not None and self.status_frame[0] == message:
            return
        self.indicative = indicative
        self.status_frame = (message, Frame(dumps(message)))
        for sink in list(self.stat_subs.get("status", ())):
            sink.send(self.status_frame[1], droppable=True)
        self.mark_dirty("status")

    # Trades ----------------------------------------------------------------------------

    def on_trade(self, message):
        if message["id"] in self.known_trades:
            return
        if self.seq is None:
            self.early_trades.append(message)  # the first load may have read it, or not
            return
        seq = message.get("seq")
        if seq is not None and seq > self.seq:
            # Another process's later command arrived before an earlier one: its book
            # change waits for the gap (or a resync), and so does its trade.
            self.held_trades.append(message)
            return
        self._add_trades([TapeTrade.of_message(message)], announce=True)

    def release_trades(self):
        """Send the held trades whose command's book change is now applied. Trade ids are
        drawn under the book lock, so in id order they are in commit order; whatever
        arrives in the same loop turn is sorted with them (`flush_trades`)."""
        if not self.held_trades or self.seq is None:
            return
        ready = [message for message in self.held_trades if message["seq"] <= self.seq]
        if ready:
            self.held_trades = [message for message in self.held_trades if message["seq"] > self.seq]
            self._add_trades(sorted((TapeTrade.of_message(m) for m in ready), key=lambda t: t.id), announce=True)

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
                self.trade_frames.append((trade.id, Frame(dumps(trade.as_message(self.symbol)))))
                if self.trade_timer is None:
                    self.trade_timer = self.loop.call_soon(self.flush_trades)
        if added:
            self.stats_dirty = True
            self.mark_dirty("tape")
            self.schedule_stats()

    def flush_trades(self):
        self.trade_timer = None
        frames, self.trade_frames = self.trade_frames, []
        frames.sort(key=lambda pair: pair[0])  # a resync's and held trades among new ones
        sinks = list(self.trade_subs)
        for _, frame in frames:
            for sink in sinks:
                sink.send(frame)

    # Page fragments --------------------------------------------------------------------

    @property
    def has_viewers(self) -> bool:
        return bool(
            self.page_subs
            or self.page_new
            or self.hub.overview
            or self.hub.overview_new
            or any(self.stat_subs.values())
        )

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
        names = [name for name in PAGE_FRAGMENTS if name in self.dirty]
        self.dirty.clear()
        if names and self.page_subs:
            self.page_flushed_at = self.loop.time()
            frame = Frame("".join(self.render(name) for name in names))
            for sink in list(self.page_subs):
                sink.send(frame, droppable=True)
            self.hub.stats_page_frames += 1

    def page_frame(self) -> Frame:
        """Every public fragment of the market as it is now (first frame, catching up)."""
        return Frame("".join(self.render(name) for name in PAGE_FRAGMENTS))

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
        elif name == "status":
            context["indicative"] = self.indicative
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
            intervals = sorted(key.split(":", 1)[1] for key, sinks in self.stat_subs.items() if sinks and ":" in key)
            ticker, candles, spark, latest = await database_sync_to_async(read_stats)(
                self.market,
                bool(self.page_subs or self.page_new),
                bool(self.hub.overview or self.hub.overview_new),
                intervals,
            )
            self.ticker = ticker
            self.publish_stats(ticker, latest)
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

    # Integrator ticker and candle frames ---------------------------------------------------

    def publish_stats(self, ticker, latest: dict):
        """Send what changed since the last refresh, built once for every subscriber. A
        refresh runs at most every STATS_INTERVAL, so the frames are conflated: a
        subscriber gets the state after the latest trades, not one frame per trade."""
        messages = {}
        if self.stat_subs.get("ticker"):
            messages["ticker"] = ticker_message(self.symbol, ticker)
        for interval, candle in latest.items():
            if candle is not None:
                messages[stats_key("candles", interval)] = candle_message(self.symbol, candle)
        for key, message in messages.items():
            comparable = {k: v for k, v in message.items() if k != "time"}
            previous = self.stat_frames.get(key)
            if previous is not None and previous[0] == comparable:
                continue
            frame = Frame(dumps(message))
            self.stat_frames[key] = (comparable, frame)
            for sink in list(self.stat_subs.get(key, ())):
                sink.send(frame, droppable=True)

    def send_stats_to(self, sink, key: str):
        """A new subscriber starts from the last frame; with none yet, one is read now."""
        if key == "status":  # kept with the book: always current
            if self.status_frame is None:
                self.refresh_status()
            sink.send(self.status_frame[1], droppable=True)
            return
        previous = self.stat_frames.get(key)
        if previous is not None:
            sink.send(previous[1], droppable=True)
        else:
            self.stats_dirty = True  # a refresh already running may not have read this one
            self.schedule_stats(now=True)

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
