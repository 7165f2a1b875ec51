"""Stop orders over /ws: placed, amended and cancelled with the same commands and rules as
REST, and followed on the private `orders` channel from pending to triggered."""

import pytest
from channels.db import database_sync_to_async

from orders.services import order_place
from tests.streams.stream_support import (  # noqa: F401  (fixtures)
    ORIGIN,
    alice_fixture,
    bob_fixture,
    fast_streams_fixture,
    market_fixture,
    of_type,
    run,
    session_cookie,
    trader,
)
from tests.streams.test_ws_orders import Trader, async_token, place

pytestmark = [pytest.mark.timeout(60)]


@pytest.fixture
def tape_at_10(alice, bob):
    order_place(user=bob, market="QTX-USD", side="sell", price="10.00", quantity="1.00")
    order_place(user=alice, market="QTX-USD", side="buy", price="10.00", quantity="1.00")


def test_a_stop_is_placed_amended_and_cancelled_over_the_socket(alice, tape_at_10):
    async def body():
        async with Trader() as ws:
            await ws.auth(token=await async_token(alice))
            stop = (await place(ws, type="stop_limit", stop_price="10.50", price="10.60"))["order"]
            assert (stop["type"], stop["status"], stop["stop_price"]) == ("stop_limit", "pending", "10.50000000")

            amended = await ws.command("order.amend", id=stop["id"], stop_price="10.70")
            assert (amended["order"]["stop_price"], amended["order"]["status"]) == ("10.70000000", "pending")
            await ws.refused("order.amend", "INVALID", field="stop_price", id=stop["id"], stop_price="9.90")
            await ws.refused("order.place", "INVALID", field="stop_price", **_on_socket(stop_price="10.00"))

            cancelled = await ws.command("order.cancel", id=stop["id"])
            assert cancelled["order"]["status"] == "cancelled"

    run(body)


def _on_socket(**fields):
    return {"symbol": "QTX-USD", "side": "buy", "order_type": "stop_market", "quantity": "1.00", **fields}


def test_the_private_stream_shows_a_stop_pending_then_triggered(alice, bob, tape_at_10):
    cookie = session_cookie(alice)

    async def body():
        async with Trader(headers=[ORIGIN, cookie]) as ws:
            await ws.send({"type": "subscribe", "channels": ["orders"]})
            await ws.until(of_type("subscribed"))
            stop = (await ws.command("order.place", **_on_socket(stop_price="10.50")))["order"]
            mine = lambda m: m["type"] == "order" and m["id"] == stop["id"]  # noqa: E731
            if not any(mine(m) for m in ws.seen):
                await ws.until(mine)
            pending = next(m for m in ws.seen if mine(m))
            assert (pending["status"], pending["order_type"], pending["triggered_at"]) == (
                "pending",
                "stop_market",
                None,
            )

            await _bob_prints(bob, "10.50")

            triggered = await ws.until(lambda m: m["type"] == "order" and m["id"] == stop["id"] and m["triggered_at"])
            assert triggered["status"] == "filled"
            assert triggered["stop_price"] == "10.50000000"

    run(body)


@database_sync_to_async
def _bob_prints(bob, price):
    order_place(user=bob, market="QTX-USD", side="sell", price=price, quantity="2.00")
    # carol takes one: the print at `price` triggers alice's stop, which takes the other.
    carol = trader("carol", None)
    order_place(user=carol, market="QTX-USD", side="buy", price=price, quantity="1.00")
