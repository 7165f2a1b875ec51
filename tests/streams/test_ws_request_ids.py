"""A /ws order command logs with an id of its own (docs/OPERATIONS.md, "Logs"): the socket's
handshake id (its X-Request-ID, or a made one) and the message's number on the socket."""

import pytest

from tests.streams.stream_support import (  # noqa: F401  (fixtures)
    alice_fixture,
    fast_streams_fixture,
    market_fixture,
    run,
)
from tests.streams.test_ws_orders import Trader, async_token, place
from tests.test_request_logs import engine_lines_fixture  # noqa: F401  (fixture)

pytestmark = [pytest.mark.timeout(60)]


def test_a_socket_command_logs_with_its_messages_id(alice, engine_lines):
    placed = []

    async def body():
        async with Trader(headers=[(b"x-request-id", b"sock-1")]) as ws:
            await ws.auth(token=await async_token(alice))
            placed.append((await place(ws))["order"]["id"])

    run(body)
    [order_id] = placed
    [line] = [line for line in engine_lines() if line.get("order") == order_id]
    # The handshake's id, then the message's number on the socket: auth was 1, the order 2.
    assert line["request_id"] == "sock-1.2" and line["user"] == alice.pk
