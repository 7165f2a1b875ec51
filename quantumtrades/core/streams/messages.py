"""What travels between processes: the events the streams take and the messages they send.

The streams carry the events of any app without importing it. An event says what it is by
its attributes: one with a `user_id` is private to that user, one with a `market_id` is
public; either turns itself into the JSON message a client receives (`as_message`).

A publisher sends one channel-layer message, `StreamsMessage`, to the group every hub
listens to; it carries a list of items, each one of the three below. Channels serialises
them with msgpack over Redis, so they are plain dicts, lists, strings and numbers.
"""

from typing import Literal, Protocol, TypedDict


class PublicEvent(Protocol):
    """An event every subscriber of a market may see (a book change, a trade)."""

    market_id: int

    def as_message(self) -> dict: ...


class PrivateEvent(Protocol):
    """An event only its user may see (an order, a fill, a balance).

    One that states a thing's whole state (an order, a balance) also has a
    `stream_version`: `(key, version, final)`, the thing it is about (unique for its user,
    "order:17"), a number that grows in the commit order of that thing's changes, and
    whether this is its last state. Commands of two processes reach a hub in either order;
    the hub drops an event older than one it already sent for the same key (`Versions`).
    An event without one (a fill: news, each sent once) is forwarded as it comes.
    """

    user_id: int

    def as_message(self) -> dict: ...


class Batch(TypedDict):
    """The events of the commands a publisher sent together, in commit order."""

    kind: Literal["batch"]
    committed: float  # when the first of them committed (time.time()), for the publish lag
    # Each event's message, with its "market_id" and, for an event of a command on a book
    # (a book change, a trade), the command's book "seq": a trade waits for its book.
    public: list[dict]
    # (user id, message, key, version, final): the last three from `stream_version`, or None.
    private: list[tuple[int, dict, str | None, int | None, bool]]


class UserFragments(TypedDict):
    """Rendered HTML fragments for every page socket of one user (`stream_to_user`)."""

    kind: Literal["user_fragments"]
    user_id: int
    html: str


class Resync(TypedDict):
    """Every hub reloads its books from the database: something may have been lost."""

    kind: Literal["resync"]


Item = Batch | UserFragments | Resync


class StreamsMessage(TypedDict):
    type: Literal["streams.items"]  # the channel-layer message type hubs handle
    items: list[Item]


RESYNC: Resync = {"kind": "resync"}


class Versions:
    """The newest version sent of each thing of one user's private stream (a hub keeps one
    per user with a private socket), so that an event older than one already sent is
    dropped: the last state a socket gets is the last committed.

    Bounded: live things (a user's open orders, their balances) are few, and past
    LIVE_KEPT the least recently changed is forgotten (an order whose last state was
    missed in an outage); a thing whose final state was sent moves to a FIFO of DONE_KEPT
    keys, long enough to stop a stale event that arrives within the publish interval of
    another process, then is forgotten.
    """

    LIVE_KEPT = 4096
    DONE_KEPT = 256

    __slots__ = ("done", "live")

    def __init__(self):
        self.live: dict[str, int] = {}
        self.done: dict[str, int] = {}  # insertion order: the oldest first

    def admit(self, key: str, version: int, final: bool) -> bool:
        """Whether an event of `key` at `version` is newer than every one sent; records it."""
        last = self.live.get(key)
        if last is None:
            last = self.done.get(key)
        if last is not None and version <= last:
            return False
        if final:
            self.live.pop(key, None)
            self.done[key] = version
            if len(self.done) > self.DONE_KEPT:
                del self.done[next(iter(self.done))]
        else:
            self.live.pop(key, None)  # to the end: the most recently changed
            self.live[key] = version
            if len(self.live) > self.LIVE_KEPT:
                del self.live[next(iter(self.live))]
        return True


def streams_message(items: list[Item]) -> StreamsMessage:
    return {"type": "streams.items", "items": items}
