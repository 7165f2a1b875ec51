"""A FIX initiator for the tests, written by hand on a plain socket.

It shares no code with the gateway (not its codec, not simplefix): it spells each message's
bytes itself, counts BodyLength and CheckSum itself, and reads what comes back field by
field, so a test sees exactly what a client's engine would.
"""

import datetime
import socket
import time

SOH = "\x01"


def utc_now() -> str:
    now = datetime.datetime.now(datetime.UTC)
    return now.strftime("%Y%m%d-%H:%M:%S.") + f"{now.microsecond // 1000:03d}"


def frame(fields: list[tuple[int, object]]) -> bytes:
    """BeginString, BodyLength, `fields`, CheckSum: the bytes of one message."""
    body = "".join(f"{tag}={value}{SOH}" for tag, value in fields).encode("latin-1")
    head = f"8=FIX.4.4{SOH}9={len(body)}{SOH}".encode()
    total = sum(head + body) % 256
    return head + body + f"10={total:03d}{SOH}".encode()


class Received:
    """A message as it arrived: its fields in order, and the first value of each tag."""

    def __init__(self, raw: bytes):
        self.raw = raw
        self.fields = []
        for pair in raw.decode("latin-1").split(SOH)[:-1]:
            tag, _, value = pair.partition("=")
            self.fields.append((int(tag), value))
        self.first = {}
        for tag, value in self.fields:
            self.first.setdefault(tag, value)
        body = raw[: raw.rindex(b"10=")]
        assert int(self.first[10]) == sum(body) % 256, f"bad checksum in {raw!r}"
        assert int(self.first[9]) == len(body) - body.index(b"35="), f"bad body length in {raw!r}"

    def __getitem__(self, tag):
        return self.first[tag]

    def get(self, tag, default=None):
        return self.first.get(tag, default)

    def all(self, tag) -> list[str]:
        return [value for t, value in self.fields if t == tag]

    @property
    def type(self) -> str:
        return self.first[35]

    @property
    def seq(self) -> int:
        return int(self.first[34])

    def __repr__(self):
        return self.raw.decode("latin-1").replace(SOH, "|")


class Client:
    """One connection: send messages with the next MsgSeqNum, read what the venue says."""

    def __init__(self, port: int, sender: str = "ALICE", *, seq: int = 1):
        self.sender = sender
        self.seq = seq
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=10)
        self.buffer = b""
        self.received = []

    def send(self, msg_type: str, fields=(), *, seq=None, poss_dup=False, sender=None, target="QTRADES") -> int:
        if seq is None:
            seq, self.seq = self.seq, self.seq + 1
        header = [(35, msg_type), (49, sender or self.sender), (56, target), (34, seq)]
        if poss_dup:
            header.append((43, "Y"))
        header.append((52, utc_now()))
        self.sock.sendall(frame(header + list(fields)))
        return seq

    def send_raw(self, data: bytes):
        self.sock.sendall(data)

    def read(self, timeout=5.0) -> Received | None:
        """The next message, or None if none came in `timeout` (or the venue closed)."""
        deadline = time.monotonic() + timeout
        while True:
            message = self._cut()
            if message is not None:
                self.received.append(message)
                return message
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return None
            self.sock.settimeout(remaining)
            try:
                data = self.sock.recv(65536)
            except TimeoutError:
                return None
            except OSError:
                return None
            if not data:
                return None
            self.buffer += data

    def _cut(self) -> Received | None:
        start = self.buffer.find(b"8=FIX.4.4\x019=")
        if start < 0:
            return None
        length_end = self.buffer.index(b"\x01", start + 12) if b"\x01" in self.buffer[start + 12 :] else -1
        if length_end < 0:
            return None
        length = int(self.buffer[start + 12 : length_end])
        end = length_end + 1 + length + 7
        if len(self.buffer) < end:
            return None
        raw, self.buffer = self.buffer[start:end], self.buffer[end:]
        return Received(raw)

    def expect(self, msg_type: str, timeout=5.0, *, skip=("0",)) -> Received:
        """The next message of `msg_type`, passing over heartbeats (and `skip`)."""
        deadline = time.monotonic() + timeout
        seen = []
        while time.monotonic() < deadline:
            message = self.read(deadline - time.monotonic())
            if message is None:
                break
            if message.type == msg_type:
                return message
            if message.type not in skip:
                seen.append(message)
                raise AssertionError(f"expected 35={msg_type}, got {message!r}")
        raise AssertionError(f"no 35={msg_type} within {timeout}s (seen {seen})")

    def reports(self, count: int, timeout=5.0) -> list[Received]:
        return [self.expect("8", timeout) for _ in range(count)]

    def quiet(self, timeout=0.5) -> list[Received]:
        """Everything but heartbeats that arrives within `timeout` (a test that expects nothing)."""
        out = []
        deadline = time.monotonic() + timeout
        while (remaining := deadline - time.monotonic()) > 0:
            message = self.read(remaining)
            if message is None:
                break
            if message.type != "0":
                out.append(message)
        return out

    def logon(self, key: str, *, heartbeat=30, reset=False, seq=None, expect=True) -> Received | None:
        fields = [(98, 0), (108, heartbeat)]
        if reset:
            fields.append((141, "Y"))
        fields += [(553, key.split(".")[0]), (554, key)]
        self.send("A", fields, seq=seq)
        return self.expect("A") if expect else None

    def logout(self) -> Received:
        self.send("5")
        answer = self.expect("5")
        self.close()
        return answer

    def closed(self, timeout=5.0) -> bool:
        """Whether the venue closed the connection (after whatever it still sent)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            self.sock.settimeout(max(0.01, deadline - time.monotonic()))
            try:
                data = self.sock.recv(65536)
            except TimeoutError:
                return False
            except OSError:
                return True
            if not data:
                return True
            self.buffer += data
        return False

    def close(self):
        self.sock.close()

    # Orders ------------------------------------------------------------------------------

    def new_order(self, cl_ord_id, side, quantity, price=None, *, ord_type=None, symbol="QTX-USD", **extra) -> int:
        fields = [(11, cl_ord_id), (55, symbol), (54, {"buy": 1, "sell": 2}[side]), (60, utc_now())]
        fields += [(38, quantity), (40, ord_type or (2 if price is not None else 1))]
        if price is not None:
            fields.append((44, price))
        fields += [(tag, value) for tag, value in extra.get("tags", [])]
        return self.send("D", fields)
