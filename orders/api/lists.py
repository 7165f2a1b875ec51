"""Order lists: place an OCO or a bracket, read or cancel one of my lists (/api/orders/oco,
/api/orders/bracket, /api/orders/lists/{id}).

Apart from single orders because a list has its own input (a bracket's body nests its
entry and exits), its own answer (the list, its orders and what it traded at once) and
its own commands (`orders.services.lists`). /ws places lists with the same input
serializers and `*_arguments`.
"""

from drf_spectacular.utils import OpenApiExample, OpenApiResponse, extend_schema
from rest_framework import serializers
from rest_framework.response import Response

from marketdata.api import SymbolField
from marketdata.models import Side
from orders.models import MAX_ID, OrderList, OrderSource, TimeInForce
from orders.payloads import list_result_payload, order_list_payload
from orders.selectors import order_list_for_user, orders_of_list
from orders.services import bracket_place, oco_place, order_list_cancel
from quantumtrades.core.api import (
    DecimalInputField,
    StrictCharField,
    StrictChoiceField,
    StrictSerializer,
    error_responses,
)
from quantumtrades.core.errors import NotFound

from .base import TradingView, _decimal
from .fills import FillSerializer
from .orders import OrderSerializer

# --- Serializers (responses) -------------------------------------------------------------------


class OrderListSerializer(serializers.Serializer):
    """An order list: an OCO (a limit and a stop sharing one hold) or a bracket."""

    id = serializers.IntegerField()
    kind = serializers.ChoiceField(choices=OrderList.Kind.choices)
    status = serializers.ChoiceField(
        choices=OrderList.Status.choices, help_text="done: none of its orders is open or pending any more."
    )
    symbol = serializers.CharField()
    take_profit_price = _decimal(allow_null=True, help_text="A bracket's take-profit price; null for an OCO.")
    stop_loss_stop_price = _decimal(allow_null=True, help_text="A bracket's stop-loss trigger; null for an OCO.")
    stop_loss_price = _decimal(
        allow_null=True, help_text="A bracket's stop-loss limit price; null for a stop-market stop-loss, and an OCO."
    )
    orders = OrderSerializer(many=True, help_text="Its orders, oldest first; each names its leg.")
    created_at = serializers.DateTimeField()
    updated_at = serializers.DateTimeField()


class OrderListResultSerializer(serializers.Serializer):
    list = OrderListSerializer()
    orders = OrderSerializer(many=True, help_text="The list's orders as they stand, oldest first.")
    fills = FillSerializer(many=True, help_text="What the command traded at once, oldest first.")


# --- Serializers (input) -----------------------------------------------------------------------


class OcoPlaceInput(StrictSerializer):
    """A new OCO: a limit order and a stop order on one side, for one quantity."""

    symbol = SymbolField(help_text="The market, e.g. QTX-USD.")
    side = StrictChoiceField(choices=Side.choices)
    quantity = DecimalInputField()
    price = DecimalInputField(
        help_text="The limit order's price: a sell's above the last trade price, a buy's below it."
    )
    stop_price = DecimalInputField(
        help_text="The stop order's trigger: a sell's below the last trade price, a buy's above it."
    )
    stop_limit_price = DecimalInputField(
        required=False,
        allow_null=True,
        help_text="Triggered, the stop becomes a limit order at this price; without it, a market order.",
    )
    client_order_id = StrictCharField(
        min_length=1,
        max_length=64,
        required=False,
        allow_null=True,
        help_text="Your id for the list's limit order: repeating it returns the original list (200).",
    )


class BracketEntryInput(StrictSerializer):
    """A bracket's entry: a limit buy."""

    symbol = SymbolField(help_text="The market, e.g. QTX-USD.")
    side = StrictChoiceField(choices=Side.choices, help_text="buy: the exits sell what the entry bought.")
    quantity = DecimalInputField()
    price = DecimalInputField(help_text="The entry's limit price.")
    time_in_force = StrictChoiceField(
        choices=[TimeInForce.GTC, TimeInForce.IOC, TimeInForce.FOK], required=False, allow_null=True
    )
    client_order_id = StrictCharField(
        min_length=1,
        max_length=64,
        required=False,
        allow_null=True,
        help_text="Your id for the entry: repeating it returns the original list (200).",
    )


class TakeProfitInput(StrictSerializer):
    price = DecimalInputField(help_text="The take-profit's limit price, above the entry's.")


class StopLossInput(StrictSerializer):
    stop_price = DecimalInputField(help_text="The stop-loss's trigger, below the entry's price.")
    price = DecimalInputField(
        required=False, allow_null=True, help_text="Triggered, a limit sell at this price; without it, a market sell."
    )


class BracketPlaceInput(StrictSerializer):
    """A new bracket: an entry and the exits its fills place."""

    entry = BracketEntryInput()
    take_profit = TakeProfitInput()
    stop_loss = StopLossInput()


def bracket_place_arguments(data: dict) -> dict:
    """`bracket_place`'s keyword arguments from a parsed BracketPlaceInput (REST and /ws alike)."""
    entry = data["entry"]
    return {
        "market": entry["symbol"],
        "side": entry["side"],
        "quantity": entry["quantity"],
        "price": entry["price"],
        "time_in_force": entry.get("time_in_force"),
        "client_order_id": entry.get("client_order_id"),
        "take_profit_price": data["take_profit"]["price"],
        "stop_loss_stop_price": data["stop_loss"]["stop_price"],
        "stop_loss_price": data["stop_loss"].get("price"),
    }


def oco_place_arguments(data: dict) -> dict:
    """`oco_place`'s keyword arguments from a parsed OcoPlaceInput (REST and /ws alike)."""
    return {
        "market": data["symbol"],
        "side": data["side"],
        "quantity": data["quantity"],
        "price": data["price"],
        "stop_price": data["stop_price"],
        "stop_limit_price": data.get("stop_limit_price"),
        "client_order_id": data.get("client_order_id"),
    }


# --- Views -------------------------------------------------------------------------------------


class OcoView(TradingView):
    @extend_schema(
        operation_id="orders_oco_place",
        tags=["orders"],
        summary="Place an OCO: a limit and a stop on one side, the first to act cancels the other",
        description="Both orders share one hold (the larger of their needs). A fill of the limit, even a partial "
        "one, cancels the stop; the stop's trigger cancels the limit; cancelling either cancels both. A sell needs "
        "stop_price < last trade price < price, a buy price < last trade price < stop_price, so that neither acts "
        "at once. 201 with the list, its orders and what the limit traded at once.",
        request=OcoPlaceInput,
        examples=[
            OpenApiExample(
                "Sell at 11.00, or stop out below 9.50 (at 9.40 or better)",
                request_only=True,
                value={
                    "symbol": "QTX-USD",
                    "side": "sell",
                    "quantity": "2.50",
                    "price": "11.00",
                    "stop_price": "9.50",
                    "stop_limit_price": "9.40",
                },
            )
        ],
        responses={
            201: OrderListResultSerializer,
            200: OpenApiResponse(OrderListResultSerializer, description="Repeated client_order_id: the original."),
            **error_responses(400, 401, 403, 409, 413, 415, 429),
        },
    )
    def post(self, request):
        data = OcoPlaceInput.parse_body(request)
        result = oco_place(user=request.user, **oco_place_arguments(data), source=OrderSource.REST)
        return Response(list_result_payload(result), status=201 if result.created else 200)


class BracketView(TradingView):
    @extend_schema(
        operation_id="orders_bracket_place",
        tags=["orders"],
        summary="Place a bracket: an entry whose fills place a take-profit and a stop-loss",
        description="The entry is a limit buy. Each of its fills places, in the same command, an OCO of exits "
        "for the quantity filled (a later fill grows them): a take-profit (a limit sell at take_profit.price, "
        "above the entry's price) and a stop-loss (a stop sell at stop_loss.stop_price, below it; a stop-limit "
        "with stop_loss.price). The exits hold the base the fills delivered. 201 with the list, its orders and "
        "what the entry traded at once.",
        request=BracketPlaceInput,
        examples=[
            OpenApiExample(
                "Buy 1.00 at 10.00; then sell at 11.00, or stop out below 9.50",
                request_only=True,
                value={
                    "entry": {"symbol": "QTX-USD", "side": "buy", "quantity": "1.00", "price": "10.00"},
                    "take_profit": {"price": "11.00"},
                    "stop_loss": {"stop_price": "9.50"},
                },
            )
        ],
        responses={
            201: OrderListResultSerializer,
            200: OpenApiResponse(OrderListResultSerializer, description="Repeated client_order_id: the original."),
            **error_responses(400, 401, 403, 409, 413, 415, 429),
        },
    )
    def post(self, request):
        data = BracketPlaceInput.parse_body(request)
        result = bracket_place(user=request.user, **bracket_place_arguments(data), source=OrderSource.REST)
        return Response(list_result_payload(result), status=201 if result.created else 200)


class OrderListView(TradingView):
    def _own_list(self, request, list_id):
        order_list = order_list_for_user(request.user, list_id)
        if order_list is None:
            raise NotFound("No such order list.")
        return order_list

    @extend_schema(
        operation_id="orders_lists_retrieve",
        tags=["orders"],
        summary="One of my order lists (OCO or bracket) with its orders",
        responses={200: OrderListSerializer, **error_responses(401, 404, 429)},
    )
    def get(self, request, list_id):
        order_list = self._own_list(request, list_id)
        return Response(order_list_payload(order_list, orders_of_list(order_list)))

    @extend_schema(
        operation_id="orders_lists_cancel",
        tags=["orders"],
        summary="Cancel every open order of one of my order lists",
        responses={200: OrderListSerializer, **error_responses(401, 404, 409, 429)},
    )
    def delete(self, request, list_id):
        if list_id > MAX_ID:
            raise NotFound("No such order list.")
        order_list = order_list_cancel(user=request.user, list_id=list_id)
        return Response(order_list_payload(order_list, orders_of_list(order_list)))
