"""Batches: place or cancel 1 to BATCH_MAX orders in one request (/api/orders/batch), each
checked as its own request would be and answered in its place (`batch_place`,
`batch_cancel`, which /ws shares).

Apart from single orders because a batch's body is checked item by item, not as one
body, so that one bad order is answered in its place and the others still run, and its
answer is one status and body per order (`batch_answer`).
"""

import logging
from collections.abc import Mapping

from drf_spectacular.utils import OpenApiExample, extend_schema, extend_schema_field
from rest_framework import serializers
from rest_framework.response import Response

from orders.models import OrderSource
from orders.payloads import order_payload, result_payload
from orders.services import BATCH_MAX, OrderResult, orders_cancel_batch, orders_place_batch
from quantumtrades.core import unavailable
from quantumtrades.core.api import STRICT_MESSAGES, ErrorBodySerializer, StrictSerializer, error_responses, input_error
from quantumtrades.core.errors import ErrorCode, InvalidInput, ServiceError, error_body

from .base import TradingView
from .fills import FillSerializer
from .orders import OrderPlaceInput, OrderSerializer, order_place_arguments

# The package's name: the API's log lines keep one logger, whichever module writes them.
log = logging.getLogger("orders.api")


# --- Input, and each order's answer in its place -----------------------------------------------


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


# --- Views -------------------------------------------------------------------------------------


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
