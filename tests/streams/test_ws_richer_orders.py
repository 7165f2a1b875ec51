"""GTD, iceberg and trailing-stop orders over /ws order entry: the same fields as the REST
body (docs/API.md, "Order entry"), the order type as `order_type`."""

import pytest

from tests.streams.stream_support import (  # noqa: F401  (fixtures)
    alice_fixture,
    bob_fixture,
    fast_streams_fixture,
    limit,
    market_fixture,
    run,
)
from tests.streams.test_ws_orders import Trader, async_token, place

pytestmark = [pytest.mark.timeout(60)]


def test_a_gtd_order_over_ws_carries_its_expire_at_and_a_bad_one_is_refused(alice, market):
    async def body():
        async with Trader() as ws:
            await ws.auth(token=await async_token(alice))
            result = await place(ws, time_in_force="GTD", expire_at="2099-12-31T18:00:00Z")
            assert result["type"] == "order.result", result
            assert (result["order"]["time_in_force"], result["order"]["expire_at"]) == (
                "GTD",
                "2099-12-31T18:00:00+00:00",
            )
            await ws.refused(
                "order.place",
                "INVALID",
                "expire_at",
                symbol="QTX-USD",
                side="buy",
                price="10.00",
                quantity="1.00",
                time_in_force="GTD",
            )

    run(body)


def test_an_iceberg_over_ws_shows_its_owner_the_whole_order(alice, market):
    async def body():
        async with Trader() as ws:
            await ws.auth(token=await async_token(alice))
            result = await place(ws, side="sell", quantity="5.00", display_quantity="1.00")
            assert result["type"] == "order.result", result
            order = result["order"]
            assert (order["remaining_quantity"], order["display_quantity"]) == ("5.00000000", "1.00000000")
            await ws.refused(
                "order.place",
                "INVALID",
                "display_quantity",
                symbol="QTX-USD",
                side="sell",
                price="10.00",
                quantity="1.00",
                display_quantity="2.00",
            )

    run(body)


def test_a_trailing_stop_over_ws(alice, bob, market):
    async def body():
        await limit(bob, "sell", "10.00", "1")
        await limit(alice, "buy", "10.00", "1")  # the tape at 10.00
        async with Trader() as ws:
            await ws.auth(token=await async_token(alice))
            result = await place(
                ws, side="sell", type="trailing_stop", price=None, trailing_delta="0.50", limit_offset="0.10"
            )
            assert result["type"] == "order.result", result
            order = result["order"]
            assert (order["status"], order["stop_price"], order["limit_offset"]) == (
                "pending",
                "9.50000000",
                "0.10000000",
            )

    run(body)
