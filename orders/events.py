"""Private events: a trader's own orders and fills, published after commit."""

from dataclasses import dataclass

from .payloads import fill_payload, order_payload

# The statuses after which an order never changes again.
FINAL_STATUSES = frozenset({"filled", "cancelled", "expired", "rejected"})


@dataclass(frozen=True)
class OrderChanged:
    user_id: int
    market_id: int
    order: dict
    # The book seq of the command that wrote this state: an order lives on one market, and
    # its market's seq grows in commit order (drawn under the book lock).
    seq: int | None = None

    @classmethod
    def of(cls, order, seq: int | None = None) -> "OrderChanged":
        return cls(user_id=order.user_id, market_id=order.market_id, order=order_payload(order), seq=seq)

    @property
    def stream_version(self) -> tuple[str, int, bool] | None:
        """`quantumtrades.core.streams.PrivateEvent`: newer states win on the live streams."""
        if self.seq is None:
            return None
        return f"order:{self.order['id']}", self.seq, self.order["status"] in FINAL_STATUSES

    def as_message(self) -> dict:
        # The message's "type" names the message; the order's own type travels as order_type.
        return {**self.order, "type": "order", "order_type": self.order["type"]}


@dataclass(frozen=True)
class FillCreated:
    user_id: int
    market_id: int
    fill: dict

    @classmethod
    def of(cls, fill) -> "FillCreated":
        return cls(user_id=fill.user_id, market_id=fill.market_id, fill=fill_payload(fill))

    def as_message(self) -> dict:
        return {"type": "fill", **self.fill}
