"""The gateway: a TCP acceptor of FIX sessions, beside the web processes (`manage.py fix_gateway`).

    client --TCP--> Gateway (one asyncio loop) --> Session per connection (fix.session)
        application messages -> worker threads -> orders.services (fix.application)
    engine events --> the process's hub (marketdata.streams) --> Stream per session
        -> execution reports for every order of the session's user (any door placed it)
        -> market data: snapshots (W) and incremental refreshes (X)

The gateway takes the engine's events as every web process does: through the process's
hub, on the channel layer. So it survives Redis outages as they do: when the hub says the
private stream was interrupted, each session reads what changed meanwhile from the
database and reports what it had not (`Session.catch_up`); books resync by themselves.
"""

import asyncio
import datetime
import json
import logging
import os
import socket
import uuid
from concurrent.futures import ThreadPoolExecutor
from decimal import Decimal

from django.conf import settings
from django.db import close_old_connections

from marketdata.selectors import MAX_DEPTH
from marketdata.streams import StreamUnavailable, get_hub
from quantumtrades.core.errors import ErrorCode

from .services import LEASE_SECONDS, fix_sessions_renew
from .session import Session

log = logging.getLogger(__name__)

# How far before the last sign of life from the stream a catch-up reads, after an interruption.
CATCH_UP_MARGIN = datetime.timedelta(seconds=10)
ENTRY_TYPES = {"0": "bids", "1": "asks", "2": "trades"}


class Gateway:
    """Every session of this process, the one-per-SenderCompID rule, and the hub."""

    def __init__(self, *, host: str = "0.0.0.0", port: int = 9878, threads: int | None = None):
        self.host, self.port = host, port
        self.executor = ThreadPoolExecutor(threads or settings.REQUEST_THREADS, thread_name_prefix="fix")
        self.live = {}  # SenderCompID -> Session (claimed at logon)
        self.sessions = set()
        self.tasks = set()
        self.server = None
        self.hub = None
        self.renewing = None
        # This process, as the sessions' `held_by` names it (fix.services.LEASE_SECONDS).
        self.owner = f"{socket.gethostname()[:64]}:{os.getpid()}:{uuid.uuid4().hex[:8]}"

    async def start(self):
        self.hub = await get_hub()
        self.server = await asyncio.start_server(self._accept, self.host, self.port)
        self.port = self.server.sockets[0].getsockname()[1]
        self.renewing = asyncio.get_running_loop().create_task(self._renew())
        log.info("FIX gateway listening on %s:%s", self.host, self.port)

    async def serve_forever(self):
        async with self.server:
            await self.server.serve_forever()

    async def stop(self, reason: str = "The gateway is shutting down; log on again shortly."):
        """Stop accepting, say Logout to every session, and let their writers finish."""
        if self.server is not None:
            self.server.close()
        if self.renewing is not None:
            self.renewing.cancel()
        for session in list(self.sessions):
            if session.state is not None:
                session.logout(reason)
            else:
                session.closing = True
        if self.tasks:
            await asyncio.wait(list(self.tasks), timeout=5.0)
        self.executor.shutdown(wait=False)

    async def _renew(self):
        """Keep this process's hold on its sessions (one UPDATE for all of them)."""
        loop = asyncio.get_running_loop()
        while True:
            await asyncio.sleep(LEASE_SECONDS / 3)
            if not self.live:
                continue
            try:
                await loop.run_in_executor(self.executor, _renew, self.owner)
            except Exception as exc:
                log.warning("FIX: could not renew the sessions' hold: %s", exc)

    def spawn(self, coroutine):
        task = asyncio.get_running_loop().create_task(coroutine)
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)
        return task

    async def _accept(self, reader, writer):
        session = Session(self, reader, writer)
        self.sessions.add(session)
        task = asyncio.current_task()
        self.tasks.add(task)
        try:
            await session.run()
        finally:
            self.sessions.discard(session)
            self.tasks.discard(task)

    # One live connection per SenderCompID -------------------------------------------------

    def claim(self, sender: str, session: Session) -> bool:
        holder = self.live.get(sender)
        if holder is not None and holder is not session:
            return False
        self.live[sender] = session
        return True

    def release(self, session: Session):
        if self.live.get(session.sender_comp_id) is session:
            del self.live[session.sender_comp_id]

    def session_ended(self, session: Session):
        self.release(session)
        if session.stream is not None:
            session.stream.detach()

    async def stream_for(self, session: Session) -> "Stream":
        return Stream(session, self.hub)


class Stream:
    """A session as the hub sees a socket: its user's private stream, and its market data.

    The hub writes to it as to a /ws socket (`quantumtrades.core.streams.Sink` calls
    `send(text_data=...)`); the JSON messages become FIX ones here.
    """

    def __init__(self, session: Session, hub):
        self.session = session
        self.hub = hub
        self.scope = {}  # not daphne's socket: the Sink writes through send()
        self.sink = hub.attach(self, "api")
        hub.subscribe_private(self.sink, session.state.user_id)
        # The last sign of life from the user's stream: whatever changed after it and was not
        # reported is read from the database when the hub says the stream was interrupted.
        # From the logon, until the stream delivers an event of its own.
        self.alive_at = datetime.datetime.now(datetime.UTC)
        self.pending = []
        self.flush_handle = None
        self.requests = {}  # MDReqID -> MarketDataSubscription
        self.by_symbol = {}  # symbol -> [MarketDataSubscription]

    def detach(self):
        self.sink.closing = True
        self.hub.detach(self.sink)
        self.hub.sinks.discard(self.sink)

    # The hub's side ------------------------------------------------------------------

    async def send(self, text_data=None, bytes_data=None):
        message = json.loads(text_data)
        kind = message.get("type")
        if kind in ("order", "fill"):
            # Only an event proves the stream alive: the hub's heartbeats are its own, made
            # whether or not its subscription stands (before the first, during an outage),
            # and counting them would move the catch-up past the events it lost meanwhile.
            self.alive_at = datetime.datetime.now(datetime.UTC)
            self.pending.append(message)
            if self.flush_handle is None:
                # The rest of the command's messages are being handed over in this same turn.
                self.flush_handle = asyncio.get_running_loop().call_soon(self._flush)
        elif kind == "error" and message.get("code") == ErrorCode.STREAM_INTERRUPTED:
            self.session.catch_up(self.alive_at - CATCH_UP_MARGIN)
        elif kind in ("book_snapshot", "book_update", "trade"):
            for subscription in list(self.by_symbol.get(message.get("symbol"), ())):
                subscription.on_message(message)

    async def close(self, code=None):
        # The hub closes a socket that fell too far behind (`Sink.overflow`).
        self.session.logout(f"{ErrorCode.SLOW_CONSUMER}: the session fell too far behind; log on again.")

    def _flush(self):
        self.flush_handle = None
        messages, self.pending = self.pending, []
        if not self.session.closing:
            self.session.on_private(messages)

    # Market data -----------------------------------------------------------------------

    async def market_data_request(self, message):
        """MarketDataRequest (V): a snapshot (W), with 263=1 then refreshes (X); or a reject (Y)."""
        request_id = message.get(262)
        kind = message.get(263)
        if not request_id:
            return self._md_reject("NONE", "0", f"{ErrorCode.INVALID}: MDReqID (262) is required.")
        if kind == "2":
            subscription = self.requests.pop(request_id, None)
            if subscription is None:
                return self._md_reject(request_id, "0", f"{ErrorCode.NOT_FOUND}: no subscription {request_id}.")
            subscription.stop()
            return None
        if kind not in ("0", "1"):
            return self._md_reject(request_id, "4", f"{ErrorCode.INVALID}: SubscriptionRequestType (263) is 0, 1 or 2.")
        if kind == "1" and request_id in self.requests:
            return self._md_reject(request_id, "1", f"{ErrorCode.INVALID}: MDReqID {request_id} is in use.")
        depth = message.get(264, "0")
        if not depth.isdigit():
            return self._md_reject(request_id, "5", f"{ErrorCode.INVALID}: MarketDepth (264) is 0 (full) or a number.")
        depth = int(depth) or MAX_DEPTH
        types = [entry.get(269) for entry in message.groups(267, 269)]
        if not types or any(t not in ENTRY_TYPES for t in types):
            return self._md_reject(
                request_id, "8", f"{ErrorCode.INVALID}: MDEntryType (269) is 0 bid, 1 offer or 2 trade."
            )
        symbols = [entry.get(55) for entry in message.groups(146, 55)]
        if not symbols or not all(symbols):
            return self._md_reject(
                request_id, "0", f"{ErrorCode.INVALID}: name the market in NoRelatedSym (146) / Symbol (55)."
            )
        streams = []
        for symbol in symbols:
            try:
                stream = await self.hub.market(symbol)
            except StreamUnavailable:
                return self._md_reject(
                    request_id, "0", f"{ErrorCode.SERVICE_UNAVAILABLE}: the book of {symbol} can not be read now."
                )
            if stream is None:
                return self._md_reject(request_id, "0", f"{ErrorCode.NOT_FOUND}: there is no market {symbol[:24]!r}.")
            streams.append(stream)
        subscription = MarketDataSubscription(self, request_id, set(types), depth, streams, live=kind == "1")
        if kind == "1":
            self.requests[request_id] = subscription
        subscription.start()
        return None

    def _md_reject(self, request_id, reason, text):
        self.session.send("Y", [(262, request_id), (281, reason), (58, text)])


class MarketDataSubscription:
    """One MarketDataRequest: its markets, what it wants of them, and the levels it reported."""

    def __init__(self, stream: Stream, request_id, types, depth, markets, *, live):
        self.stream = stream
        self.request_id = request_id
        self.book = bool(types & {"0", "1"})
        self.types = types
        self.depth = depth
        self.markets = markets
        self.live = live
        self.known = {}  # symbol -> {"bids": set(prices), "asks": set(prices)}

    def start(self):
        for market in self.markets:
            if not self.live:
                self._snapshot(json.loads(market.snapshot().text))
                continue
            self.stream.by_symbol.setdefault(market.symbol, []).append(self)
            if self.book:
                self.stream.hub.subscribe_book(self.stream.sink, market)
            else:
                self._snapshot({"symbol": market.symbol, "seq": market.seq, "bids": [], "asks": []})
            if "2" in self.types:
                self.stream.hub.subscribe_trades(self.stream.sink, market)

    def stop(self):
        for market in self.markets:
            others = [s for s in self.stream.by_symbol.get(market.symbol, []) if s is not self]
            self.stream.by_symbol[market.symbol] = others
            if not any(s.book for s in others):
                self.stream.hub.unsubscribe_book(self.stream.sink, market)
            if not any("2" in s.types for s in others):
                self.stream.hub.unsubscribe_trades(self.stream.sink, market)

    def on_message(self, message):
        kind = message["type"]
        if kind == "book_snapshot":
            if self.book:
                self._snapshot(message)
        elif kind == "book_update":
            if self.book:
                self._refresh(message)
        elif kind == "trade" and "2" in self.types:
            entry = [(279, 0), (269, 2), (55, message["symbol"]), (270, _num(message["price"]))]
            entry += [(271, _num(message["quantity"])), (1003, message["id"])]
            entry.append((54, "1" if message["taker_side"] == "buy" else "2"))  # the aggressor's side
            self.stream.session.send("X", [(262, self.request_id), (268, 1), *entry])

    def _sides(self):
        return [
            (side, "0" if side == "bids" else "1")
            for side in ("bids", "asks")
            if ("0" if side == "bids" else "1") in self.types
        ]

    def _snapshot(self, message):
        entries = []
        known = self.known[message["symbol"]] = {"bids": set(), "asks": set()}
        for side, entry_type in self._sides():
            for price, quantity in message[side][: self.depth]:
                entries.append([(269, entry_type), (270, _num(price)), (271, _num(quantity))])
                known[side].add(price)
        fields = [(262, self.request_id), (55, message["symbol"]), (83, message["seq"]), (268, len(entries))]
        for entry in entries:
            fields += entry
        self.stream.session.send("W", fields)

    def _refresh(self, message):
        known = self.known.setdefault(message["symbol"], {"bids": set(), "asks": set()})
        entries = []
        for side, entry_type in self._sides():
            for price, quantity in message[side]:
                if Decimal(quantity) == 0:
                    if price not in known[side]:
                        continue
                    known[side].discard(price)
                    entries.append(
                        [(279, 2), (269, entry_type), (55, message["symbol"]), (270, _num(price)), (83, message["seq"])]
                    )
                else:
                    action = 1 if price in known[side] else 0
                    known[side].add(price)
                    entry = [(279, action), (269, entry_type), (55, message["symbol"]), (270, _num(price))]
                    entries.append([*entry, (271, _num(quantity)), (83, message["seq"])])
        if not entries:
            return  # only the side this request does not follow changed
        fields = [(262, self.request_id), (268, len(entries))]
        for entry in entries:
            fields += entry
        self.stream.session.send("X", fields)


def _renew(owner):
    close_old_connections()
    try:
        fix_sessions_renew(owner=owner)
    finally:
        close_old_connections()


def _num(text) -> str:
    value = Decimal(text)
    return format(value.normalize(), "f") if value else "0"
