"""Public market data: markets with their rules and ticker, the tape, candles, the book."""

from decimal import Decimal

import pytest

from orders.services import order_place
from tests.api_support import *  # noqa: F403
from tests.api_support import assert_error, client_for

pytestmark = pytest.mark.django_db


@pytest.fixture
def traded(alice, bob, market):
    """bob rests two sells, alice takes one of them: one trade, a book with one ask and one bid."""
    order_place(user=bob, market=market, side="sell", price=Decimal("10.00"), quantity=Decimal("1.00"))
    order_place(user=bob, market=market, side="sell", price=Decimal("11.00"), quantity=Decimal("2.00"))
    order_place(user=alice, market=market, side="buy", price=Decimal("10.00"), quantity=Decimal("1.00"))
    order_place(user=alice, market=market, side="buy", price=Decimal("9.50"), quantity=Decimal("3.00"))
    return market


def test_markets_list_rules_status_and_ticker_without_a_token(anon, traded):
    response = anon.get("/api/markets")

    assert response.status_code == 200
    [market] = response.json()
    assert {key: market[key] for key in market if key != "ticker"} == {
        "symbol": "QTX-USD",
        "base": "QTX",
        "quote": "USD",
        "status": "trading",
        "tick_size": "0.01000000",
        "lot_size": "0.01000000",
        "min_notional": "1.00000000",
        "maker_fee": "0.001000",
        "taker_fee": "0.002000",
        "price_band": None,
        "max_order_quantity": None,
        "max_order_notional": None,
        "circuit_breaker": None,
        "circuit_window_seconds": 300,
        "auction_seconds": 30,
        "auction_ends_at": None,
        "indicative_price": None,
        "indicative_volume": None,
    }
    assert market["ticker"]["last_price"] == "10.00000000"
    assert market["ticker"]["volume_24h"] == "1.00000000"
    assert market["ticker"]["trades_24h"] == 1


def test_one_market_by_symbol(anon, traded):
    response = anon.get("/api/markets/QTX-USD")

    assert response.status_code == 200
    assert response.json()["symbol"] == "QTX-USD"


@pytest.mark.parametrize("symbol", ["NOPE-USD", "X" * 100, "QTX%00USD"])
def test_an_unknown_market_is_404(anon, market, symbol):
    assert_error(anon.get(f"/api/markets/{symbol}"), 404, code="NOT_FOUND")


def test_the_tape_lists_recent_trades_newest_first(anon, traded):
    response = anon.get("/api/markets/QTX-USD/trades", {"limit": "10"})

    assert response.status_code == 200
    [trade] = response.json()
    assert set(trade) == {"id", "symbol", "price", "quantity", "taker_side", "time"}
    assert (trade["price"], trade["quantity"], trade["taker_side"]) == ("10.00000000", "1.00000000", "buy")


@pytest.mark.parametrize("limit", ["0", "501", "ten", "-1"])
def test_a_bad_tape_limit_is_400(anon, market, limit):
    assert_error(anon.get("/api/markets/QTX-USD/trades", {"limit": limit}), 400, field="limit")


def test_candles_are_ohlcv(anon, traded):
    response = anon.get("/api/markets/QTX-USD/candles", {"interval": "1m"})

    assert response.status_code == 200
    [candle] = response.json()
    assert candle["open"] == candle["close"] == "10.00000000"
    assert candle["volume"] == "1.00000000"
    assert candle["trades"] == 1


def test_an_unknown_candle_interval_is_400(anon, market):
    assert_error(anon.get("/api/markets/QTX-USD/candles", {"interval": "2m"}), 400, field="interval")


def test_candles_of_an_unknown_market_are_404(anon, market):
    assert_error(anon.get("/api/markets/NOPE/candles"), 404)


# The snapshot reads in its own REPEATABLE READ transaction, which PostgreSQL allows only
# outside one: these run with the database in autocommit, as the server does.
@pytest.mark.django_db(transaction=True)
def test_the_book_snapshot_has_levels_seq_and_recent_trades(anon, traded):
    response = anon.get("/api/book/snapshot", {"symbol": "QTX-USD", "depth": "5"})

    assert response.status_code == 200
    body = response.json()
    assert body["symbol"] == "QTX-USD"
    assert body["seq"] == traded.__class__.objects.get(pk=traded.pk).book_seq
    assert body["bids"] == [["9.50000000", "3.00000000"]]
    assert body["asks"] == [["11.00000000", "2.00000000"]]
    assert [trade["price"] for trade in body["trades"]] == ["10.00000000"]


@pytest.mark.django_db(transaction=True)
def test_the_book_snapshot_honours_depth(anon, alice, market):
    for price in ("9.00", "9.10", "9.20"):
        order_place(user=alice, market=market, side="buy", price=Decimal(price), quantity=Decimal("1.00"))

    body = anon.get("/api/book/snapshot", {"symbol": "QTX-USD", "depth": "2"}).json()

    assert [price for price, _ in body["bids"]] == ["9.20000000", "9.10000000"]


@pytest.mark.parametrize(
    ("params", "field"),
    [
        ({}, "symbol"),
        ({"symbol": "NOPE-USD"}, "symbol"),
        ({"symbol": "QTX-USD", "depth": "0"}, "depth"),
        ({"symbol": "QTX-USD", "depth": "501"}, "depth"),
        ({"symbol": "QTX-USD", "depth": "1e2"}, "depth"),
    ],
    ids=["no symbol", "unknown symbol", "depth zero", "depth too deep", "depth with exponent"],
)
def test_a_bad_snapshot_query_is_400(anon, market, params, field):
    assert_error(anon.get("/api/book/snapshot", params), 400, field=field)


def test_market_data_is_readable_with_a_token_too(alice, traded):
    assert client_for(alice).get("/api/markets").status_code == 200


def test_public_data_is_throttled_per_address(anon, market, settings):
    settings.REST_FRAMEWORK = {
        **settings.REST_FRAMEWORK,
        "DEFAULT_THROTTLE_RATES": {**settings.REST_FRAMEWORK["DEFAULT_THROTTLE_RATES"], "anon": "3/minute"},
    }

    statuses = [anon.get("/api/markets").status_code for _ in range(4)]

    assert statuses == [200, 200, 200, 429]
    assert_error(anon.get("/api/markets"), 429, code="THROTTLED")


def test_the_tape_pages_back_by_trade_id(anon, alice, bob, market):
    for _ in range(5):
        order_place(user=bob, market=market, side="sell", price=Decimal("10.00"), quantity=Decimal("1.00"))
        order_place(user=alice, market=market, side="buy", price=Decimal("10.00"), quantity=Decimal("1.00"))

    first = anon.get("/api/markets/QTX-USD/trades", {"limit": "2"}).json()
    older = anon.get("/api/markets/QTX-USD/trades", {"limit": "2", "before": str(first[-1]["id"])}).json()
    everything = [trade["id"] for trade in anon.get("/api/markets/QTX-USD/trades").json()]

    assert [trade["id"] for trade in first + older] == everything[:4]


@pytest.mark.parametrize("before", ["0", "x", "-5", str(2**63), "9" * 20])
def test_a_bad_tape_cursor_is_400(anon, market, before):
    assert_error(anon.get("/api/markets/QTX-USD/trades", {"before": before}), 400, field="before")


def test_the_tape_pages_back_from_the_largest_id_the_schema_allows(anon, market):
    # The schema's maximum (2**63 - 1) has 19 digits; the parameter once took 18 at most.
    response = anon.get("/api/markets/QTX-USD/trades", {"before": str(2**63 - 1)})

    assert response.status_code == 200, response.content
    assert response.json() == []
