"""What an order and a fill look like to a client, in one shape wherever they go: REST
answers, `/ws` order entry, the private stream's `order` and `fill` messages, and the
events the pages' fragments are built from (docs/API.md, "Orders")."""

from decimal import Decimal

from quantumtrades.core.money import money, money_text

# Every amount is spelt with the database's 8 places. An order the engine has just made
# still holds the model's default (an int 0) in filled_quantity; read back it is
# Decimal("0.00000000"). Quantized here, both are "0.00000000" on every door.
ORDER_AMOUNTS = (
    "price", "quantity", "filled_quantity", "remaining_quantity", "average_price", "stop_price", "display_quantity",
    "trailing_delta", "limit_offset",
)  # fmt: skip


def _amount(value) -> str | None:
    return None if value is None else money_text(money(Decimal(value)))


def _time(value) -> str | None:
    return value.isoformat() if value else None


def order_payload(order) -> dict:
    return {
        "id": order.pk,
        "client_order_id": order.client_order_id,
        "symbol": order.market.symbol,
        "side": order.side,
        "type": order.type,
        "time_in_force": order.time_in_force,
        "post_only": order.post_only,
        "stp": order.stp,
        "source": order.source,
        "price": _amount(order.price),
        "quantity": _amount(order.quantity),
        "filled_quantity": _amount(order.filled_quantity),
        "remaining_quantity": _amount(order.remaining_quantity),
        "average_price": _amount(order.average_price),
        "stop_price": _amount(order.stop_price),
        # Richer orders (docs/API.md, "Richer orders"): null unless the order is of that kind.
        "display_quantity": _amount(order.display_quantity),
        "expire_at": _time(order.expire_at),
        "trailing_delta": _amount(order.trailing_delta),
        "trailing_percent": None if order.trailing_percent is None else f"{order.trailing_percent.normalize():f}",
        "limit_offset": _amount(order.limit_offset),
        "list_id": order.order_list_id,
        "leg": order.leg or None,
        "status": order.status,
        # When a stop order's stop price was reached; null while it is pending (and for others).
        "triggered_at": _time(order.triggered_at),
        "created_at": _time(order.created_at),
        "updated_at": _time(order.updated_at),
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
        "time": _time(fill.created_at),
    }


def result_payload(result) -> dict:
    """A command's outcome: the order as it stands and the fills it made."""
    return {"order": order_payload(result.order), "fills": [fill_payload(fill) for fill in result.fills]}


def order_list_payload(order_list, orders) -> dict:
    """An order list (OCO or bracket) with its orders, oldest first."""
    return {
        "id": order_list.pk,
        "kind": order_list.kind,
        "status": order_list.status,
        "symbol": order_list.market.symbol,
        # A bracket's exits, placed as its entry fills; null for an OCO.
        "take_profit_price": _amount(order_list.take_profit_price),
        "stop_loss_stop_price": _amount(order_list.stop_loss_stop_price),
        "stop_loss_price": _amount(order_list.stop_loss_price),
        "orders": [order_payload(order) for order in orders],
        "created_at": _time(order_list.created_at),
        "updated_at": _time(order_list.updated_at),
    }


def list_result_payload(result) -> dict:
    """A list command's outcome: the list with its orders as they stand, and the fills it made."""
    orders = sorted(result.orders, key=lambda order: order.pk)
    return {
        "list": order_list_payload(result.order_list, orders),
        "orders": [order_payload(order) for order in orders],
        "fills": [fill_payload(fill) for fill in result.fills],
    }
