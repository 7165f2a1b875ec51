"""REST API for operators: the kill switch (docs/API.md, "Kill switch").

Staff only, logged in (JWT): never with an API key, which reads and trades but does not
act on other people's accounts. A thin door onto `orders.controls`.
"""

from drf_spectacular.utils import OpenApiExample, extend_schema
from rest_framework import serializers
from rest_framework.permissions import IsAdminUser
from rest_framework.response import Response
from rest_framework.views import APIView

from accounts.authentication import ApiKeyScope
from accounts.selectors import user_named
from quantumtrades.core.api import StrictBooleanField, StrictCharField, StrictSerializer, error_responses
from quantumtrades.core.errors import InvalidInput, NotFound

from .controls import REASON_MAX_LENGTH, trading_disable, trading_enable


class TradingSwitchInput(StrictSerializer):
    enabled = StrictBooleanField(help_text="false: disable trading and cancel all the user's orders; true: enable.")
    reason = StrictCharField(
        max_length=REASON_MAX_LENGTH,
        required=False,
        default="",
        allow_blank=True,
        help_text="Why: required when disabling; kept in the audit trail.",
    )


class TradingSwitchSerializer(serializers.Serializer):
    username = serializers.CharField()
    trading_enabled = serializers.BooleanField()
    reason = serializers.CharField(allow_blank=True, help_text="Why trading is disabled; empty when enabled.")
    cancelled = serializers.IntegerField(help_text="How many orders (and pending stops) were cancelled.")


class UserTradingView(APIView):
    # Staff only, and never with an API key (ApiKeyScope: not an order command).
    permission_classes = [IsAdminUser, ApiKeyScope]

    @extend_schema(
        operation_id="admin_user_trading",
        tags=["admin"],
        summary="Staff only: the kill switch. Disable a user's trading (cancels all their orders) or enable it",
        request=TradingSwitchInput,
        examples=[
            OpenApiExample(
                "Disable", request_only=True, value={"enabled": False, "reason": "runaway algorithm, desk called"}
            ),
            OpenApiExample("Enable", request_only=True, value={"enabled": True, "reason": "fixed"}),
        ],
        responses={200: TradingSwitchSerializer, **error_responses(400, 401, 403, 404, 413, 415, 429)},
    )
    def post(self, request, username):
        data = TradingSwitchInput.parse_body(request)
        user = user_named(username)
        if user is None:
            raise NotFound(f"There is no user {username[:150]!r}.")
        if data["enabled"]:
            result = trading_enable(operator=request.user, user=user, reason=data["reason"])
        else:
            if not data["reason"].strip():
                raise InvalidInput("Give the reason trading is disabled.", field="reason")
            result = trading_disable(operator=request.user, user=user, reason=data["reason"])
        return Response(
            TradingSwitchSerializer(
                {
                    "username": user.username,
                    "trading_enabled": user.trading_enabled,
                    "reason": user.trading_disabled_reason,
                    "cancelled": len(result.cancelled),
                }
            ).data
        )
