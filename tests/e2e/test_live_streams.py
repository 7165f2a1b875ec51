"""Live streams end to end: real daphne processes on PostgreSQL and Redis, a real WebSocket
client, orders through the REST API. Every wait is bounded; every process is stopped by PID."""

import asyncio
import json
import random
from decimal import Decimal

import pytest
from django.db import connection
from websockets.asyncio.client import connect
from websockets.exceptions import InvalidStatus

from accounts.tokens import api_login_start
from marketdata.models import Trade
from tests.streams.stream_support import Book, of_type, session_cookie

from .conftest import NEEDS_SERVERS, api_async
from .servers import RedisServer, free_port

pytestmark = [
    *NEEDS_SERVERS,
]
PUBLIC_IDS = {"book", "tape", "ticker", "chart", "market-status"}


class Client:
    """A websocket client that remembers what it received."""

    def __init__(self, url, *, origin=None, cookie=None):
        self.url = url
        self.origin = origin
        self.headers = {"Cookie": cookie[1].decode()} if cookie else None
        self.seen = []

    async def __aenter__(self):
        self.ws = await connect(self.url, origin=self.origin, additional_headers=self.headers, open_timeout=10)
        return self

    async def __aexit__(self, *exc):
        await self.ws.close()

    async def send(self, message):
        await self.ws.send(json.dumps(message))

    async def receive(self, timeout=10.0):
        text = await asyncio.wait_for(self.ws.recv(), timeout)
        message = json.loads(text) if text.startswith("{") else {"type": "html", "html": text}
        self.seen.append(message)
        return message

    async def until(self, predicate, timeout=10.0):
        loop = asyncio.get_running_loop()
        end = loop.time() + timeout
        while True:
            try:
                message = await self.receive(timeout=max(0.01, end - loop.time()))
            except TimeoutError:
                raise AssertionError(f"nothing matched within {timeout}s; seen: {self.seen[-5:]}") from None
            if predicate(message):
                return message

    async def subscribe_book(self, symbol="QTX-USD"):
        await self.send({"type": "subscribe", "channels": ["book", "trades"], "symbols": [symbol]})
        return Book(await self.until(of_type("book_snapshot")))


def run(body, timeout=90.0):
    asyncio.run(asyncio.wait_for(body(), timeout))


def token(user) -> str:
    return str(api_login_start(user=user).access_token)


async def order(server, user_token, side, price, quantity="1"):
    status, body = await api_async(
        "POST",
        f"{server.url}/api/orders",
        token=user_token,
        body={"symbol": "QTX-USD", "side": side, "type": "limit", "price": price, "quantity": quantity},
    )
    assert status in (200, 201), body
    return body["order"]  # {"order": {...}, "fills": [...]}


async def rest_snapshot(server):
    status, body = await api_async("GET", f"{server.url}/api/book/snapshot?symbol=QTX-USD&depth=500")
    assert status == 200, body
    return body


def same_book(book: Book, snapshot: dict) -> bool:
    def levels(side):
        return {Decimal(price): Decimal(quantity) for price, quantity in snapshot[side]}

    return book.seq == snapshot["seq"] and book.sides["bids"] == levels("bids") and book.sides["asks"] == levels("asks")


def html_ids(frame: str) -> set[str]:
    import re

    return set(re.findall(r'<[a-z]+ id="([^"]+)"[^>]*hx-swap-oob', frame))


def test_snapshot_plus_applied_updates_equal_a_fresh_rest_snapshot(servers, alice, bob):
    server = servers.daphne()
    tokens = {"buy": token(alice), "sell": token(bob)}
    rng = random.Random(7)

    async def body():
        for price in ("9.50", "9.60", "9.70"):
            await order(server, tokens["buy"], "buy", price, "2")
        for price in ("10.30", "10.40"):
            await order(server, tokens["sell"], "sell", price, "2")
        async with Client(f"{server.ws_url}/ws") as ws:
            book = await ws.subscribe_book()
            assert same_book(book, await rest_snapshot(server))
            for _ in range(30):
                side = rng.choice(["buy", "sell"])
                price = f"{rng.randint(960, 1040) / 100:.2f}"
                await order(server, tokens[side], side, price, f"{rng.randint(1, 30) / 10:.1f}")
            fresh = await rest_snapshot(server)
            await book.follow(ws, fresh["seq"], timeout=10)
            assert same_book(book, fresh)
            await asyncio.sleep(0.3)  # trades of the last command
            while True:
                try:
                    await ws.receive(timeout=0.3)
                except TimeoutError:
                    break
        return {m["id"] for m in ws.seen if m["type"] == "trade"}

    trade_ids = asyncio.run(asyncio.wait_for(body(), 90))
    assert trade_ids and trade_ids == set(Trade.objects.values_list("id", flat=True))


def test_a_dropped_message_is_detected_by_the_sequence_and_healed_by_resubscribing(servers, alice):
    server = servers.daphne()
    alice_token = token(alice)

    async def body():
        async with Client(f"{server.ws_url}/ws") as ws:
            book = await ws.subscribe_book()
            await order(server, alice_token, "buy", "9.10")
            book.apply(await ws.until(of_type("book_update")))
            await order(server, alice_token, "buy", "9.20")
            await ws.until(of_type("book_update"))  # lost on the way, as far as this client knows
            await order(server, alice_token, "buy", "9.30")
            update = await ws.until(of_type("book_update"))
            assert update["prev_seq"] != book.seq, "the sequence shows the gap"
            with pytest.raises(AssertionError, match="gap"):
                book.apply(update)
            book = await ws.subscribe_book()  # heal: subscribe again, start from a snapshot
            await order(server, alice_token, "buy", "9.40")
            fresh = await rest_snapshot(server)
            await book.follow(ws, fresh["seq"])
            assert same_book(book, fresh)
            assert {Decimal("9.10"), Decimal("9.20"), Decimal("9.30"), Decimal("9.40")} <= book.sides["bids"].keys()

    run(body)


def test_private_events_never_leak_to_another_user(servers, alice, bob):
    server = servers.daphne()
    alice_token, bob_token = token(alice), token(bob)
    alice_cookie, bob_cookie = session_cookie(alice), session_cookie(bob)

    async def body():
        async with (
            Client(f"{server.ws_url}/ws") as a,
            Client(f"{server.ws_url}/ws", origin=server.origin, cookie=bob_cookie) as b,
            Client(f"{server.ws_url}/ws") as nobody,
            Client(f"{server.ws_url}/ws/live/QTX-USD/", origin=server.origin, cookie=alice_cookie) as a_page,
            Client(f"{server.ws_url}/ws/live/QTX-USD/", origin=server.origin) as anonymous_page,
        ):
            await a.send({"type": "auth", "token": alice_token})
            assert (await a.until(of_type("authenticated")))["user"]["username"] == "alice"
            for ws in (a, b):
                await ws.send({"type": "subscribe", "channels": ["orders"]})
                await ws.until(of_type("subscribed"))
            await nobody.send({"type": "subscribe", "channels": ["orders"]})
            assert (await nobody.until(of_type("error")))["code"] == "AUTH_REQUIRED"
            await a_page.receive()
            await anonymous_page.receive()

            placed = {"alice": set(), "bob": set()}
            for i in range(3):
                placed["bob"].add((await order(server, bob_token, "sell", f"10.0{i}", "1"))["id"])
                placed["alice"].add((await order(server, alice_token, "buy", f"10.0{i}", "1"))["id"])
            await a.until(lambda m: m["type"] == "fill" and m["order_id"] in placed["alice"])
            await b.until(lambda m: m["type"] == "fill" and m["order_id"] in placed["bob"])
            await asyncio.sleep(1.0)
            for ws in (a, b, a_page, anonymous_page):
                while True:
                    try:
                        await ws.receive(timeout=0.3)
                    except TimeoutError:
                        break

            def order_ids(ws):
                return {
                    m.get("order_id", m.get("id"))
                    for m in ws.seen
                    if m["type"] not in ("subscribed", "authenticated", "balance")
                }

            assert order_ids(a) == placed["alice"], "alice sees her orders and fills, nothing of bob's"
            assert order_ids(b) == placed["bob"]
            assert {m["type"] for m in a.seen + b.seen} <= {
                "subscribed",
                "authenticated",
                "order",
                "fill",
                "balance",
            }
            public_only = set().union(*(html_ids(m["html"]) for m in anonymous_page.seen))
            assert public_only <= PUBLIC_IDS, "an anonymous page gets public fragments only"
            mine = set().union(*(html_ids(m["html"]) for m in a_page.seen))
            assert mine - PUBLIC_IDS, "alice's page gets her private fragments"

    run(body)


def test_a_foreign_origin_is_refused(servers):
    server = servers.daphne()

    async def body():
        for path in ("/ws", "/ws/live/QTX-USD/", "/ws/live/"):
            with pytest.raises(InvalidStatus) as refused:
                async with Client(f"{server.ws_url}{path}", origin="https://evil.example"):
                    pass
            assert refused.value.response.status_code == 403
        async with Client(f"{server.ws_url}/ws/live/QTX-USD/", origin=server.origin) as page:
            assert 'id="book"' in (await page.receive())["html"]
        async with Client(f"{server.ws_url}/ws") as program:  # no Origin: a program, not a browser
            await program.send({"type": "ping"})
            assert (await program.receive())["type"] == "pong"

    run(body)


def test_a_channel_layer_on_a_dead_port_does_not_fail_an_order(servers, alice):
    server = servers.daphne(CHANNEL_LAYER_REDIS_URL=f"redis://127.0.0.1:{free_port()}/0")
    alice_token = token(alice)

    async def body():
        placed = [await order(server, alice_token, "buy", price) for price in ("9.00", "9.10", "9.20")]
        assert [o["status"] for o in placed] == ["open", "open", "open"]
        async with Client(f"{server.ws_url}/ws") as ws:  # still serves snapshots from the database
            book = await ws.subscribe_book()
            assert book.seq == 3 and len(book.sides["bids"]) == 3

    run(body)
    log = servers.started[0].log()
    assert "channel layer unreachable" in log
    assert "Traceback" not in log


def test_streams_recover_when_the_channel_layer_comes_back(servers, alice):
    layer = servers.redis()
    server = servers.daphne(CHANNEL_LAYER_REDIS_URL=layer.url)
    alice_token = token(alice)

    async def body():
        async with Client(f"{server.ws_url}/ws") as ws:
            book = await ws.subscribe_book()
            await order(server, alice_token, "buy", "9.00")
            book.apply(await ws.until(of_type("book_update")))
            await asyncio.to_thread(layer.stop)
            for price in ("9.10", "9.20"):
                assert (await order(server, alice_token, "buy", price))["status"] == "open"
            revived = RedisServer(layer.workdir, port=layer.port)
            servers.started.append(revived)
            await asyncio.to_thread(revived.start)
            fresh = await rest_snapshot(server)
            await book.follow(ws, fresh["seq"], timeout=20)  # the hub resyncs: one update spans the outage
            assert same_book(book, fresh)
            await order(server, alice_token, "buy", "9.30")
            book.apply(await ws.until(of_type("book_update")))
            assert Decimal("9.30") in book.sides["bids"]

    run(body)
    assert "channel layer unreachable" in servers.started[1].log()


def test_an_order_placed_through_one_daphne_reaches_sockets_on_the_other(servers, alice, bob):
    first, second = servers.daphne(), servers.daphne()
    alice_token, bob_token = token(alice), token(bob)

    async def body():
        async with (
            Client(f"{second.ws_url}/ws") as there,
            Client(f"{first.ws_url}/ws") as here,
            Client(f"{second.ws_url}/ws/live/QTX-USD/", origin=second.origin) as page,
        ):
            books = [await there.subscribe_book(), await here.subscribe_book()]
            await page.receive()
            await order(first, bob_token, "sell", "10.50", "2")
            await order(first, alice_token, "buy", "10.50", "1")
            fresh = await rest_snapshot(second)
            for ws, book in zip((there, here), books, strict=True):
                await book.follow(ws, fresh["seq"])
                assert same_book(book, fresh)
                trades = [m for m in ws.seen if m["type"] == "trade"] or [await ws.until(of_type("trade"))]
                assert [t["price"] for t in trades] == ["10.50000000"]
            frame = await page.until(lambda m: 'data-price="10.50"' in m.get("html", "") and 'id="book"' in m["html"])
            assert 'hx-swap-oob="true"' in frame["html"]

    run(body)
    assert connection.vendor == "postgresql"
