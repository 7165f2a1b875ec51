"""Orders, one at a time: place, list, amend and cancel my orders, or cancel them all
(/api/orders, /api/orders/open, /api/orders/{id}).

An order's shape (`OrderSerializer`, `OrderResultSerializer`) and its input
(`OrderPlaceInput`, `OrderAmendInput`, each with its `*_arguments`) are here, beside the
order's own endpoints: lists and batches answer with the same shape, and /ws and FIX
check an order with the same input serializers.
"""

from drf_spectacular.utils import OpenApiExample, OpenApiResponse, extend_schema, extend_schema_field
from rest_framework import generics, serializers
from rest_framework.response import Response

from marketdata.api import SymbolField, market_by_symbol
from marketdata.models import Side
from orders.models import MAX_ID, Leg, OrderSource, OrderStatus, OrderType, SelfTradePrevention, TimeInForce
from orders.payloads import order_payload, result_payload
from orders.selectors import order_for_user, orders_for_user, orders_open_for_user
from orders.services import order_amend, order_cancel, order_place, orders_cancel_all
from quantumtrades.core.api import (
    ApiPagination,
    DecimalInputField,
    QuerySerializer,
    StrictBooleanField,
    StrictCharField,
    StrictChoiceField,
    StrictSerializer,
    error_responses,
)
from quantumtrades.core.api import query_parameter as param
from quantumtrades.core.errors import NotFound

from .base import SYMBOL_PARAMETER, SymbolFilter, TradingView, _decimal
from .fills import FillSerializer

# --- Serializers (responses): the shape of order_payload ---------------------------------------


class OrderSerializer(serializers.Serializer):
    """An order as integrators see it: REST responses and the private stream alike."""

    id = serializers.IntegerField()
    client_order_id = serializers.CharField(allow_null=True)
    symbol = serializers.CharField()
    side = serializers.ChoiceField(choices=Side.choices)
    type = serializers.ChoiceField(choices=OrderType.choices)
    time_in_force = serializers.ChoiceField(choices=TimeInForce.choices)
    post_only = serializers.BooleanField()
    stp = serializers.ChoiceField(choices=SelfTradePrevention.choices, help_text="Self-trade prevention.")
    source = serializers.ChoiceField(
        choices=OrderSource.choices, help_text="Where the order came from: web, rest, ws, fix, admin or system."
    )
    price = _decimal(allow_null=True, help_text="Null for market and stop-market orders.")
    quantity = _decimal()
    filled_quantity = _decimal()
    remaining_quantity = _decimal()
    average_price = _decimal(allow_null=True, help_text="Average fill price; null before the first fill.")
    stop_price = _decimal(
        allow_null=True,
        help_text="Stop orders: the trigger price (a trailing stop's moves with the market). Null for other orders.",
    )
    display_quantity = _decimal(
        allow_null=True, help_text="Iceberg orders: the most the book shows at once. Null for other orders."
    )
    expire_at = serializers.DateTimeField(allow_null=True, help_text="GTD orders: when the order expires.")
    trailing_delta = _decimal(allow_null=True, help_text="Trailing stops: the stop's distance, as a price.")
    trailing_percent = _decimal(allow_null=True, help_text="Trailing stops: the stop's distance, in percent.")
    limit_offset = _decimal(
        allow_null=True, help_text="Trailing stops: triggered, a limit order this far beyond the stop; null: market."
    )
    list_id = serializers.IntegerField(allow_null=True, help_text="The order list (OCO or bracket) it belongs to.")
    leg = serializers.ChoiceField(
        choices=Leg.choices,
        allow_null=True,
        help_text="Its part in its list: entry, take_profit, stop_loss, limit, stop.",
    )
    status = serializers.ChoiceField(
        choices=OrderStatus.choices, help_text="pending: a stop order waiting for its trigger, off the book."
    )
    triggered_at = serializers.DateTimeField(
        allow_null=True, help_text="Stop orders: when a trade reached the stop price; null while pending."
    )
    created_at = serializers.DateTimeField()
    updated_at = serializers.DateTimeField()

    def to_representation(self, order):
        return order_payload(order)


class OrderResultSerializer(serializers.Serializer):
    order = OrderSerializer()
    fills = FillSerializer(many=True, help_text="What the command traded at once, oldest first.")


# --- Serializers (input) -----------------------------------------------------------------------


@extend_schema_field({"type": "string", "format": "date-time", "example": "2026-12-31T18:00:00Z"})
class TimeInputField(StrictCharField):
    """A time as ISO 8601 text; the engine parses and judges it (`rules.order_validate`)."""

    def __init__(self, **kwargs):
        kwargs.setdefault("max_length", 40)
        super().__init__(**kwargs)


class OrderPlaceInput(StrictSerializer):
    """A new order. No other fields are accepted; decimals travel as strings."""

    symbol = SymbolField(help_text="The market, e.g. QTX-USD.")
    side = StrictChoiceField(choices=Side.choices)
    type = StrictChoiceField(choices=OrderType.choices, required=False, default=OrderType.LIMIT)
    price = DecimalInputField(required=False, allow_null=True, help_text="limit and stop_limit orders only.")
    stop_price = DecimalInputField(
        required=False,
        allow_null=True,
        help_text="stop_limit and stop_market orders only: a buy stop triggers when a trade prints at or above "
        "it, a sell stop at or below. It must not be reached already by the last trade.",
    )
    trailing_delta = DecimalInputField(
        required=False,
        allow_null=True,
        help_text="trailing_stop only (or trailing_percent): how far the stop trails the best trade price since "
        "acceptance, a multiple of the tick.",
    )
    trailing_percent = DecimalInputField(
        required=False,
        allow_null=True,
        help_text="trailing_stop only (or trailing_delta): the same distance in percent of that price, above 0 "
        "and at most 50, at most 3 decimals (1.5 is 1.5 %).",
    )
    limit_offset = DecimalInputField(
        required=False,
        allow_null=True,
        help_text="trailing_stop only: triggered, a limit order this far beyond its stop (a multiple of the tick); "
        "without it, a market order.",
    )
    quantity = DecimalInputField()
    display_quantity = DecimalInputField(
        required=False,
        allow_null=True,
        help_text="An iceberg (limit GTC or GTD orders): the most the book shows of the order at once, a multiple "
        "of the lot, at most the quantity; each slice filled, the next shows with a new time priority.",
    )
    time_in_force = StrictChoiceField(
        choices=TimeInForce.choices,
        required=False,
        allow_null=True,
        help_text="Default: GTC for limit and stop-limit orders, IOC for market and stop-market orders. GTD (limit "
        "and stop-limit orders): rests until expire_at.",
    )
    expire_at = TimeInputField(
        required=False,
        allow_null=True,
        help_text="GTD orders only: when the order expires, an ISO 8601 time at least 5 seconds ahead (UTC unless "
        "it carries an offset), e.g. 2026-12-31T18:00:00Z.",
    )
    post_only = StrictBooleanField(required=False, default=False, help_text="Rejected if it would take.")
    stp = StrictChoiceField(
        choices=SelfTradePrevention.choices,
        required=False,
        default=SelfTradePrevention.EXPIRE_TAKER,
        help_text="Self-trade prevention, on meeting a resting order of your own: expire_taker (this order's "
        "remainder expires), expire_maker (the resting order is cancelled, matching goes on) or expire_both.",
    )
    client_order_id = StrictCharField(
        min_length=1,
        max_length=64,
        required=False,
        allow_null=True,
        help_text="Your id for the order: repeating it returns the original order (200) and places nothing.",
    )


class OrderAmendInput(StrictSerializer):
    """New price and/or quantity for an open limit order; also a new stop price for a pending stop."""

    price = DecimalInputField(required=False, help_text="A new price: the order loses its place in the queue.")
    quantity = DecimalInputField(
        required=False, help_text="A new total quantity: smaller keeps the place in the queue, larger loses it."
    )
    stop_price = DecimalInputField(
        required=False, help_text="Pending stop orders only: a new stop price (the stop loses its place)."
    )


def order_place_arguments(data: dict) -> dict:
    """`order_place`'s keyword arguments from a parsed OrderPlaceInput (REST and /ws alike)."""
    return {
        "market": data["symbol"],
        "side": data["side"],
        "type": data["type"],
        "quantity": data["quantity"],
        "price": data.get("price"),
        "stop_price": data.get("stop_price"),
        "time_in_force": data.get("time_in_force"),
        "post_only": data["post_only"],
        "stp": data["stp"],
        "client_order_id": data.get("client_order_id"),
        "expire_at": data.get("expire_at"),
        "display_quantity": data.get("display_quantity"),
        "trailing_delta": data.get("trailing_delta"),
        "trailing_percent": data.get("trailing_percent"),
        "limit_offset": data.get("limit_offset"),
    }


def order_amend_arguments(data: dict) -> dict:
    """`order_amend`'s keyword arguments (after user and order_id) from a parsed OrderAmendInput."""
    return {name: data.get(name) for name in ("price", "quantity", "stop_price")}


class OrderFilter(QuerySerializer):
    symbol = SymbolField(required=False)
    status = StrictChoiceField(choices=OrderStatus.choices, required=False)


STATUS_PARAMETER = param("status", "Only orders in this status.", enum=OrderStatus.values)


def own_order_id(order_id: int) -> int:
    if order_id > MAX_ID:
        raise NotFound("No such order.")
    return order_id


# --- Views -------------------------------------------------------------------------------------


class OrdersView(TradingView, generics.ListAPIView):
    serializer_class = OrderSerializer
    pagination_class = ApiPagination

    def get_queryset(self):
        query = OrderFilter.parse(self.request)
        market = market_by_symbol(query["symbol"], field="symbol") if "symbol" in query else None
        statuses = [query["status"]] if "status" in query else None
        return orders_for_user(self.request.user, market=market, statuses=statuses)

    @extend_schema(
        operation_id="orders_list",
        tags=["orders"],
        summary="My orders, newest first",
        parameters=[SYMBOL_PARAMETER, STATUS_PARAMETER],
        responses={200: OrderSerializer(many=True), **error_responses(400, 401, 404, 429)},
    )
    def get(self, request, *args, **kwargs):
        return super().get(request, *args, **kwargs)

    @extend_schema(
        operation_id="orders_place",
        tags=["orders"],
        summary="Place an order",
        description="201 with the new order and what it traded at once. A repeated client_order_id "
        "answers 200 with the original order and its fills, and places nothing.",
        request=OrderPlaceInput,
        examples=[
            OpenApiExample(
                "Limit buy",
                request_only=True,
                value={"symbol": "QTX-USD", "side": "buy", "type": "limit", "price": "10.25", "quantity": "2.50"},
            ),
            OpenApiExample(
                "Stop-limit sell: when a trade prints at 9.50 or lower, sell at 9.40 or better",
                request_only=True,
                value={
                    "symbol": "QTX-USD",
                    "side": "sell",
                    "type": "stop_limit",
                    "stop_price": "9.50",
                    "price": "9.40",
                    "quantity": "2.50",
                },
            ),
            OpenApiExample(
                "Market sell, with an id for safe retries",
                request_only=True,
                value={
                    "symbol": "QTX-USD",
                    "side": "sell",
                    "type": "market",
                    "quantity": "1.00",
                    "time_in_force": "IOC",
                    "client_order_id": "my-order-0001",
                },
            ),
        ],
        responses={
            201: OrderResultSerializer,
            200: OpenApiResponse(OrderResultSerializer, description="Repeated client_order_id: the original."),
            **error_responses(400, 401, 409, 413, 415, 429),
        },
    )
    def post(self, request):
        data = OrderPlaceInput.parse_body(request)
        result = order_place(user=request.user, **order_place_arguments(data), source=OrderSource.REST)
        return Response(result_payload(result), status=201 if result.created else 200)

    @extend_schema(
        operation_id="orders_cancel_all",
        tags=["orders"],
        summary="Cancel all my open orders (on one market with ?symbol=)",
        parameters=[SYMBOL_PARAMETER],
        responses={200: OrderSerializer(many=True), **error_responses(400, 401, 429)},
    )
    def delete(self, request):
        query = SymbolFilter.parse(request)
        market = market_by_symbol(query["symbol"], field="symbol") if "symbol" in query else None
        cancelled = orders_cancel_all(user=request.user, market=market)
        return Response([order_payload(order) for order in cancelled])


class OpenOrdersView(generics.ListAPIView):
    serializer_class = OrderSerializer
    pagination_class = ApiPagination

    def get_queryset(self):
        query = SymbolFilter.parse(self.request)
        market = market_by_symbol(query["symbol"], field="symbol") if "symbol" in query else None
        return orders_open_for_user(self.request.user, market)

    @extend_schema(
        operation_id="orders_open",
        tags=["orders"],
        summary="My open orders (open, partially filled, or pending stops), newest first",
        parameters=[SYMBOL_PARAMETER],
        responses={200: OrderSerializer(many=True), **error_responses(400, 401, 404, 429)},
    )
    def get(self, request, *args, **kwargs):
        return super().get(request, *args, **kwargs)


class OrderView(TradingView):
    @extend_schema(
        operation_id="orders_retrieve",
        tags=["orders"],
        summary="One of my orders",
        responses={200: OrderSerializer, **error_responses(401, 404, 429)},
    )
    def get(self, request, order_id):
        order = order_for_user(request.user, order_id)
        if order is None:
            raise NotFound("No such order.")
        return Response(order_payload(order))

    @extend_schema(
        operation_id="orders_amend",
        tags=["orders"],
        summary="Amend an open order's price and/or quantity, or a pending stop's stop price",
        request=OrderAmendInput,
        examples=[OpenApiExample("New price", request_only=True, value={"price": "10.50"})],
        responses={200: OrderResultSerializer, **error_responses(400, 401, 404, 409, 413, 415, 429)},
    )
    def patch(self, request, order_id):
        data = OrderAmendInput.parse_body(request)
        result = order_amend(user=request.user, order_id=own_order_id(order_id), **order_amend_arguments(data))
        return Response(result_payload(result))

    @extend_schema(
        operation_id="orders_cancel",
        tags=["orders"],
        summary="Cancel an open order",
        responses={200: OrderSerializer, **error_responses(401, 404, 409, 429)},
    )
    def delete(self, request, order_id):
        return Response(order_payload(order_cancel(user=request.user, order_id=own_order_id(order_id))))
