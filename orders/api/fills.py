"""My fills (/api/trades/history), and a fill's shape as its order's owner sees it
(`FillSerializer`), which the answers of orders, lists and batches carry too.

Apart from the orders because it reads the fills, a table and a resource of their own.
"""

from drf_spectacular.utils import extend_schema
from rest_framework import generics, serializers

from marketdata.api import market_by_symbol
from marketdata.models import Side
from orders.models import Fill
from orders.payloads import fill_payload
from orders.selectors import fills_for_user
from quantumtrades.core.api import ApiPagination, error_responses

from .base import SYMBOL_PARAMETER, SymbolFilter, _decimal


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
