"""The streams' promises: nothing lost silently, gaps healed from the database, slow sockets
conflated, the engine never failed by a broken channel layer, fragments rendered from
plain context."""

import logging
import os
import socket
import time
from dataclasses import dataclass
from decimal import Decimal

import pytest
from django.template.loader import render_to_string

from marketdata import streams
from marketdata.events import BookChanged
from marketdata.selectors import BookSnapshot, book_snapshot, candle_tails, ticker, trades_recent
from marketdata.templatetags.market_fragments import book_ladder
from quantumtrades.core import streams as transport
from quantumtrades.core.websocket import CloseCode

from .stream_support import (  # noqa: F401  (fixtures)
    Book,
    Socket,
    alice_fixture,
    bob_fixture,
    fast_streams_fixture,
    limit,
    market_fixture,
    of_type,
    run,
    snapshot_of,
)

pytestmark = [pytest.mark.timeout(60)]


@pytest.fixture
def lossy(monkeypatch):
    """`lose(n)`: the next n commands' book changes (and the rest of their batch) never
    reach the channel layer."""
    real_put = transport.publisher.put
    pending = {"lose": 0}

    def put(item):
        if item[0] == "events" and pending["lose"] and any(isinstance(e, BookChanged) for e in item[2]):
            pending["lose"] -= 1
            return
        real_put(item)

    monkeypatch.setattr(transport.publisher, "put", put)
    return lambda n=1: pending.update(lose=n)


def test_a_lost_change_is_healed_from_the_database_without_breaking_the_chain(alice, market, lossy, caplog):
    async def body():
        async with Socket() as ws:
            await ws.send({"type": "subscribe", "channels": ["book"], "symbols": ["QTX-USD"]})
            book = Book(await ws.until(of_type("book_snapshot")))
            await limit(alice, "buy", "9.00")
            lossy(1)
            await limit(alice, "buy", "9.10")  # never published
            await limit(alice, "buy", "9.20")  # shows the gap: the hub waits, then resyncs
            final = await snapshot_of(market)
            await book.follow(ws, final.seq)
            assert book.matches(final)
            spanning = [m for m in ws.seen if m["type"] == "book_update" and m["seq"] - m["prev_seq"] > 1]
            assert spanning, "the resync reaches the socket as one conflated update"

    with caplog.at_level(logging.WARNING, logger="marketdata.streams"):
        run(body)
    assert any("missed changes" in r.getMessage() for r in caplog.records)


def test_a_lost_trade_goes_out_with_the_resync(alice, bob, market, lossy):
    async def body():
        await limit(alice, "buy", "9.00", "2")
        async with Socket() as ws:
            await ws.send({"type": "subscribe", "channels": ["book", "trades"], "symbols": ["QTX-USD"]})
            book = Book(await ws.until(of_type("book_snapshot")))
            lossy(1)
            lost = await limit(bob, "sell", "9.00", "1")  # its trade is never published
            await limit(bob, "sell", "9.00", "1")
            final = await snapshot_of(market)
            await book.follow(ws, final.seq)
            assert book.matches(final)
            await ws.settle(quiet=0.3)
            trades = [m["id"] for m in ws.seen if m.get("type") == "trade"]
            assert lost.fills[0].trade_id in trades and len(trades) == len(set(trades)) == 2

    run(body)


def test_a_lost_last_change_is_found_by_the_audit(alice, market, lossy):
    async def body():
        async with Socket() as ws:
            await ws.send({"type": "subscribe", "channels": ["book"], "symbols": ["QTX-USD"]})
            book = Book(await ws.until(of_type("book_snapshot")))
            lossy(1)
            await limit(alice, "buy", "9.10")  # nothing after it shows the gap
            final = await snapshot_of(market)
            await book.follow(ws, final.seq, timeout=5)
            assert book.matches(final)

    run(body)


def test_a_slow_socket_skips_to_the_latest_book_and_a_stuck_one_is_closed(alice, bob, market, monkeypatch):
    backlog = {"bytes": 0}
    monkeypatch.setattr(transport.Sink, "pending_bytes", lambda sink: backlog["bytes"])

    async def body():
        async with Socket() as ws:
            await ws.send({"type": "subscribe", "channels": ["book", "trades"], "symbols": ["QTX-USD"]})
            book = Book(await ws.until(of_type("book_snapshot")))
            backlog["bytes"] = 300 * 1024  # past the soft limit: book updates wait
            await limit(alice, "buy", "9.00")
            await limit(bob, "sell", "9.00", "0.5")  # a trade still goes out
            trade = await ws.until(of_type("trade"))
            assert trade["price"] == "9.00000000"
            assert not [m for m in ws.seen if m["type"] == "book_update"]
            backlog["bytes"] = 0  # drained: the latest book, as a snapshot
            latest = Book(await ws.until(of_type("book_snapshot")))
            final = await snapshot_of(market)
            assert latest.matches(final) and latest.seq > book.seq
            await limit(alice, "buy", "8.90")
            latest.apply(await ws.until(of_type("book_update")))

            backlog["bytes"] = 5 * 1024 * 1024  # past the hard limit: told, then closed
            await limit(alice, "buy", "8.80")
            error = await ws.until(of_type("error"))
            assert error["code"] == "SLOW_CONSUMER"
            closed = await ws.communicator.receive_output(5)
            assert closed == {"type": "websocket.close", "code": CloseCode.TRY_AGAIN_LATER}

    run(body)


def test_a_dead_channel_layer_never_fails_an_order(alice, market, settings, monkeypatch, caplog):
    with socket.socket() as probe:  # a port nothing listens on
        probe.bind(("127.0.0.1", 0))
        dead_port = probe.getsockname()[1]
    settings.CHANNEL_LAYERS = {
        "default": {
            "BACKEND": "channels_redis.pubsub.RedisPubSubChannelLayer",
            "CONFIG": {"hosts": [{"address": f"redis://127.0.0.1:{dead_port}/0", "socket_connect_timeout": 1}]},
        }
    }
    publisher = transport.Publisher()
    monkeypatch.setattr(transport.publishing, "publisher", publisher)
    monkeypatch.setattr(transport.publishing, "layer_health", transport.LayerHealth())
    from orders.services import order_place

    with caplog.at_level(logging.WARNING, logger="marketdata.streams"):
        for price in ("9.00", "9.01", "9.02"):
            result = order_place(user=alice, market="QTX-USD", side="buy", quantity=Decimal("1"), price=Decimal(price))
            assert result.order.status == "open"
        assert publisher.flush(5.0)
    warnings = [r for r in caplog.records if r.levelno >= logging.WARNING and "unreachable" in r.getMessage()]
    assert len(warnings) == 1, "one line when the layer goes away, not one per order"
    assert book_snapshot(market=market).seq == 3


@pytest.fixture
def unsent_layer(settings):
    """A Redis layer that is never reached (the tests replace the publisher's `_send`), so that
    batches go through the publisher's thread instead of the in-memory hand-over."""
    settings.CHANNEL_LAYERS = {
        "default": {"BACKEND": "channels_redis.pubsub.RedisPubSubChannelLayer", "CONFIG": {"hosts": []}}
    }


@pytest.mark.usefixtures("unsent_layer")
def test_the_publisher_drops_the_oldest_batches_when_full_and_says_so(settings, monkeypatch, caplog):
    settings.STREAMS = {**settings.STREAMS, "PUBLISH_QUEUE": 5}
    publisher = transport.Publisher()
    sent = []

    async def record(payloads):
        sent.extend(payloads)

    monkeypatch.setattr(publisher, "_start", lambda: None)  # nothing drains while we fill it
    monkeypatch.setattr(publisher, "_send", record)
    for user_id in range(12):
        publisher.put(("user_html", user_id, "<div id='x'></div>"))
    assert len(publisher._items) == 5
    with caplog.at_level(logging.WARNING, logger="marketdata.streams"):
        transport.Publisher._start(publisher)
        publisher._wake.set()
        assert publisher.flush(5.0)
    assert [p["user_id"] for p in sent if p["kind"] == "user_fragments"] == [7, 8, 9, 10, 11]
    assert {"kind": "resync"} in sent, "hubs are asked to resync"
    assert any("dropped the 7 oldest" in r.getMessage() for r in caplog.records)


@pytest.mark.usefixtures("unsent_layer")
def test_the_publisher_sends_the_first_batch_at_once_and_a_burst_after_it_in_one_message(settings, monkeypatch):
    settings.STREAMS = {**settings.STREAMS, "PUBLISH_INTERVAL": 0.5}
    publisher = transport.Publisher()
    messages = []

    async def record(payloads):
        messages.append((time.monotonic(), [p["user_id"] for p in payloads if p["kind"] == "user_fragments"]))

    monkeypatch.setattr(publisher, "_send", record)
    started = time.monotonic()

    publisher.put(("user_html", 1, "<div id='x'></div>"))
    assert publisher.flush(5.0)
    for user_id in (2, 3, 4):
        publisher.put(("user_html", user_id, "<div id='x'></div>"))
    assert publisher.flush(5.0)

    assert [users for _, users in messages] == [[1], [2, 3, 4]]
    (first, _), (second, _) = messages
    assert first - started < 0.5, "a batch after a quiet spell goes at once"
    assert second - first >= 0.49


@dataclass(frozen=True)
class Public:
    market_id: int

    def as_message(self):
        return {"type": "trade", "id": 1}


@dataclass(frozen=True)
class Private:
    user_id: int
    market_id: int

    def as_message(self):
        return {"type": "order", "id": 2}


class Broken:
    market_id = 1

    def as_message(self):
        raise ValueError("no")


def test_events_are_sorted_by_their_fields_not_their_classes(caplog):
    [payload] = transport.publishing.wire_items([("events", 1.5, [Public(7), Private(3, 7), Broken()])])
    assert payload["public"] == [{"type": "trade", "id": 1, "market_id": 7}]
    assert payload["private"] == [(3, {"type": "order", "id": 2}, None, None, False)]
    assert "Broken" in caplog.text


def test_fragments_render_from_plain_context(alice, bob, market):
    from orders.services import order_place

    for side, price, quantity in [
        ("buy", "9.90", "2"),
        ("buy", "9.80", "3"),
        ("sell", "10.10", "1"),
        ("sell", "9.90", "1"),
    ]:
        order_place(
            user=alice if side == "buy" else bob,
            market=market,
            side=side,
            quantity=Decimal(quantity),
            price=Decimal(price),
        )
    context = {
        "market": market,
        "snapshot": book_snapshot(market=market),
        "trades": trades_recent(market=market),
        "ticker": ticker(market=market),
        "candles": [],
        "tails": candle_tails(market=market),
    }
    html = {
        name: render_to_string(f"marketdata/fragments.html#{name}", context)
        for name in ("book", "tape", "ticker", "chart", "market_row")
    }
    assert 'id="book"' in html["book"] and 'data-side="buy" data-price="9.90"' in html["book"]
    assert 'data-side="sell" data-price="10.10"' in html["book"]
    assert 'id="tape"' in html["tape"] and "9.90" in html["tape"]
    assert 'id="ticker"' in html["ticker"] and "9.90" in html["ticker"]
    assert 'id="chart"' in html["chart"] and "&quot;1m&quot;:[[" in html["chart"]
    assert 'id="market-row-QTX-USD"' in html["market_row"]
    assert all('hx-swap-oob="true"' in fragment for fragment in html.values())


def test_the_ladder_sums_depth_from_the_best_price_out():
    snapshot = BookSnapshot(
        symbol="QTX-USD",
        seq=5,
        bids=[(Decimal("9.9"), Decimal("2")), (Decimal("9.8"), Decimal("3"))],
        asks=[(Decimal("10.1"), Decimal("1")), (Decimal("10.2"), Decimal("9"))],
    )
    ladder = book_ladder(snapshot)
    assert [(row.price, row.total, row.depth) for row in ladder.bids] == [
        (Decimal("9.9"), Decimal("2"), 20.0),
        (Decimal("9.8"), Decimal("5"), 50.0),
    ]
    # Asks are shown highest first, so the best ask sits next to the spread.
    assert [(row.price, row.total, row.depth) for row in ladder.asks] == [
        (Decimal("10.2"), Decimal("10"), 100.0),
        (Decimal("10.1"), Decimal("1"), 10.0),
    ]
    assert ladder.spread == Decimal("0.2")


@pytest.mark.postgres
@pytest.mark.skipif(not os.environ.get("REDIS_URL"), reason="needs the Redis channel layer (REDIS_URL)")
def test_a_subscription_redis_forgot_is_made_again(alice, market, settings):
    settings.STREAMS = {**settings.STREAMS, "PING_INTERVAL": 0.1, "PING_TIMEOUT": 0.3}

    async def body():
        async with Socket() as ws:
            await ws.send({"type": "subscribe", "channels": ["book"], "symbols": ["QTX-USD"]})
            book = Book(await ws.until(of_type("book_snapshot")))
            hub = await streams.get_hub()
            # As after a failover: Redis no longer sends this process anything.
            await hub.subscription.pubsub.unsubscribe()
            await limit(alice, "buy", "9.00")
            final = await snapshot_of(market)
            await book.follow(ws, final.seq, timeout=10)
            assert book.matches(final)
            await limit(alice, "buy", "9.10")
            book.apply(await ws.until(of_type("book_update")))

    run(body)
