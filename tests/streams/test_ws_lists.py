"""Order lists over /ws: an OCO placed and its list cancelled with the same rules and
payloads as REST, and its legs followed on the private `orders` channel, each with its
list_id."""

import pytest

from orders.services import order_place
from tests.streams.stream_support import (  # noqa: F401  (fixtures)
    ORIGIN,
    alice_fixture,
    bob_fixture,
    fast_streams_fixture,
    market_fixture,
    run,
    session_cookie,
)
from tests.streams.test_ws_orders import Trader, async_token

pytestmark = [pytest.mark.timeout(60)]

OCO = {"symbol": "QTX-USD", "side": "sell", "quantity": "1.00", "price": "11.00", "stop_price": "9.50"}


@pytest.fixture
def tape_at_10(alice, bob):
    order_place(user=bob, market="QTX-USD", side="sell", price="10.00", quantity="1.00")
    order_place(user=alice, market="QTX-USD", side="buy", price="10.00", quantity="1.00")


def test_an_oco_is_placed_streamed_and_cancelled_over_the_socket(alice, tape_at_10):
    cookie = session_cookie(alice)

    async def body():
        async with Trader(headers=[ORIGIN, cookie]) as ws:
            await ws.send({"type": "subscribe", "channels": ["orders"]})
            await ws.until(lambda m: m["type"] == "subscribed")
            placed = await ws.command("order.oco", **OCO, stop_limit_price="9.40")
            assert placed["type"] == "order.result" and placed["created"] is True
            list_id = placed["list"]["id"]
            assert {(o["leg"], o["status"], o["list_id"]) for o in placed["orders"]} == {
                ("limit", "open", list_id),
                ("stop", "pending", list_id),
            }
            # The private stream renders each leg with its list.
            ids = {o["id"] for o in placed["orders"]}
            streamed = lambda m: m["type"] == "order" and m["id"] in ids  # noqa: E731
            while len({m["id"] for m in ws.seen if streamed(m)}) < 2:
                await ws.until(streamed)
            assert {m["list_id"] for m in ws.seen if streamed(m)} == {list_id}

            await ws.refused("order.oco", "INVALID", field="stop_price", **{**OCO, "stop_price": "10.00"})
            await ws.refused("order.oco", "INVALID", field="order_type", **OCO, order_type="limit")
            await ws.refused("order.cancel_list", "INVALID", field="id", id="1")

            cancelled = await ws.command("order.cancel_list", id=list_id)
            assert cancelled["list"]["status"] == "done"
            assert {o["status"] for o in cancelled["orders"]} == {"cancelled"}
            await ws.refused("order.cancel_list", "NOT_FOUND", id=list_id + 1000)

    run(body)


def test_a_bracket_is_placed_over_the_socket(alice, tape_at_10):
    async def body():
        async with Trader() as ws:
            await ws.auth(token=await async_token(alice))
            placed = await ws.command(
                "order.bracket",
                entry={"symbol": "QTX-USD", "side": "buy", "quantity": "1.00", "price": "9.90"},
                take_profit={"price": "11.00"},
                stop_loss={"stop_price": "9.50"},
            )
            assert placed["type"] == "order.result" and placed["list"]["kind"] == "bracket"
            assert [o["leg"] for o in placed["orders"]] == ["entry"]
            await ws.refused(
                "order.bracket",
                "INVALID",
                field="take_profit.price",
                entry={"symbol": "QTX-USD", "side": "buy", "quantity": "1.00", "price": "9.90"},
                take_profit={"price": "9.00"},
                stop_loss={"stop_price": "9.50"},
            )

    run(body)
