"""REST API for public market data: markets and their rules, the tape, candles, the book.

Public: no token needed (one sent along still identifies the caller for throttling).
Every number is a decimal string, as on the WebSocket: one name and one format per
concept (`book_update` levels, `trade` messages).
"""

from drf_spectacular.utils import extend_schema, extend_schema_field
from rest_framework import serializers
from rest_framework.permissions import AllowAny
from rest_framework.response import Response
from rest_framework.views import APIView

from marketdata.models import SYMBOL_FORMAT, SYMBOL_MAX_LENGTH, Market, Side
from marketdata.selectors import (
    DEFAULT_DEPTH,
    INTERVALS,
    MAX_CANDLES,
    MAX_DEPTH,
    book_snapshot,
    candles,
    market_named,
    markets_all,
    trades_recent,
)
from quantumtrades.core.api import (
    QueryIntegerField,
    QuerySerializer,
    StrictCharField,
    StrictChoiceField,
    error_responses,
    symbol_path_parameter,
)
from quantumtrades.core.api import query_parameter as param
from quantumtrades.core.errors import InvalidInput, NotFound

from .payloads import candle_payload, levels_payload, market_payload, tape_payload

# A market's symbol as the schema gives it: the API answers any other text as no market.
SYMBOL_SCHEMA = {"type": "string", "pattern": f"^{SYMBOL_FORMAT}$", "maxLength": SYMBOL_MAX_LENGTH}


@extend_schema_field({**SYMBOL_SCHEMA, "example": "QTX-USD"})
class SymbolField(StrictCharField):
    """A market's symbol in a body or a query."""

    def __init__(self, **kwargs):
        super().__init__(max_length=SYMBOL_MAX_LENGTH, **kwargs)


# Recent trades that come with a book snapshot.
SNAPSHOT_TRADES = 50
MAX_TRADES = 500


def _decimal(**kwargs):
    return serializers.DecimalField(max_digits=28, decimal_places=8, **kwargs)


def _rate(**kwargs):
    return serializers.DecimalField(max_digits=7, decimal_places=6, **kwargs)


# --- Serializers (responses) -------------------------------------------------------------


class TickerSerializer(serializers.Serializer):
    last_price = _decimal(allow_null=True)
    open_24h = _decimal(allow_null=True)
    high_24h = _decimal(allow_null=True)
    low_24h = _decimal(allow_null=True)
    change_24h = _decimal(allow_null=True)
    change_24h_percent = serializers.DecimalField(max_digits=28, decimal_places=2, allow_null=True)
    volume_24h = _decimal(help_text="In the base asset.")
    quote_volume_24h = _decimal(help_text="In the quote asset.")
    trades_24h = serializers.IntegerField()


class MarketSerializer(serializers.Serializer):
    symbol = serializers.CharField()
    base = serializers.CharField()
    quote = serializers.CharField()
    status = serializers.ChoiceField(choices=Market.Status.choices)
    tick_size = _decimal(help_text="Prices are whole multiples of this.")
    lot_size = _decimal(help_text="Quantities are whole multiples of this.")
    min_notional = _decimal(help_text="Smallest price x quantity, in the quote asset.")
    maker_fee = _rate(help_text="Fee rate of the resting side, e.g. 0.001000.")
    taker_fee = _rate(help_text="Fee rate of the incoming side.")
    ticker = TickerSerializer()


class TradeSerializer(serializers.Serializer):
    """A trade on the public tape (the WebSocket's `trade` message, without its type)."""

    id = serializers.IntegerField()
    symbol = serializers.CharField()
    price = _decimal()
    quantity = _decimal()
    taker_side = serializers.ChoiceField(choices=Side.choices)
    time = serializers.DateTimeField()


class CandleSerializer(serializers.Serializer):
    start = serializers.DateTimeField()
    open = _decimal()
    high = _decimal()
    low = _decimal()
    close = _decimal()
    volume = _decimal(help_text="In the base asset.")
    trades = serializers.IntegerField()


LEVEL_SCHEMA = {
    "type": "array",
    "items": {"type": "array", "items": {"type": "string"}, "minItems": 2, "maxItems": 2},
    "description": "[price, quantity] pairs, best first.",
}


@extend_schema_field(LEVEL_SCHEMA)
class LevelsField(serializers.JSONField):
    """Book levels: [price, quantity] pairs of decimal strings."""


class BookSnapshotSerializer(serializers.Serializer):
    symbol = serializers.CharField()
    seq = serializers.IntegerField(help_text="The book's sequence: WebSocket book_update messages follow it.")
    bids = LevelsField(help_text="[price, quantity] pairs, highest price first.")
    asks = LevelsField(help_text="[price, quantity] pairs, lowest price first.")
    trades = TradeSerializer(many=True, help_text=f"The {SNAPSHOT_TRADES} most recent trades, newest first.")


# --- Query parameters ------------------------------------------------------------------------


class TradesQuery(QuerySerializer):
    limit = QueryIntegerField(required=False, min_value=1, max_value=MAX_TRADES)
    before = QueryIntegerField(required=False, min_value=1, max_value=2**63 - 1)


class CandlesQuery(QuerySerializer):
    interval = StrictChoiceField(choices=list(INTERVALS), required=False)
    limit = QueryIntegerField(required=False, min_value=1, max_value=MAX_CANDLES)


class SnapshotQuery(QuerySerializer):
    symbol = SymbolField()
    depth = QueryIntegerField(required=False, min_value=1, max_value=MAX_DEPTH)


def market_by_symbol(symbol: str, *, field=None) -> Market:
    """The market called `symbol`: NotFound for a path, InvalidInput when `field` names a parameter."""
    market = market_named(symbol)
    if market is None:
        message = f"There is no market {symbol[:SYMBOL_MAX_LENGTH]!r}."
        raise InvalidInput(message, field=field) if field else NotFound(message)
    return market


# --- Views -------------------------------------------------------------------------------------


class PublicView(APIView):
    permission_classes = [AllowAny]


class MarketsView(PublicView):
    @extend_schema(
        operation_id="markets_list",
        tags=["market data"],
        summary="All markets: trading rules, status and 24-hour ticker",
        responses={200: MarketSerializer(many=True), **error_responses(401, 429)},
    )
    def get(self, request):
        return Response([market_payload(market) for market in markets_all()])


class MarketView(PublicView):
    @extend_schema(
        operation_id="markets_retrieve",
        tags=["market data"],
        summary="One market: trading rules, status and 24-hour ticker",
        parameters=[symbol_path_parameter(SYMBOL_SCHEMA)],
        responses={200: MarketSerializer, **error_responses(401, 404, 429)},
    )
    def get(self, request, symbol):
        return Response(market_payload(market_by_symbol(symbol)))


class MarketTradesView(PublicView):
    @extend_schema(
        operation_id="markets_trades",
        tags=["market data"],
        summary="The public tape: recent trades, newest first",
        parameters=[
            symbol_path_parameter(SYMBOL_SCHEMA),
            param("limit", "How many trades (default 50).", schema={"type": "integer", "minimum": 1, "maximum": 500}),
            param(
                "before",
                "Only trades older than this trade id: page down the tape with the last id of the previous page.",
                schema={"type": "integer", "minimum": 1, "maximum": 2**63 - 1},
            ),
        ],
        responses={200: TradeSerializer(many=True), **error_responses(400, 401, 404, 429)},
    )
    def get(self, request, symbol):
        market = market_by_symbol(symbol)
        query = TradesQuery.parse(request)
        trades = trades_recent(market=market, limit=query.get("limit", 50), before=query.get("before"))
        return Response(tape_payload(trades, market.symbol))


class MarketCandlesView(PublicView):
    @extend_schema(
        operation_id="markets_candles",
        tags=["market data"],
        summary="OHLCV candles, oldest first (buckets without trades are left out)",
        parameters=[
            symbol_path_parameter(SYMBOL_SCHEMA),
            param("interval", "Bucket length (default 1m).", enum=list(INTERVALS)),
            param(
                "limit",
                "How many buckets back (default 120).",
                schema={"type": "integer", "minimum": 1, "maximum": MAX_CANDLES},
            ),
        ],
        responses={200: CandleSerializer(many=True), **error_responses(400, 401, 404, 429)},
    )
    def get(self, request, symbol):
        market = market_by_symbol(symbol)
        query = CandlesQuery.parse(request)
        rows = candles(market=market, interval=query.get("interval", "1m"), limit=query.get("limit", 120))
        return Response([candle_payload(candle) for candle in rows])


class BookSnapshotView(PublicView):
    @extend_schema(
        operation_id="book_snapshot",
        tags=["market data"],
        summary="The order book's top levels, its sequence and the recent trades",
        parameters=[
            param("symbol", "The market, e.g. QTX-USD.", schema=SYMBOL_SCHEMA, required=True, example="QTX-USD"),
            param(
                "depth",
                f"Levels per side (default {DEFAULT_DEPTH}).",
                schema={"type": "integer", "minimum": 1, "maximum": MAX_DEPTH},
            ),
        ],
        responses={200: BookSnapshotSerializer, **error_responses(400, 401, 429)},
    )
    def get(self, request):
        query = SnapshotQuery.parse(request)
        market = market_by_symbol(query["symbol"], field="symbol")
        snapshot = book_snapshot(market=market, depth=query.get("depth", DEFAULT_DEPTH))
        trades = trades_recent(market=market, limit=SNAPSHOT_TRADES)
        return Response(
            {
                "symbol": snapshot.symbol,
                "seq": snapshot.seq,
                "bids": levels_payload(snapshot.bids),
                "asks": levels_payload(snapshot.asks),
                "trades": tape_payload(trades, market.symbol),
            }
        )
