"""The dead man's switch (/api/orders/cancel-after): arm it for N seconds, or disarm it;
unless armed again in time, all my open orders and pending stops are cancelled
(`orders.protection`).

Apart from the orders because it places and cancels nothing when called: it sets a
time. /ws arms it with the same input and answer (`CancelAfterInput`,
`armed_until_payload`).
"""

from decimal import Decimal

from drf_spectacular.utils import OpenApiExample, extend_schema, extend_schema_field
from rest_framework import serializers
from rest_framework.response import Response

from orders.protection import CANCEL_AFTER_MAX_SECONDS, CANCEL_AFTER_MIN_SECONDS, dead_mans_switch_arm
from quantumtrades.core.api import STRICT_MESSAGES, StrictSerializer, error_responses

from .base import TradingView


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
