"""Private events: a trader's own orders and fills, published after commit."""

from dataclasses import dataclass

from .payloads import fill_payload, order_payload


@dataclass(frozen=True)
class OrderChanged:
    user_id: int
    market_id: int
    order: dict

    @classmethod
    def of(cls, order) -> "OrderChanged":
        return cls(user_id=order.user_id, market_id=order.market_id, order=order_payload(order))

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
