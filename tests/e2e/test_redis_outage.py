"""Redis stopped and started under a live daphne (README, "When Redis or PostgreSQL goes away").

The test starts a redis-server of its own on a free port (never the machine's), points
one daphne's cache and channel layer at it, stops it, trades and reads through the
outage, starts it again on the same port and watches the open sockets heal.
"""

import asyncio
import http.cookiejar
import re
import time
import urllib.error
import urllib.parse
import urllib.request
from decimal import Decimal

from tests.streams.stream_support import of_type, session_cookie

from .conftest import NEEDS_SERVERS, api_async
from .servers import RedisServer
from .test_live_streams import Client, order, rest_snapshot, same_book, token

pytestmark = [
    *NEEDS_SERVERS,
]

# How long the streams may take to heal once Redis answers again ("a few seconds").
HEAL_WITHIN = 5.0
# How long Redis stays away: longer than the hub's ping timeout, so every part notices.
OUTAGE = 4.0


def restart(servers, redis: RedisServer) -> RedisServer:
    """Start a redis-server again on the port of one that was stopped."""
    revived = RedisServer(redis.workdir, port=redis.port)
    servers.started.append(revived)
    return revived.start()


async def page_get(server, path, cookie) -> tuple[int, str]:
    """(status, HTML) of a page as a signed-in browser asks for it."""

    def get():
        request = urllib.request.Request(f"{server.url}{path}", headers={"Cookie": cookie[1].decode()})
        try:
            with urllib.request.urlopen(request, timeout=10) as response:
                return response.status, response.read().decode()
        except urllib.error.HTTPError as error:
            return error.code, error.read().decode()

    return await asyncio.to_thread(get)


async def web_login(server, username, password) -> int:
    """Status of the login form's POST, as a browser sends it (CSRF cookie and token)."""

    def post():
        jar = http.cookiejar.CookieJar()
        opener = urllib.request.build_opener(urllib.request.HTTPCookieProcessor(jar), NoRedirect())
        with opener.open(f"{server.url}/accounts/login/", timeout=10) as response:
            token = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', response.read().decode()).group(1)
        form = urllib.parse.urlencode({"username": username, "password": password, "csrfmiddlewaretoken": token})
        request = urllib.request.Request(
            f"{server.url}/accounts/login/", data=form.encode(), headers={"Referer": f"{server.url}/accounts/login/"}
        )
        try:
            with opener.open(request, timeout=10) as response:
                return response.status
        except urllib.error.HTTPError as error:
            return error.code

    return await asyncio.to_thread(post)


class NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args, **kwargs):
        return None


def book_prices(frame: str) -> set[str]:
    return set(re.findall(r'data-price="([^"]+)"', frame))


def test_trading_goes_on_while_redis_is_down_and_the_streams_heal_after(servers, alice, bob):
    redis = servers.redis()
    # The cache (throttles, lockout) and the channel layer on the Redis that goes away.
    server = servers.daphne(REDIS_URL=redis.url, CHANNEL_LAYER_REDIS_URL=redis.url)
    tokens = {"alice": token(alice), "bob": token(bob)}
    alice_cookie = session_cookie(alice)

    async def body():
        async with (
            Client(f"{server.ws_url}/ws") as ws,
            Client(f"{server.ws_url}/ws/live/QTX-USD/", origin=server.origin, cookie=alice_cookie) as page,
        ):
            carol = {"username": "carol", "password": "carol-pass-2026"}
            status, answer = await api_async(
                "POST", f"{server.url}/api/auth/register", body={**carol, "email": "c@example.com"}
            )
            assert status == 201, answer
            book = await ws.subscribe_book()
            await page.until(lambda m: 'id="book"' in m.get("html", ""))
            await order(server, tokens["bob"], "sell", "10.50", "5")
            book.apply(await ws.until(of_type("book_update")))

            await asyncio.to_thread(redis.stop)
            down_at = time.monotonic()
            placed = [
                await order(server, tokens["alice"], "buy", "9.40"),
                await order(server, tokens["alice"], "buy", "10.50", "2"),  # trades with bob's ask
                await order(server, tokens["bob"], "sell", "9.40", "1"),  # and with alice's bid
            ]
            assert [o["status"] for o in placed] == ["open", "filled", "filled"]
            for path in ("/api/book/snapshot?symbol=QTX-USD", "/api/markets", "/api/markets/QTX-USD/trades"):
                status, answer = await api_async("GET", f"{server.url}{path}")
                assert status == 200, (path, answer)
            for path in ("/api/orders", "/api/user/balances", "/api/trades/history"):
                status, answer = await api_async("GET", f"{server.url}{path}", token=tokens["alice"])
                assert status == 200, (path, answer)
            status, answer = await api_async("POST", f"{server.url}/api/auth/login", body=carol)
            assert status == 200 and answer["access"], answer
            assert await web_login(server, **carol) == 302, "the login form signs carol in (a redirect)"
            asked = time.monotonic()
            status, health = await api_async("GET", f"{server.url}/healthz")
            assert status == 503 and health["database"] == "ok", health
            assert health["channel_layer"] != "ok" and health["cache"] != "ok", "names what is down"
            assert time.monotonic() - asked < 3, "healthz answers within its timeout"
            for path in ("/", "/markets/QTX-USD/", "/portfolio/", "/accounts/login/"):
                status, html = await page_get(server, path, alice_cookie)
                assert status == 200 and "</html>" in html, (path, status)
            async with Client(f"{server.ws_url}/ws") as newcomer:  # even now, from the database
                assert same_book(await newcomer.subscribe_book(), await rest_snapshot(server))
            status, tape = await api_async("GET", f"{server.url}/api/markets/QTX-USD/trades")
            outage_trades = sorted(t["id"] for t in (tape["results"] if isinstance(tape, dict) else tape))
            assert len(outage_trades) == 2, tape

            await asyncio.sleep(max(0.0, OUTAGE - (time.monotonic() - down_at)))
            await asyncio.to_thread(restart, servers, redis)
            back_at = time.monotonic()
            # Live again: an order placed right away reaches both sockets within seconds, and
            # the socket's chain spans the outage (its first update carries what changed).
            await order(server, tokens["alice"], "buy", "9.30")
            fresh = await rest_snapshot(server)
            await book.follow(ws, fresh["seq"], timeout=HEAL_WITHIN + 5)
            assert same_book(book, fresh)
            assert Decimal("9.30") in book.sides["bids"] and Decimal("9.40") not in book.sides["bids"]
            while len([m for m in ws.seen if m["type"] == "trade"]) < len(outage_trades):
                await ws.until(of_type("trade"), timeout=5)
            trades = [m for m in ws.seen if m["type"] == "trade"]
            assert [t["id"] for t in trades] == outage_trades, "the outage's trades, from the tape, in order"
            frame = await page.until(lambda m: 'data-price="9.30"' in m.get("html", ""), 5)
            assert "9.40" not in book_prices(frame["html"]) and "10.50" in book_prices(frame["html"])

            # The hub's subscription is back within seconds (it says so once) ...
            while "channel layer back" not in server.log():
                assert time.monotonic() - back_at < HEAL_WITHIN, "the streams did not say they were back"
                await asyncio.sleep(0.05)
            healed_after = time.monotonic() - back_at
            # ... and carries changes again: the next one arrives at once, not at the next
            # audit of the database (seconds away while the layer is up).
            await order(server, tokens["alice"], "buy", "9.20")
            book.apply(await ws.until(of_type("book_update"), timeout=2.0))
            assert Decimal("9.20") in book.sides["bids"]
            status, health = await api_async("GET", f"{server.url}/healthz")
            assert status == 200 and health["channel_layer"] == health["cache"] == "ok", health
            async with Client(f"{server.ws_url}/ws") as late:
                late_book = await late.subscribe_book()
                assert late_book.seq == (await rest_snapshot(server))["seq"], "a newcomer starts from the database"
            return healed_after

    healed_after = asyncio.run(asyncio.wait_for(body(), 90))
    print(f"streams healed {healed_after:.2f}s after Redis came back")
    assert healed_after < HEAL_WITHIN
    log = servers.started[1].log()
    assert "Traceback" not in log, log[-3000:]
    # One line when the layer goes, one when it is back: not one per second, batch or socket.
    assert log.count("channel layer unreachable") == 1, log[-3000:]
    assert log.count("channel layer back") == 1, log[-3000:]
    assert " ERROR " not in log, log[-3000:]
