"""REST API for trading: place, list, amend and cancel my orders, one at a time or in batches
(each order answered in its place, `batch_place`, which /ws shares); my fills.

A thin door onto the matching engine (orders.services): the input serializers refuse
what is malformed (types, enums, unknown fields, decimals that are not plain decimals);
the engine's `order_validate`, which `order_place` runs first, judges the trading rules
(tick, lot, minimum notional), so the API and the order ticket refuse an order in the
same words. Orders and fills are rendered by `orders.payloads`, which also feeds `/ws`
order entry and the private stream.
"""

import logging
from collections.abc import Mapping
from decimal import Decimal

from drf_spectacular.utils import OpenApiExample, OpenApiResponse, extend_schema, extend_schema_field
from rest_framework import generics, serializers
from rest_framework.response import Response
from rest_framework.views import APIView

from marketdata.api import SYMBOL_SCHEMA, SymbolField, market_by_symbol
from marketdata.models import Side
from orders.models import (
    MAX_ID,
    Fill,
    Leg,
    OrderList,
    OrderSource,
    OrderStatus,
    OrderType,
    SelfTradePrevention,
    TimeInForce,
)
from orders.payloads import fill_payload, list_result_payload, order_list_payload, order_payload, result_payload
from orders.protection import CANCEL_AFTER_MAX_SECONDS, CANCEL_AFTER_MIN_SECONDS, dead_mans_switch_arm
from orders.selectors import (
    fills_for_user,
    order_for_user,
    order_list_for_user,
    orders_for_user,
    orders_of_list,
    orders_open_for_user,
)
from orders.services import (
    BATCH_MAX,
    OrderResult,
    bracket_place,
    oco_place,
    order_amend,
    order_cancel,
    order_list_cancel,
    order_place,
    orders_cancel_all,
    orders_cancel_batch,
    orders_place_batch,
)
from quantumtrades.core import unavailable
from quantumtrades.core.api import (
    STRICT_MESSAGES,
    ApiPagination,
    DecimalInputField,
    ErrorBodySerializer,
    QuerySerializer,
    StrictBooleanField,
    StrictCharField,
    StrictChoiceField,
    StrictSerializer,
    error_responses,
    input_error,
)
from quantumtrades.core.api import query_parameter as param
from quantumtrades.core.errors import ErrorCode, InvalidInput, NotFound, ServiceError, error_body

log = logging.getLogger(__name__)


def _decimal(**kwargs):
    return serializers.DecimalField(max_digits=28, decimal_places=8, **kwargs)


# --- Serializers (responses): the shape of order_payload and fill_payload ---------------------


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


class FillSerializer(serializers.Serializer):
    """One side of a trade as its order's owner sees it."""

    id = serializers.IntegerField()
    order_id = serializers.IntegerField()
    trade_id = serializers.IntegerField()
    symbol = serializers.CharField()
    side = serializers.ChoiceField(choices=Side.choices)
    role = serializers.ChoiceField(choices=Fill.Role.choices)
    price = _decimal()
    quantity = _decimal()
    fee = _decimal()
    fee_asset = serializers.CharField()
    time = serializers.DateTimeField()

    def to_representation(self, fill):
        return fill_payload(fill)


class OrderResultSerializer(serializers.Serializer):
    order = OrderSerializer()
    fills = FillSerializer(many=True, help_text="What the command traded at once, oldest first.")


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


# --- Serializers (input) ---------------------------------------------------------------------


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


# --- Batches (input, and each order's answer in its place) -------------------------------------


class BatchItemsField(serializers.Field):
    """A JSON list of 1 to BATCH_MAX items, each left as it came: each is checked in its own
    place, so that one bad item is answered there and the others still run."""

    default_error_messages = {
        **STRICT_MESSAGES,
        "invalid": "must be a list.",
        "size": f"takes 1 to {BATCH_MAX} items; {{count}} were sent.",
    }

    def to_internal_value(self, data):
        if not isinstance(data, list):
            self.fail("invalid")
        if not 1 <= len(data) <= BATCH_MAX:
            self.fail("size", count=len(data))
        return data


@extend_schema_field(
    {
        "type": "array",
        "minItems": 1,
        "maxItems": BATCH_MAX,
        "items": {"$ref": "#/components/schemas/OrderPlaceInputRequest"},
    }
)
class BatchOrdersField(BatchItemsField):
    pass


@extend_schema_field(
    {"type": "array", "minItems": 1, "maxItems": BATCH_MAX, "items": {"type": "integer", "minimum": 1}}
)
class BatchIdsField(BatchItemsField):
    pass


class OrderBatchPlaceInput(StrictSerializer):
    """1 to 20 new orders, all on one market."""

    orders = BatchOrdersField(
        help_text=f"1 to {BATCH_MAX} orders, each the body of POST /api/orders, all on one market; "
        "each is checked and answered in its place."
    )


class OrderBatchCancelInput(StrictSerializer):
    """1 to 20 of my orders to cancel."""

    ids = BatchIdsField(help_text=f"1 to {BATCH_MAX} order ids; each is answered in its place.")


class BatchResultSerializer(serializers.Serializer):
    """One order of a batch, answered in its place: as its own request would have been."""

    status = serializers.IntegerField(
        help_text="201 placed; 200 a repeated client_order_id (the original) or a cancel; else the error's "
        "status (400, 403, 404, 409)."
    )
    order = OrderSerializer(required=False, help_text="On success.")
    fills = FillSerializer(many=True, required=False, help_text="Placing: what the order traded at once.")
    error = ErrorBodySerializer(required=False, help_text="On refusal: the error shape's error.")


class OrderBatchSerializer(serializers.Serializer):
    results = BatchResultSerializer(many=True, help_text="One per order or id, in the request's order.")


def batch_answer(outcome) -> dict:
    """One order's outcome in a batch, as its own request would have answered it."""
    if isinstance(outcome, OrderResult):
        return {"status": 201 if outcome.created else 200, **result_payload(outcome)}
    if isinstance(outcome, ServiceError | serializers.ValidationError):
        status, error = input_error(outcome)
        return {"status": status, "error": error}
    if isinstance(outcome, Exception):
        if unavailable.is_unavailable(outcome):
            return {"status": 503, **unavailable.error_body()}
        log.error("Unexpected error in a batch's order", exc_info=outcome)
        error = error_body(ErrorCode.INTERNAL_ERROR, "Something went wrong on our side; this order was not changed.")
        return {"status": 500, **error}
    return {"status": 200, "order": order_payload(outcome)}  # a cancelled order


def batch_place(user, orders: list, *, source, socket_id=None, order_body=None) -> list[dict]:
    """Place a batch (`orders_place_batch`), each order checked as POST /api/orders checks
    it and answered in its place (`batch_answer`). `order_body` turns a door's spelling of
    an order into the REST body (/ws names its type `order_type`)."""
    symbols = {order.get("symbol") for order in orders if isinstance(order, Mapping)}
    if len({symbol for symbol in symbols if isinstance(symbol, str)}) > 1:
        raise InvalidInput("A batch's orders are all on one market: send one batch per market.", field="orders")
    answers: list = [None] * len(orders)
    valid, places = [], []
    for at, order in enumerate(orders):
        try:
            if not isinstance(order, Mapping):
                raise InvalidInput("Each order of a batch is a JSON object.")
            serializer = OrderPlaceInput(data=order_body(dict(order)) if order_body else order)
            serializer.is_valid(raise_exception=True)
        except (ServiceError, serializers.ValidationError) as exc:
            answers[at] = batch_answer(exc)
        else:
            valid.append(order_place_arguments(serializer.validated_data))
            places.append(at)
    if valid:
        outcomes = orders_place_batch(user=user, orders=valid, source=source, socket_id=socket_id)
        for at, outcome in zip(places, outcomes, strict=True):
            answers[at] = batch_answer(outcome)
    return answers


def batch_cancel(user, ids: list) -> list[dict]:
    """Cancel a batch (`orders_cancel_batch`), each id answered in its place."""
    return [batch_answer(outcome) for outcome in orders_cancel_batch(user=user, order_ids=ids)]


@extend_schema_field(
    {
        "type": "integer",
        "anyOf": [
            {"enum": [0]},
            {"minimum": CANCEL_AFTER_MIN_SECONDS, "maximum": CANCEL_AFTER_MAX_SECONDS},
        ],
        "example": 60,
    }
)
class CancelAfterSecondsField(serializers.Field):
    """A whole number of seconds, as a JSON number (10, or 10.0); the service judges its range."""

    default_error_messages = {**STRICT_MESSAGES, "invalid": "must be a whole number."}

    def to_internal_value(self, data):
        if isinstance(data, bool) or not isinstance(data, int | Decimal):
            self.fail("invalid")
        if isinstance(data, Decimal):
            if not data.is_finite() or data != data.to_integral_value():
                self.fail("invalid")
            data = int(data)
        return data


class CancelAfterInput(StrictSerializer):
    """The dead man's switch: arm it for `seconds`, or disarm it with 0."""

    seconds = CancelAfterSecondsField(
        help_text=f"0 disarms the switch; {CANCEL_AFTER_MIN_SECONDS} to {CANCEL_AFTER_MAX_SECONDS} arms it for that "
        "many seconds from now, replacing any earlier time."
    )


class CancelAfterSerializer(serializers.Serializer):
    armed_until = serializers.DateTimeField(
        allow_null=True,
        help_text="When all your open orders and pending stops will be cancelled unless you arm the switch "
        "again before then; null when disarmed.",
    )


def armed_until_payload(armed_until) -> dict:
    """The dead man's switch's answer, over REST and /ws alike."""
    return {"armed_until": armed_until.isoformat() if armed_until is not None else None}


class OrderFilter(QuerySerializer):
    symbol = SymbolField(required=False)
    status = StrictChoiceField(choices=OrderStatus.choices, required=False)


class SymbolFilter(QuerySerializer):
    symbol = SymbolField(required=False)


SYMBOL_PARAMETER = param("symbol", "Only this market, e.g. QTX-USD.", schema=SYMBOL_SCHEMA, example="QTX-USD")
STATUS_PARAMETER = param("status", "Only orders in this status.", enum=OrderStatus.values)


def own_order_id(order_id: int) -> int:
    if order_id > MAX_ID:
        raise NotFound("No such order.")
    return order_id


# --- Views -------------------------------------------------------------------------------------


class TradingView(APIView):
    # Placing, amending and cancelling also count against the "orders" rate.
    order_commands = True


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


class OrderBatchView(TradingView):
    # The request body of DELETE is in the schema (quantumtrades.core.api_schema).
    delete_body = True

    @staticmethod
    def orders_in(request) -> int:
        """How many orders the request places or cancels: each counts against the "orders"
        rate, as N requests of one order would."""
        data = request.data
        items = data.get("orders" if request.method == "POST" else "ids") if isinstance(data, Mapping) else None
        return len(items) if isinstance(items, list) and 1 <= len(items) <= BATCH_MAX else 1

    @extend_schema(
        operation_id="orders_batch_place",
        tags=["orders"],
        summary="Place 1 to 20 orders on one market, each answered in its place",
        description="One transaction, one take of the book lock; the orders run in the order given, each as "
        "POST /api/orders would run it (a later one may trade with an earlier one), and one order's refusal "
        "undoes only that order. 200 whenever the batch was run, whatever became of each order: `results` holds "
        "each order's status and body (201 the order and its fills, 200 a repeated client_order_id's original, "
        "or its error). 400 for the whole batch: not 1 to 20 orders, orders on two markets, an unknown market. "
        "A batch of N orders counts N against the order rate.",
        request=OrderBatchPlaceInput,
        examples=[
            OpenApiExample(
                "A ladder of bids",
                request_only=True,
                value={
                    "orders": [
                        {"symbol": "QTX-USD", "side": "buy", "price": "10.00", "quantity": "1.00"},
                        {"symbol": "QTX-USD", "side": "buy", "price": "9.90", "quantity": "2.00"},
                    ]
                },
            )
        ],
        responses={200: OrderBatchSerializer, **error_responses(400, 401, 403, 413, 415, 429)},
    )
    def post(self, request):
        data = OrderBatchPlaceInput.parse_body(request)
        return Response({"results": batch_place(request.user, data["orders"], source=OrderSource.REST)})

    @extend_schema(
        operation_id="orders_batch_cancel",
        tags=["orders"],
        summary="Cancel 1 to 20 of my orders, each answered in its place",
        description="200 with `results`: each id's status and body (200 the cancelled order, or 404 / 409 in the "
        "error shape). The orders of one market are cancelled in one transaction. Each counts against the order "
        "rate.",
        request=OrderBatchCancelInput,
        examples=[OpenApiExample("Two orders", request_only=True, value={"ids": [101, 102]})],
        responses={200: OrderBatchSerializer, **error_responses(400, 401, 403, 413, 415, 429)},
    )
    def delete(self, request):
        data = OrderBatchCancelInput.parse_body(request)
        return Response({"results": batch_cancel(request.user, data["ids"])})


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


class CancelAfterView(TradingView):
    @extend_schema(
        operation_id="orders_cancel_after",
        tags=["orders"],
        summary="The dead man's switch: cancel all my orders unless I arm it again within N seconds",
        description="Unless armed again before `armed_until`, all your open orders and pending stops, on every "
        "market, are cancelled within a second of that time. Send it again before then (a heartbeat) to push "
        "the time back; 0 disarms it.",
        request=CancelAfterInput,
        examples=[
            OpenApiExample("Arm for a minute", request_only=True, value={"seconds": 60}),
            OpenApiExample("Disarm", request_only=True, value={"seconds": 0}),
        ],
        responses={200: CancelAfterSerializer, **error_responses(400, 401, 403, 413, 415, 429)},
    )
    def post(self, request):
        data = CancelAfterInput.parse_body(request)
        return Response(armed_until_payload(dead_mans_switch_arm(user=request.user, seconds=data["seconds"])))


class FillsView(generics.ListAPIView):
    serializer_class = FillSerializer
    pagination_class = ApiPagination

    def get_queryset(self):
        query = SymbolFilter.parse(self.request)
        market = market_by_symbol(query["symbol"], field="symbol") if "symbol" in query else None
        return fills_for_user(self.request.user, market)

    @extend_schema(
        operation_id="trades_history",
        tags=["orders"],
        summary="My fills, newest first: price, quantity, fee, role, side, market, time",
        parameters=[SYMBOL_PARAMETER],
        responses={200: FillSerializer(many=True), **error_responses(400, 401, 404, 429)},
    )
    def get(self, request, *args, **kwargs):
        return super().get(request, *args, **kwargs)
