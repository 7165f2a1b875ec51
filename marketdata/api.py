"""REST API for public market data: markets and their rules, the tape, candles, the book.

Public: no token needed (one sent along still identifies the caller for throttling).
Every number is a decimal string, as on the WebSocket: one name and one format per
concept (`book_update` levels, `trade` messages).
"""

from decimal import Decimal

from django.db import transaction
from drf_spectacular.utils import OpenApiExample, extend_schema, extend_schema_field
from rest_framework import serializers
from rest_framework.permissions import AllowAny, IsAdminUser
from rest_framework.response import Response
from rest_framework.views import APIView

from accounts.authentication import ApiKeyScope
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
from marketdata.services import market_rules_change, market_set_status
from quantumtrades.core.api import (
    STRICT_MESSAGES,
    DecimalInputField,
    QueryIntegerField,
    QuerySerializer,
    StrictCharField,
    StrictChoiceField,
    StrictSerializer,
    error_responses,
    symbol_path_parameter,
)
from quantumtrades.core.api import query_parameter as param
from quantumtrades.core.errors import InvalidInput, NotFound
from quantumtrades.core.replicas import PRIMARY, public_reads

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
    price_band = _rate(
        allow_null=True,
        help_text="Limit prices further than this fraction from the reference are refused; null: no band.",
    )
    max_order_quantity = _decimal(allow_null=True, help_text="Largest quantity of one order; null: no limit.")
    max_order_notional = _decimal(allow_null=True, help_text="Largest price x quantity of one order; null: no limit.")
    circuit_breaker = _rate(
        allow_null=True,
        help_text="A trade further than this fraction from the window's reference opens a call auction; null: none.",
    )
    circuit_window_seconds = serializers.IntegerField(help_text="The circuit breaker's window.")
    auction_seconds = serializers.IntegerField(help_text="How long a call auction collects orders.")
    auction_ends_at = serializers.DateTimeField(
        allow_null=True, help_text="When the current auction uncrosses; null outside one."
    )
    indicative_price = _decimal(
        allow_null=True,
        help_text="The price the auction would uncross at now; null outside one or when nothing crosses.",
    )
    indicative_volume = _decimal(
        allow_null=True, help_text="The quantity (base asset) it would execute now; null outside an auction."
    )
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


# --- The operators' changes (PATCH /api/markets/{symbol}) ------------------------------------

RATE_TEXT = r"^0(\.[0-9]{1,6})?$"


@extend_schema_field(
    {
        "type": "string",
        "pattern": r"^[0-9]{1,20}(\.[0-9]{1,8})?$",
        "nullable": True,
        "example": "1000",
        "description": "A positive decimal written as a string, at most 8 decimal places; null: no limit.",
    }
)
class LimitInputField(DecimalInputField):
    """An amount a market rule is, positive, or null for none."""

    def __init__(self, **kwargs):
        super().__init__(allow_null=kwargs.pop("allow_null", True), **kwargs)


@extend_schema_field(
    {
        "type": "string",
        "pattern": r"^[0-9]{1,20}(\.[0-9]{1,8})?$",
        "example": "1",
        "description": "A decimal written as a string, zero or more, at most 8 decimal places.",
    }
)
class NonNegativeInputField(DecimalInputField):
    """A DecimalInputField that also takes zero (a minimum notional of none)."""

    def to_internal_value(self, data):
        try:
            return super().to_internal_value(data)
        except serializers.ValidationError as exc:
            if exc.get_codes() == ["not_positive"] and Decimal(str(data).strip()) == 0:
                return Decimal(0)
            raise


@extend_schema_field(
    {
        "type": "string",
        "pattern": RATE_TEXT,
        "example": "0.001",
        "description": "A fraction written as a string: 0 to 0.999999, at most 6 decimal places.",
    }
)
class RateInputField(NonNegativeInputField):
    """A rate (a fee, a band): from 0 (or above it, `positive`) to below 1, six decimal places."""

    default_error_messages = {
        **NonNegativeInputField.default_error_messages,
        "rate": "must be below 1, with at most 6 decimal places.",
        "not_positive": "must be above 0 (or null for none).",
    }

    def __init__(self, *, positive=False, **kwargs):
        self.positive = positive
        super().__init__(**kwargs)

    def to_internal_value(self, data):
        value = (
            super().to_internal_value(data) if not self.positive else DecimalInputField.to_internal_value(self, data)
        )
        if value >= 1 or value != round(value, 6):
            self.fail("rate")
        return value


@extend_schema_field(
    {
        "type": "string",
        "pattern": RATE_TEXT,
        "nullable": True,
        "example": "0.05",
        "description": "A fraction written as a string, above 0 and below 1, at most 6 decimal places; null: none.",
    }
)
class BandInputField(RateInputField):
    def __init__(self, **kwargs):
        super().__init__(positive=True, allow_null=True, **kwargs)


class SecondsInputField(serializers.IntegerField):
    """A whole number of seconds, as a JSON integer (not a string, a float or a boolean)."""

    default_error_messages = {
        **STRICT_MESSAGES,
        "invalid": "must be a whole number of seconds.",
        "max_value": "must be at most {max_value}.",
        "min_value": "must be at least {min_value}.",
    }

    def to_internal_value(self, data):
        if isinstance(data, bool) or not isinstance(data, int):
            self.fail("invalid")
        return super().to_internal_value(data)


class MarketChangeInput(StrictSerializer):
    tick_size = DecimalInputField(required=False, help_text="Prices are whole multiples of this.")
    lot_size = DecimalInputField(required=False, help_text="Quantities are whole multiples of this.")
    min_notional = NonNegativeInputField(required=False, help_text="Smallest price x quantity.")
    maker_fee = RateInputField(required=False, help_text="Only on a market without open orders or pending stops.")
    taker_fee = RateInputField(required=False, help_text="Only on a market without open orders or pending stops.")
    price_band = BandInputField(required=False)
    max_order_quantity = LimitInputField(required=False)
    max_order_notional = LimitInputField(required=False)
    circuit_breaker = BandInputField(required=False)
    circuit_window_seconds = SecondsInputField(required=False, min_value=1, max_value=2**31 - 1)
    auction_seconds = SecondsInputField(required=False, min_value=1, max_value=3600)
    status = StrictChoiceField(
        choices=[Market.Status.HALTED.value, Market.Status.TRADING.value],
        required=False,
        help_text="halted, or trading to resume through a call auction.",
    )
    reason = StrictCharField(required=False, max_length=500, allow_blank=True, help_text="Why, for the audit trail.")


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


def market_by_symbol(symbol: str, *, field=None, using: str = PRIMARY) -> Market:
    """The market called `symbol`: NotFound for a path, InvalidInput when `field` names a parameter."""
    market = market_named(symbol, using=using)
    if market is None:
        message = f"There is no market {symbol[:SYMBOL_MAX_LENGTH]!r}."
        raise InvalidInput(message, field=field) if field else NotFound(message)
    return market


# --- Views -------------------------------------------------------------------------------------


class PublicView(APIView):
    """Public market data. Its reads may lag a little: a healthy hot standby's, unless the
    caller just wrote (quantumtrades.core.replicas); `self.db` names the database."""

    permission_classes = [AllowAny]

    def initial(self, request, *args, **kwargs):
        super().initial(request, *args, **kwargs)  # authenticates: a writer's reads stay on the primary
        self.db = public_reads(request)


class MarketsView(PublicView):
    @extend_schema(
        operation_id="markets_list",
        tags=["market data"],
        summary="All markets: trading rules, status and 24-hour ticker",
        responses={200: MarketSerializer(many=True), **error_responses(401, 429)},
    )
    def get(self, request):
        return Response([market_payload(market, using=self.db) for market in markets_all(using=self.db)])


class MarketView(PublicView):
    def get_permissions(self):
        if self.request.method == "PATCH":
            # Operators only: a staff login, never an API key (docs/API.md, "Operators").
            return [IsAdminUser(), ApiKeyScope()]
        return super().get_permissions()

    @extend_schema(
        operation_id="markets_retrieve",
        tags=["market data"],
        summary="One market: trading rules, status and 24-hour ticker",
        parameters=[symbol_path_parameter(SYMBOL_SCHEMA)],
        responses={200: MarketSerializer, **error_responses(401, 404, 429)},
    )
    def get(self, request, symbol):
        return Response(market_payload(market_by_symbol(symbol, using=self.db), using=self.db))

    @extend_schema(
        operation_id="markets_update",
        tags=["operators"],
        summary="Staff only: change a market's rules, halt it, or resume it through a call auction",
        parameters=[symbol_path_parameter(SYMBOL_SCHEMA)],
        request=MarketChangeInput,
        examples=[
            OpenApiExample("Halt", request_only=True, value={"status": "halted", "reason": "news pending"}),
            OpenApiExample(
                "Tighter breaker", request_only=True, value={"circuit_breaker": "0.03", "auction_seconds": 60}
            ),
        ],
        responses={200: MarketSerializer, **error_responses(400, 401, 403, 404, 413, 415, 429)},
    )
    def patch(self, request, symbol):
        data = dict(MarketChangeInput.parse_body(request))
        market = market_by_symbol(symbol)
        status = data.pop("status", None)
        reason = data.pop("reason", "")
        with transaction.atomic():  # the rules and the status change together, or neither
            if data:
                market = market_rules_change(market=market, changes=data, operator=request.user, reason=reason)
            if status is not None:
                market = market_set_status(market=market, status=status, operator=request.user, reason=reason)
        return Response(market_payload(market_by_symbol(market.symbol)))


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
        market = market_by_symbol(symbol, using=self.db)
        query = TradesQuery.parse(request)
        trades = trades_recent(market=market, limit=query.get("limit", 50), before=query.get("before"), using=self.db)
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
        market = market_by_symbol(symbol, using=self.db)
        query = CandlesQuery.parse(request)
        rows = candles(
            market=market, interval=query.get("interval", "1m"), limit=query.get("limit", 120), using=self.db
        )
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
        market = market_by_symbol(query["symbol"], field="symbol", using=self.db)
        snapshot = book_snapshot(market=market, depth=query.get("depth", DEFAULT_DEPTH), using=self.db)
        trades = trades_recent(market=market, limit=SNAPSHOT_TRADES, using=self.db)
        return Response(
            {
                "symbol": snapshot.symbol,
                "seq": snapshot.seq,
                "bids": levels_payload(snapshot.bids),
                "asks": levels_payload(snapshot.asks),
                "trades": tape_payload(trades, market.symbol),
            }
        )
