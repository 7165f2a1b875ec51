"""Frames and sockets: a message built once, and each socket as the hub sees it."""

import asyncio
import collections
import functools
import logging
import struct

from quantumtrades.core.websocket import CloseCode

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
        self.protocol = daphne_protocol(consumer.scope.get("server_send"))
        self.raw = None  # whether pre-built wire frames may go straight to the transport
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
        # "Try again later": a page reconnects and starts from the current state.
        await self.consumer.close(code=CloseCode.TRY_AGAIN_LATER)
