"""The fast path of a delivery: pre-built frame bytes written to daphne's socket directly.

Daphne's ASGI `send` (`functools.partial(server.handle_reply, protocol)`) would take each
message through a coroutine, autobahn's framing and Twisted's `write`, per socket. The hub
writes one frame to thousands of sockets, so a delivery here is the frame's bytes, built
once (`sinks.Frame.wire`), handed to the kernel. Measured with `bench/ws_fanout.py`
(docs/BENCHMARKS.md, "Live streams"): one hub per process and frames built once took a
delivery from ~200-500 µs to ~35-50 µs of CPU; writing past Twisted's buffer when it holds
nothing back took it to ~15 µs, since Twisted's `write` only buffers and arms the reactor
for writability (two epoll changes and a callback per frame and socket).

This is the one place that knows daphne, autobahn and Twisted from the inside: the
protocol behind `send`, the state and options that make the bytes exactly those autobahn
would send, and the transport's write buffer (Twisted's `dataBuffer`, `offset` and the
private `_tempDataLen`, read to know how far behind a socket is). If any of it is missing
(another server, a newer Twisted), `DaphneSocket.of` answers None and the sockets are
written through ASGI instead (`sinks.Sink`), slower but the same.
"""

import functools


class DaphneSocket:
    """One daphne WebSocket connection, written without ASGI."""

    __slots__ = ("protocol", "raw")

    def __init__(self, protocol):
        self.protocol = protocol
        self.raw = None  # decided at the first send, once the handshake has settled it

    def _raw(self) -> bool:
        """Whether autobahn would send exactly our pre-built bytes: no compression, no
        server-side masking, no automatic fragmentation negotiated or configured."""
        protocol = self.protocol
        self.raw = (
            getattr(protocol, "_perMessageCompress", True) is None
            and getattr(protocol, "maskServerFrames", True) is False
            and not getattr(protocol, "autoFragmentSize", True)
            and hasattr(protocol, "send_queue")
        )
        return self.raw

    @classmethod
    def of(cls, send) -> "DaphneSocket | None":
        """The socket behind an ASGI `send`, if daphne's (`OriginCheck` keeps the server's
        own `send` in the scope as `server_send`, before any middleware wraps it)."""
        if isinstance(send, functools.partial) and getattr(send.func, "__name__", "") == "handle_reply":
            protocol = send.args[0] if len(send.args) == 1 else None
            if hasattr(protocol, "sendMessage") and hasattr(protocol, "transport"):
                return cls(protocol)
        return None

    def pending_bytes(self) -> int:
        """Bytes written to the socket that the kernel has not taken yet."""
        transport = self.protocol.transport
        try:
            # Twisted's FileDescriptor write buffer (dataBuffer from offset, plus the
            # writes not yet joined into it).
            return len(transport.dataBuffer) - transport.offset + transport._tempDataLen
        except (AttributeError, TypeError):
            return 0

    def send(self, text: bytes, wire: bytes) -> bool:
        """Send one text message: its pre-built `wire` frame when autobahn is idle, else
        `text` through autobahn (it is between frames of its own). False once the
        connection is no longer open."""
        protocol = self.protocol
        if protocol.state != protocol.STATE_OPEN:
            return False
        raw = self.raw if self.raw is not None else self._raw()
        if raw and protocol.send_state == protocol.SEND_STATE_GROUND and not protocol.send_queue:
            self._write(protocol.transport, wire)
        else:
            protocol.sendMessage(text)
        return True

    @staticmethod
    def _write(transport, data: bytes):
        """Write to the socket at once when Twisted holds nothing back for it; whatever
        the kernel does not take goes to Twisted's buffer behind it, in order."""
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
