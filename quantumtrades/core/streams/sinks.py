"""Frames and sockets: a message built once, and each socket as the hub sees it."""

import asyncio
import collections
import logging
import struct

from quantumtrades.core.errors import ErrorCode
from quantumtrades.core.metrics import STREAM_DELIVERIES, STREAM_DROPS
from quantumtrades.core.websocket import CloseCode

from .daphne import DaphneSocket
from .options import dumps

log = logging.getLogger(__name__)

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
        "socket",
        "stats",
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
        # Written directly when daphne serves it (the fast path), else through ASGI.
        self.socket = DaphneSocket.of(consumer.scope.get("server_send"))
        self.behind = False
        self.closing = False
        self.books = set()  # MarketStreams whose book this socket follows
        self.trades = set()
        self.stats = set()  # (MarketStream, stats_key): ticker and candle channels
        self.market = None  # page: its MarketStream
        self.private_user = None  # api: user id of the private `orders` channel
        self.page_user = None  # page: user id that gets stream_to_user fragments
        self.auth_expires = None
        self._outbox = collections.deque()
        self._outbox_bytes = 0
        self._writer = None

    def pending_bytes(self) -> int:
        return self._outbox_bytes if self.socket is None else self.socket.pending_bytes()

    def send(self, frame: Frame, *, droppable: bool = False) -> bool:
        """Queue a frame. A droppable (conflatable) frame is refused while the socket is behind."""
        if self.closing:
            STREAM_DROPS.inc(self.kind, "closing")
            return False
        pending = self.pending_bytes()
        if pending > self.hub.hard_limit:
            self.overflow()
            STREAM_DROPS.inc(self.kind, "overflow")
            return False
        if droppable and (self.behind or pending > self.hub.soft_limit):
            if not self.behind:
                self.behind = True
                self.hub.behind.add(self)
            STREAM_DROPS.inc(self.kind, "behind")
            return False
        STREAM_DELIVERIES.inc(self.kind)
        socket = self.socket
        if socket is None:
            self._outbox.append(frame)
            self._outbox_bytes += len(frame.data)
            if self._writer is None:
                self._writer = asyncio.ensure_future(self._drain())
            return True
        return socket.send(frame.data, frame.wire)

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
                        "code": ErrorCode.SLOW_CONSUMER,
                        "message": "The connection fell too far behind and is closed; reconnect and subscribe again.",
                    }
                )
            )
            if self.socket is None:
                self._outbox.append(frame)
                self._outbox_bytes += len(frame.data)
            else:
                self.socket.send(frame.data, frame.wire)  # behind the rest, in the socket's buffer
        self.closing = True
        self.hub.detach(self)
        asyncio.ensure_future(self._close())

    async def _close(self):
        if self.socket is None and self._outbox and self._writer is None:
            self._writer = asyncio.ensure_future(self._drain())
        if self._writer is not None:
            await asyncio.wait([self._writer], timeout=5)
        # "Try again later": a page reconnects and starts from the current state.
        await self.consumer.close(code=CloseCode.TRY_AGAIN_LATER)
