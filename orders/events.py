"""Private events: a trader's own orders and fills, published after commit."""

from dataclasses import dataclass

from quantumtrades.core.money import MONEY_QUANTUM, money_text


def order_payload(order) -> dict:
    """An order as integrators see it (REST responses and the private stream alike)."""
    average = order.average_price
    return {
        "id": order.pk,
        "client_order_id": order.client_order_id,
        "symbol": order.market.symbol,
        "side": order.side,
        "type": order.type,
        "time_in_force": order.time_in_force,
        "post_only": order.post_only,
        "price": money_text(order.price),
        "quantity": money_text(order.quantity),
        "filled_quantity": money_text(order.filled_quantity),
        "remaining_quantity": money_text(order.remaining_quantity),
        "average_price": money_text(average.quantize(MONEY_QUANTUM)) if average is not None else None,
        "stop_price": money_text(order.stop_price),
        "status": order.status,
        # When a stop order's stop price was reached; null while it is pending (and for others).
        "triggered_at": order.triggered_at.isoformat() if order.triggered_at else None,
        "created_at": order.created_at.isoformat() if order.created_at else None,
        "updated_at": order.updated_at.isoformat() if order.updated_at else None,
    }


def fill_payload(fill) -> dict:
    return {
        "id": fill.pk,
        "order_id": fill.order_id,
        "trade_id": fill.trade_id,
        "symbol": fill.market.symbol,
        "side": fill.side,
        "role": fill.role,
        "price": money_text(fill.price),
        "quantity": money_text(fill.quantity),
        "fee": money_text(fill.fee),
        "fee_asset": fill.market.quote_id,
        "time": fill.created_at.isoformat() if fill.created_at else None,
    }


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
