"""What every resource of the orders API shares: the responses' decimal field, the base of
the views that trade (each counts against the "orders" rate) and the ?symbol= filter.

Apart so that each resource's module takes them without importing another resource.
"""

from rest_framework import serializers
from rest_framework.views import APIView

from marketdata.api import SYMBOL_SCHEMA, SymbolField
from quantumtrades.core.api import QuerySerializer
from quantumtrades.core.api import query_parameter as param


def _decimal(**kwargs):
    return serializers.DecimalField(max_digits=28, decimal_places=8, **kwargs)


class SymbolFilter(QuerySerializer):
    symbol = SymbolField(required=False)


SYMBOL_PARAMETER = param("symbol", "Only this market, e.g. QTX-USD.", schema=SYMBOL_SCHEMA, example="QTX-USD")


class TradingView(APIView):
    # Placing, amending and cancelling also count against the "orders" rate.
    order_commands = True
