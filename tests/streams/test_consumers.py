"""The /ws JSON protocol and the /ws/live/ page sockets, through the whole ASGI stack
(Origin check, sessions, auth) with WebsocketCommunicator, on whichever layer is set
(in-memory on the embedded defaults, Redis pub/sub when REDIS_URL is set)."""

import json

import pytest

from accounts.tokens import api_login_start
from marketdata import consumers
from quantumtrades.core import streams as transport
from quantumtrades.core.websocket import CloseCode

from .stream_support import (  # noqa: F401  (fixtures)
    ORIGIN,
    Book,
    Socket,
    alice_fixture,
    bob_fixture,
    fast_streams_fixture,
    limit,
    market_fixture,
    of_type,
    run,
    session_cookie,
    snapshot_of,
)

pytestmark = [pytest.mark.timeout(60)]


def test_a_bad_message_gets_an_error_and_the_connection_stays(market):
    async def body():
        async with Socket() as ws:
            await ws.communicator.send_to(text_data="not json")
            assert (await ws.receive())["code"] == "BAD_JSON"
            await ws.send(["a", "list"])
            assert (await ws.receive())["code"] == "BAD_MESSAGE"
            await ws.send({"type": "dance"})
            assert (await ws.receive())["code"] == "UNKNOWN_TYPE"
            await ws.send({"type": "ping", "padding": "x" * consumers.MAX_MESSAGE_BYTES})
            assert (await ws.receive())["code"] == "MESSAGE_TOO_LARGE"
            await ws.communicator.send_to(bytes_data=b"\x00\x01")
            assert (await ws.receive())["code"] == "BAD_MESSAGE"
            await ws.send({"type": "subscribe", "channels": ["klines"], "symbols": ["QTX-USD"]})
            assert (await ws.receive())["code"] == "UNKNOWN_CHANNEL"
            await ws.send({"type": "subscribe", "channels": ["book"], "symbols": ["NOPE-USD"]})
            assert (await ws.receive())["code"] == "UNKNOWN_SYMBOL"
            await ws.send({"type": "subscribe", "channels": ["book"]})
            assert (await ws.receive())["code"] == "BAD_REQUEST"
            await ws.send({"type": "ping", "id": 7})
            pong = await ws.receive()
            assert pong["type"] == "pong" and pong["id"] == 7

    run(body)


def test_a_flood_is_refused_and_then_closed(market, monkeypatch):
    monkeypatch.setattr(consumers, "MAX_REFUSED", 10)

    async def body():
        async with Socket() as ws:
            for _ in range(consumers.MESSAGE_BURST + 5):
                await ws.send({"type": "ping"})
            error = await ws.until(of_type("error"))
            assert error["code"] == "RATE_LIMITED"
            for _ in range(20):
                await ws.send({"type": "ping"})
            closed = await ws.communicator.receive_output(5)
            while closed["type"] != "websocket.close":
                closed = await ws.communicator.receive_output(5)
            assert closed["code"] == CloseCode.RATE_LIMITED

    run(body)


def test_book_snapshot_then_contiguous_updates_equal_the_database(alice, bob, market):
    async def body():
        await limit(alice, "buy", "9.90", "2")
        await limit(bob, "sell", "10.10", "3")
        async with Socket() as ws:
            await ws.send({"type": "subscribe", "channels": ["book", "trades"], "symbols": ["QTX-USD"]})
            assert await ws.receive() == {"type": "subscribed", "channels": ["book", "trades"], "symbols": ["QTX-USD"]}
            book = Book(await ws.until(of_type("book_snapshot")))
            assert book.matches(await snapshot_of(market))

            await limit(alice, "buy", "9.95", "1")
            await limit(bob, "sell", "9.95", "1.5")  # trades 1 at 9.95, rests 0.5
            await limit(alice, "buy", "9.80", "4")
            final = await snapshot_of(market)
            await book.follow(ws, final.seq)
            assert book.matches(final)
            # The trade comes on its own channel, batched on its own (PUBLISH_INTERVAL): it
            # may arrive before the book's last update or after it.
            trades = [m for m in ws.seen if m["type"] == "trade"] or [await ws.until(of_type("trade"))]
            [trade] = trades
            assert trade["price"] == "9.95000000" and trade["quantity"] == "1.00000000"
            assert trade["taker_side"] == "sell" and trade["symbol"] == "QTX-USD"

    run(body)


def test_resubscribing_starts_again_from_a_fresh_snapshot(alice, market):
    async def body():
        async with Socket() as ws:
            await ws.send({"type": "subscribe", "channels": ["book"], "symbols": ["QTX-USD"]})
            first = await ws.until(of_type("book_snapshot"))
            await limit(alice, "buy", "9.00")
            await ws.until(of_type("book_update"))
            await ws.send({"type": "subscribe", "channels": ["book"], "symbols": ["QTX-USD"]})
            again = Book(await ws.until(of_type("book_snapshot")))
            assert again.seq == first["seq"] + 1
            assert again.matches(await snapshot_of(market))
            await ws.send({"type": "unsubscribe", "channels": ["book"], "symbols": ["QTX-USD"]})
            await ws.until(of_type("unsubscribed"))
            await limit(alice, "buy", "9.01")
            assert await ws.quiet(0.5)

    run(body)


def test_the_orders_channel_needs_a_user(market):
    async def body():
        async with Socket() as ws:
            await ws.send({"type": "subscribe", "channels": ["orders"]})
            assert (await ws.receive())["code"] == "AUTH_REQUIRED"
            await ws.send({"type": "auth", "token": "not.a.jwt"})
            assert (await ws.receive())["code"] == "AUTH_FAILED"
            await ws.send({"type": "ping"})
            assert (await ws.receive())["type"] == "pong"

    run(body)


def test_private_events_reach_only_their_owner(alice, bob, market):
    token = str(api_login_start(user=alice).access_token)
    bob_cookie = session_cookie(bob)

    async def body():
        async with Socket() as a, Socket(headers=[ORIGIN, bob_cookie]) as b:
            await a.send({"type": "auth", "token": token})
            assert (await a.receive())["user"]["username"] == "alice"
            for ws in (a, b):
                await ws.send({"type": "subscribe", "channels": ["orders"]})
                await ws.until(of_type("subscribed"))
            resting = await limit(bob, "sell", "10.00", "2")
            taker = await limit(alice, "buy", "10.00", "2")  # fills bob's order
            await a.until(lambda m: m["type"] == "fill")
            await b.until(lambda m: m["type"] == "fill")
            await a.settle()
            await b.settle()
            assert {m["asset"] for m in a.seen if m["type"] == "balance"} == {"USD", "QTX"}
            assert {m["asset"] for m in b.seen if m["type"] == "balance"} == {"USD", "QTX"}
            a_orders = {m["id"] for m in a.seen if is_order(m)}
            b_orders = {m["id"] for m in b.seen if is_order(m)}
            assert a_orders == {taker.order.pk}
            assert b_orders == {resting.order.pk}
            assert {m["order_id"] for m in a.seen if m["type"] == "fill"} == {taker.order.pk}
            assert {m["order_id"] for m in b.seen if m["type"] == "fill"} == {resting.order.pk}
            # Nothing public on a socket that asked only for its orders.
            assert not [m for m in a.seen + b.seen if m["type"] in ("book_update", "trade", "book_snapshot")]

    run(body)


def is_order(message) -> bool:
    # orders.events.OrderChanged.as_message() lets the order's own "type" (limit/market)
    # overwrite "order" (reported to the engine's owner); recognise it by its fields.
    return message.get("type") == "order" or {"status", "remaining_quantity"} <= message.keys()


def test_a_session_cookie_counts_only_with_an_allowed_origin(bob, market):
    cookie = session_cookie(bob)

    async def body():
        # No Origin: a program, not a browser; its cookie is ignored.
        async with Socket(headers=[cookie]) as ws:
            await ws.send({"type": "subscribe", "channels": ["orders"]})
            assert (await ws.receive())["code"] == "AUTH_REQUIRED"
        refused = Socket(headers=[(b"origin", b"https://evil.example"), cookie])
        connected, code = await refused.communicator.connect(timeout=5)
        assert not connected
        await refused.communicator.disconnect(timeout=2)

    run(body)


def test_a_market_page_gets_every_fragment_then_the_changes(alice, market):
    async def body():
        await limit(alice, "buy", "9.50", "2")
        async with Socket("/ws/live/QTX-USD/", headers=[ORIGIN]) as page:
            first = await page.receive_text()
            for fragment_id in ("market-status", "book", "tape", "ticker", "chart"):
                assert f'id="{fragment_id}"' in first
            assert first.count('hx-swap-oob="true"') == 5
            assert 'data-side="buy" data-price="9.50"' in first
            await limit(alice, "buy", "9.40", "1")
            loop_text = ""
            for _ in range(10):
                loop_text = await page.receive_text()
                if 'data-price="9.40"' in loop_text:
                    break
            assert 'id="book"' in loop_text and 'data-price="9.40"' in loop_text

    run(body)


def test_stream_to_user_reaches_only_that_users_pages(alice, bob, market, monkeypatch):
    # What a page gets on connecting (registered by the orders app in production).
    monkeypatch.setattr(
        transport.publishing, "user_fragments", lambda user_id: f'<div id="who" hx-swap-oob="true">{user_id}</div>'
    )
    alice_cookie, bob_cookie = session_cookie(alice), session_cookie(bob)

    async def body():
        async with (
            Socket("/ws/live/QTX-USD/", headers=[ORIGIN, alice_cookie]) as a,
            Socket("/ws/live/", headers=[ORIGIN, bob_cookie]) as b,
            Socket("/ws/live/QTX-USD/", headers=[ORIGIN]) as anonymous,
        ):
            assert f'<div id="who" hx-swap-oob="true">{alice.pk}</div>' in await a.settle()
            assert f'<div id="who" hx-swap-oob="true">{bob.pk}</div>' in await b.settle()
            assert 'id="who"' not in await anonymous.settle()
            assert transport.user_is_watching(alice.pk) and transport.user_is_watching(bob.pk)
            transport.stream_to_user(alice.pk, '<div id="open-orders" hx-swap-oob="true">mine</div>')
            assert await a.receive_text() == '<div id="open-orders" hx-swap-oob="true">mine</div>'
            assert await b.quiet(0.3)
            assert await anonymous.quiet(0.1)

    run(body)


def test_a_page_without_a_socket_of_its_own_hears_only_the_traders_private_news(alice, market, monkeypatch):
    monkeypatch.setattr(
        transport.publishing, "user_fragments", lambda user_id: f'<div id="who" hx-swap-oob="true">{user_id}</div>'
    )

    cookie = session_cookie(alice)

    async def body():
        async with Socket("/ws/live/me/", headers=[ORIGIN, cookie]) as mine:
            # The private fragments come first (however long the worker takes), then nothing else:
            # no market data.
            first = await mine.receive_text()
            assert first + await mine.settle() == f'<div id="who" hx-swap-oob="true">{alice.pk}</div>'
            assert transport.user_is_watching(alice.pk)
            toast = '<div hx-swap-oob="beforeend:#toasts"><div class="toast">Sold</div></div>'
            transport.stream_to_user(alice.pk, toast)
            assert await mine.receive_text() == toast
        # Nobody's private stream without a session: the handshake is refused.
        anonymous = Socket("/ws/live/me/", headers=[ORIGIN])
        connected, _ = await anonymous.communicator.connect(timeout=5)
        assert not connected
        await anonymous.communicator.disconnect(timeout=2)

    run(body)


def test_the_overview_gets_a_row_per_market(market):
    async def body():
        async with Socket("/ws/live/", headers=[ORIGIN]) as overview:
            rows = await overview.receive_text()
            assert 'id="market-row-QTX-USD"' in rows and 'hx-swap-oob="true"' in rows

    run(body)


def test_a_page_for_an_unknown_market_is_refused(market):
    async def body():
        socket = Socket("/ws/live/NOPE-USD/", headers=[ORIGIN])
        connected, _ = await socket.communicator.connect(timeout=5)
        assert not connected
        await socket.communicator.disconnect(timeout=2)

    run(body)


def test_heartbeats_carry_each_book_sequence(market, settings):
    settings.STREAMS = {**settings.STREAMS, "HEARTBEAT_INTERVAL": 0.3}

    async def body():
        async with Socket() as ws:
            await ws.send({"type": "subscribe", "channels": ["book"], "symbols": ["QTX-USD"]})
            snapshot = await ws.until(of_type("book_snapshot"))
            beat = await ws.until(of_type("heartbeat"), timeout=3)
            assert beat["seqs"]["QTX-USD"] == snapshot["seq"]
            json.dumps(beat)

    run(body)
