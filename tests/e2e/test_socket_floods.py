"""Sockets that send too fast, against a real daphne: each is closed with a code daphne may
send (4008), the server logs no traceback, and the process holds as many sockets after as
before (the consumer left its hub)."""

import asyncio
import json
import time

import pytest
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed

from quantumtrades.core.websocket import CloseCode
from tests.streams.stream_support import session_cookie

from .conftest import NEEDS_SERVERS, api_async

pytestmark = [*NEEDS_SERVERS]


async def open_sockets(server) -> int:
    status, health = await api_async("GET", f"{server.url}/healthz")
    assert status == 200, health
    return health["sockets"]


async def until_sockets(server, expected, timeout=10.0) -> int:
    deadline = time.monotonic() + timeout
    while (count := await open_sockets(server)) != expected and time.monotonic() < deadline:
        await asyncio.sleep(0.1)
    return count


async def flood(url, frames, *, origin=None, headers=None) -> int:
    """Send `frames` pings back to back; the close code the server ends with."""
    async with connect(url, origin=origin, additional_headers=headers, open_timeout=10) as ws:
        try:
            for _ in range(frames):
                await ws.send(json.dumps({"type": "ping"}))
            while True:  # read what the server says until it closes
                await asyncio.wait_for(ws.recv(), 10)
        except ConnectionClosed:
            pass
        return ws.close_code


@pytest.mark.parametrize(
    ("path", "frames", "signed_in"),
    [("/ws", 90, False), ("/ws/live/QTX-USD/", 40, False), ("/ws/live/", 40, False), ("/ws/live/me/", 40, True)],
)
def test_a_socket_that_floods_is_closed_cleanly_and_leaves_the_hub(servers, alice, path, frames, signed_in):
    server = servers.daphne()
    cookie = session_cookie(alice) if signed_in else None
    headers = {"Cookie": cookie[1].decode()} if cookie else None
    origin = None if path == "/ws" else server.origin

    async def body():
        async with connect(f"{server.ws_url}/ws", open_timeout=10) as bystander:
            await bystander.send(json.dumps({"type": "subscribe", "channels": ["book"], "symbols": ["QTX-USD"]}))
            await asyncio.wait_for(bystander.recv(), 10)
            before = await until_sockets(server, 1)
            codes = [await flood(f"{server.ws_url}{path}", frames, origin=origin, headers=headers) for _ in range(3)]
            after = await until_sockets(server, before)
            # The bystander on the same process never noticed.
            await bystander.send(json.dumps({"type": "ping", "id": 1}))
            while json.loads(await asyncio.wait_for(bystander.recv(), 10)).get("type") != "pong":
                pass
        return before, codes, after

    before, codes, after = asyncio.run(asyncio.wait_for(body(), 60))

    assert codes == [CloseCode.RATE_LIMITED] * 3, server.log()[-3000:]
    assert after == before == 1
    log = server.log()
    assert "Traceback" not in log and "invalid close code" not in log, log[-3000:]
