"""FIX 4.4 on the wire: framing, checksums, reading fields and building messages.

`simplefix` builds every message the gateway sends (fields, BodyLength, CheckSum).
Framing and reading are done here, because a venue must tell a garbled message (wrong
BodyLength or CheckSum: dropped, as the FIX session rules say) from a malformed one (a
bad field: answered with Reject (3), which needs the rest of the message read), and
simplefix's parser neither checks the checksum nor reads past a tag that is not a number.
"""

import datetime
import re

import simplefix

BEGIN_STRING = "FIX.4.4"
SOH = b"\x01"
# A frame's start: BeginString, then BodyLength (FIX: always the first two fields).
_START = re.compile(rb"8=FIX\.4\.4\x019=(\d{1,7})\x01")
MAX_BODY = 65536
_HEADER = b"8=FIX.4.4\x019="
_PARTIAL = re.compile(rb"8=FIX\.4\.4\x019=\d{1,7}")


class Garbled(Exception):
    """Bytes that are not a FIX 4.4 message: dropped (and the connection, if nothing fits)."""


def utc_timestamp(when: datetime.datetime | None = None) -> str:
    """UTCTimestamp with milliseconds: 20261206-08:15:02.123."""
    when = when or datetime.datetime.now(datetime.UTC)
    return when.strftime("%Y%m%d-%H:%M:%S.") + f"{when.microsecond // 1000:03d}"


def checksum(data: bytes) -> str:
    return f"{sum(data) % 256:03d}"


def next_frame(buffer: bytearray) -> bytes | None:
    """Cut the first whole message from `buffer` (None until one has arrived).

    Garbled when the buffer does not start with a FIX 4.4 header, or the checksum is
    wrong; the bad bytes are consumed first, so the caller may go on reading.
    """
    if not buffer:
        return None
    match = _START.match(buffer)
    if match is None:
        head = bytes(buffer[:24])
        if _HEADER.startswith(head) or _PARTIAL.fullmatch(head):
            return None  # the header is still arriving
        # Skip to the next plausible start.
        at = buffer.find(b"8=FIX", 1)
        bad = bytes(buffer[: at if at > 0 else len(buffer)])
        del buffer[: at if at > 0 else len(buffer)]
        raise Garbled(f"not a FIX 4.4 header: {bad[:40]!r}")
    length = int(match.group(1))
    if length > MAX_BODY:
        del buffer[: match.end()]
        raise Garbled(f"BodyLength {length} is too large")
    end_of_body = match.end() + length
    if len(buffer) < end_of_body + 7:
        return None
    trailer = bytes(buffer[end_of_body : end_of_body + 7])
    frame = bytes(buffer[: end_of_body + 7])
    if not trailer.startswith(b"10=") or not trailer.endswith(SOH):
        at = buffer.find(b"8=FIX", 1)
        del buffer[: at if at > 0 else len(buffer)]
        raise Garbled("BodyLength does not end at the CheckSum field")
    del buffer[: end_of_body + 7]
    if trailer[3:6].decode("ascii", "replace") != checksum(frame[:end_of_body]):
        raise Garbled(f"CheckSum {trailer[3:6]!r} is wrong")
    return frame


class Message:
    """A parsed message: its fields in order, and a lookup by tag (first occurrence)."""

    __slots__ = ("fields", "first", "problem", "raw")

    def __init__(self, raw: bytes):
        # Split here rather than by simplefix's parser, which raises on the first bad tag:
        # a malformed field must still leave the message's MsgSeqNum readable, to reject it.
        parsed = [pair.partition(b"=")[::2] for pair in raw.split(SOH)[:-1]]
        self.raw = raw
        self.fields = []
        # The first field that makes the message malformed: (tag text, SessionRejectReason 373).
        self.problem = None
        for tag, value in parsed:
            if not tag.isdigit() or int(tag) == 0:
                self.problem = self.problem or (tag.decode("latin-1")[:16], 0)  # invalid tag number
                continue
            if not value:
                self.problem = self.problem or (tag.decode(), 4)  # tag specified without a value
            self.fields.append((int(tag), value.decode("latin-1")))
        self.first = {}
        for tag, value in self.fields:
            self.first.setdefault(tag, value)

    def get(self, tag: int, default=None):
        return self.first.get(tag, default)

    def __contains__(self, tag: int) -> bool:
        return tag in self.first

    @property
    def msg_type(self) -> str:
        return self.first.get(35, "")

    def groups(self, count_tag: int, first_tag: int) -> list[dict]:
        """A repeating group's entries (each a dict tag -> value), delimited by its first tag."""
        entries, inside = [], False
        for tag, value in self.fields:
            if tag == count_tag:
                inside = True
                continue
            if not inside:
                continue
            if tag == first_tag:
                entries.append({})
            if entries:
                if tag in entries[-1] and tag != first_tag:
                    break
                entries[-1][tag] = value
        return entries


def body_text(fields) -> str:
    """A body's fields as they are stored: tag=value, SOH-separated."""
    return "\x01".join(f"{tag}={value}" for tag, value in fields)


def body_fields(text: str) -> list[tuple[int, str]]:
    fields = []
    for pair in text.split("\x01") if text else []:
        tag, _, value = pair.partition("=")
        fields.append((int(tag), value))
    return fields


def encode(msg_type: str, seq: int, sender: str, target: str, sending_time: str, fields, *, resend_of=None) -> bytes:
    """The whole message: header, body, BodyLength and CheckSum (simplefix adds those two).

    `resend_of`: the original SendingTime of a message resent with PossDupFlag (43=Y).
    """
    message = simplefix.FixMessage()
    message.append_pair(8, BEGIN_STRING, header=True)
    message.append_pair(35, msg_type, header=True)
    message.append_pair(49, sender, header=True)
    message.append_pair(56, target, header=True)
    message.append_pair(34, seq, header=True)
    if resend_of is not None:
        message.append_pair(43, "Y", header=True)
    message.append_pair(52, sending_time, header=True)
    if resend_of is not None:
        message.append_pair(122, resend_of, header=True)
    for tag, value in fields:
        message.append_pair(tag, value)
    return message.encode()
