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
    """An event only its user may see (an order, a fill, a balance)."""

    user_id: int

    def as_message(self) -> dict: ...


class Batch(TypedDict):
    """The events of the commands a publisher sent together, in commit order."""

    kind: Literal["batch"]
    committed: float  # when the first of them committed (time.time()), for the publish lag
    public: list[dict]  # each event's message, with its "market_id"
    private: list[tuple[int, dict]]  # (user id, message)


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


def streams_message(items: list[Item]) -> StreamsMessage:
    return {"type": "streams.items", "items": items}
