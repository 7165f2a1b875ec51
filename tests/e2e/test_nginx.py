"""Serving beyond one process: Debian's nginx with the project's site (docker/nginx.conf) in
front of processes that share PostgreSQL and Redis, as docker compose runs them: HTTP on two
uvicorn processes, WebSockets under /ws on two daphne processes. Every wait is bounded;
every process is stopped by PID."""

import http.client
import json
import time

import pytest
from django.core.cache import cache

from tests.streams.stream_support import of_type

from .conftest import NEEDS_SERVERS
from .servers import nginx_path
from .test_live_streams import Client, order, rest_snapshot, run, same_book, token

pytestmark = [
    *NEEDS_SERVERS,
    pytest.mark.skipif(not nginx_path(), reason="needs Debian's nginx (apt-get install nginx)"),
]


def behind_proxy(servers, count=2):
    """`count` uvicorn processes for HTTP and `count` daphnes for /ws, told that one proxy
    stands in front of them, and nginx in front: (web processes, stream processes, nginx)."""
    web = [servers.app_server("uvicorn", NUM_PROXIES="1") for _ in range(count)]
    streams = [servers.daphne(NUM_PROXIES="1") for _ in range(count)]
    return web, streams, servers.nginx(web, streams)


def test_rest_and_both_kinds_of_socket_work_through_the_proxy(servers, alice, bob):
    (first, _), (_, second), proxy = behind_proxy(servers)
    alice_token, bob_token = token(alice), token(bob)

    async def body():
        async with (
            Client(f"{proxy.ws_url}/ws") as program,
            Client(f"{second.ws_url}/ws") as direct,
            Client(f"{proxy.ws_url}/ws/live/QTX-USD/", origin=proxy.url) as page,
        ):
            books = [await program.subscribe_book(), await direct.subscribe_book()]
            assert 'id="book"' in (await page.receive())["html"]
            # One order through the proxy, one straight into a web process: both reach the
            # sockets of the stream processes, the one the proxy opened (on either) and the
            # one opened on the second directly.
            await order(proxy, bob_token, "sell", "10.50", "2")
            await order(first, alice_token, "buy", "10.50", "1")
            fresh = await rest_snapshot(proxy)
            for ws, book in zip((program, direct), books, strict=True):
                await book.follow(ws, fresh["seq"])
                assert same_book(book, fresh)
                trades = [m for m in ws.seen if m["type"] == "trade"] or [await ws.until(of_type("trade"))]
                assert [t["price"] for t in trades] == ["10.50000000"]
            await page.until(lambda m: 'data-price="10.50"' in m.get("html", "") and 'id="book"' in m["html"])

    run(body)


def test_requests_through_the_proxy_spread_over_both_processes(servers, alice):
    web, streams, proxy = behind_proxy(servers)
    alice_token = token(alice)
    connection = http.client.HTTPConnection("127.0.0.1", proxy.port, timeout=10)
    for _ in range(20):
        connection.request("GET", "/api/orders/open", headers={"Authorization": f"Bearer {alice_token}"})
        response = connection.getresponse()
        assert response.status == 200, response.read()
        response.read()
    # nginx takes turns over its upstreams: each web process answered some (uvicorn's access
    # log), and no request went to a stream process.
    answered = [process.log().count('"GET /api/orders/open HTTP/1.1" 200') for process in web]
    assert sum(answered) == 20 and min(answered) > 0, answered
    assert not any("/api/orders/open" in process.log() for process in streams)


def test_the_throttles_see_the_client_address_the_proxy_saw(servers):
    _, _, proxy = behind_proxy(servers, count=1)
    # The client connects from another loopback address and claims to be someone else.
    connection = http.client.HTTPConnection("127.0.0.1", proxy.port, timeout=10, source_address=("127.0.0.5", 0))
    connection.request("GET", "/api/markets", headers={"X-Forwarded-For": "6.6.6.6"})
    response = connection.getresponse()
    assert response.status == 200
    assert [m["symbol"] for m in json.loads(response.read())] == ["QTX-USD"]

    window = int(time.time() // 60)
    counted = {
        address: cache.get(f"throttle:anon:{address}:{window}") or cache.get(f"throttle:anon:{address}:{window - 1}")
        for address in ("127.0.0.5", "6.6.6.6", "127.0.0.1")
    }
    assert counted == {"127.0.0.5": 1, "6.6.6.6": None, "127.0.0.1": None}
