"""/ws `ticker` and `candles` (docs/API.md, "Server messages"): the current state on subscribe, then a
message when trades change it; conflated, and built once per change for every subscriber."""

import pytest
from channels.db import database_sync_to_async

from marketdata.models import Candle
from marketdata.selectors import ticker
from marketdata.streams import market as market_stream
from quantumtrades.core import streams as transport
from tests.streams.stream_support import (  # noqa: F401  (fixtures)
    Socket,
    alice_fixture,
    bob_fixture,
    fast_streams_fixture,
    limit,
    market_fixture,
    of_type,
    run,
)

pytestmark = [pytest.mark.timeout(60)]

TICKER_FIELDS = {"type", "symbol", "last", "open_24h", "high_24h", "low_24h", "volume_24h", "time"}
CANDLE_FIELDS = {"type", "symbol", "interval", "open_time", "open", "high", "low", "close", "volume"}


async def trade(buyer, seller, price, quantity="1"):
    await limit(seller, "sell", price, quantity)
    await limit(buyer, "buy", price, quantity)


async def subscribe(ws, channels, **extra):
    await ws.send({"type": "subscribe", "channels": channels, "symbols": ["QTX-USD"], **extra})
    return await ws.until(lambda m: m["type"] in ("subscribed", "error"))


def test_ticker_starts_with_the_current_one_and_follows_trades(alice, bob, market):
    async def body():
        await trade(alice, bob, "10.00")
        async with Socket() as ws:
            assert (await subscribe(ws, ["ticker"]))["channels"] == ["ticker"]
            first = await ws.until(of_type("ticker"))
            assert set(first) == TICKER_FIELDS
            assert (first["symbol"], first["last"], first["volume_24h"]) == ("QTX-USD", "10.00000000", "1.00000000")
            await trade(alice, bob, "10.50", "2")
            update = await ws.until(lambda m: m["type"] == "ticker" and m["last"] == "10.50000000")
            expected = await database_sync_to_async(ticker)(market=market)
            assert update["high_24h"] == "10.50000000" and update["low_24h"] == "10.00000000"
            assert update["volume_24h"] == f"{expected.volume_24h:f}" == "3.00000000"
            assert update["open_24h"] == "10.00000000"

    run(body)


def test_candles_of_an_interval_follow_the_current_candle(alice, bob, market):
    async def body():
        async with Socket() as ws:
            reply = await subscribe(ws, ["candles"], interval="1m")
            assert reply["interval"] == "1m"
            await trade(alice, bob, "10.00")
            await trade(alice, bob, "10.20")
            await trade(alice, bob, "9.90")
            candle = await ws.until(lambda m: m["type"] == "candle" and m["low"] == "9.90000000")
            assert set(candle) == CANDLE_FIELDS
            assert candle["interval"] == "1m" and candle["open_time"].endswith(":00Z")
            row = await database_sync_to_async(Candle.objects.filter(interval="1m").latest)("start")
            assert (candle["open"], candle["high"], candle["close"], candle["volume"]) == (
                f"{row.open:f}",
                f"{row.high:f}",
                f"{row.close:f}",
                f"{row.volume:f}",
            )
            assert (candle["high"], candle["close"], candle["volume"]) == ("10.20000000", "9.90000000", "3.00000000")
            assert not any(m["type"] == "candle" and m["interval"] != "1m" for m in ws.seen)

    run(body)


def test_a_new_subscriber_gets_the_latest_candle_at_once(alice, bob, market):
    async def body():
        await trade(alice, bob, "10.00")
        async with Socket() as ws:
            await subscribe(ws, ["candles"], interval="1h")
            candle = await ws.until(of_type("candle"))
            assert (candle["interval"], candle["close"]) == ("1h", "10.00000000")

    run(body)


def test_updates_are_conflated_and_built_once_for_every_subscriber(alice, bob, market, settings, monkeypatch):
    settings.STREAMS = {**settings.STREAMS, "STATS_INTERVAL": 0.3}
    built = []
    real = market_stream.ticker_message
    monkeypatch.setattr(market_stream, "ticker_message", lambda *a: built.append(1) or real(*a))

    async def body():
        sockets = [Socket() for _ in range(3)]
        for ws in sockets:
            await ws.__aenter__()
        try:
            for ws in sockets:
                await subscribe(ws, ["ticker"])
            for n in range(10):
                await trade(alice, bob, f"10.{n:02d}")
            finals = [await ws.until(lambda m: m["type"] == "ticker" and m["last"] == "10.09000000") for ws in sockets]
            assert all(final == finals[0] for final in finals)  # the same frame
            tickers = [m for m in sockets[0].seen if m["type"] == "ticker"]
            # Ten trades, a refresh at most every 0.3 s: far fewer than ten messages.
            assert len(tickers) < 10
            # One message built per refresh, not one per subscriber.
            assert len(built) <= len(tickers) + 1
        finally:
            for ws in sockets:
                await ws.__aexit__(None, None, None)

    run(body)


def test_unsubscribe_stops_them_and_bad_subscriptions_are_refused(alice, bob, market):
    async def body():
        async with Socket() as ws:
            assert (await subscribe(ws, ["candles"]))["code"] == "BAD_REQUEST"
            assert (await subscribe(ws, ["candles"], interval="2m"))["code"] == "BAD_REQUEST"
            assert (await subscribe(ws, ["candles"], interval=60))["code"] == "BAD_REQUEST"
            await ws.send({"type": "subscribe", "channels": ["ticker"]})
            assert (await ws.until(of_type("error")))["code"] == "BAD_REQUEST"
            await subscribe(ws, ["ticker", "candles"], interval="1m")
            await subscribe(ws, ["candles"], interval="5m")
            await ws.send({"type": "unsubscribe", "channels": ["candles"], "symbols": ["QTX-USD"], "interval": "1m"})
            await ws.until(of_type("unsubscribed"))
            await trade(alice, bob, "10.00")
            await ws.until(lambda m: m["type"] == "candle" and m["interval"] == "5m")
            if not any(m["type"] == "ticker" and m["last"] for m in ws.seen):
                await ws.until(lambda m: m["type"] == "ticker" and m["last"])
            await ws.send({"type": "unsubscribe", "channels": ["ticker", "candles"], "symbols": ["QTX-USD"]})
            await ws.until(of_type("unsubscribed"))
            ws.seen.clear()
            await trade(alice, bob, "10.10")
            await ws.quiet(0.5)
            assert not [m for m in ws.seen if m["type"] in ("ticker", "candle")]
            assert not any(m["type"] == "candle" and m["interval"] == "1m" for m in ws.seen)

    run(body)


def test_a_slow_socket_gets_the_latest_ticker_once_it_has_drained(alice, bob, market, monkeypatch):
    backlog = {"bytes": 0}
    monkeypatch.setattr(transport.Sink, "pending_bytes", lambda sink: backlog["bytes"])

    async def body():
        async with Socket() as ws:
            await subscribe(ws, ["ticker"])
            await ws.until(of_type("ticker"))
            backlog["bytes"] = 300 * 1024  # past the soft limit: conflatable frames wait
            await trade(alice, bob, "10.00")
            await trade(alice, bob, "10.30")
            await ws.quiet(0.5)
            assert not any(m["type"] == "ticker" and m["last"] for m in ws.seen)
            backlog["bytes"] = 0  # drained: the latest ticker, not every one it missed
            latest = await ws.until(lambda m: m["type"] == "ticker" and m["last"] is not None)
            assert latest["last"] == "10.30000000"

    run(body)
