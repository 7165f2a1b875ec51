"""Market integrity through /ws order entry (docs/API.md, "Market integrity"): the same
refusals, codes and words as REST, `stp` on order.place, `source` ws, and the socket still
answering after each refusal."""

from decimal import Decimal

import pytest
from channels.db import database_sync_to_async

from accounts.models import User
from marketdata.models import Market
from orders.controls import trading_disable
from orders.engine.caches import forget_markets
from orders.models import Order
from orders.selectors import reconcile
from tests.streams.stream_support import (  # noqa: F401  (fixtures)
    alice_fixture,
    bob_fixture,
    fast_streams_fixture,
    limit,
    market_fixture,
    run,
)
from tests.streams.test_ws_orders import BUY, Trader, async_token, on_socket, place

pytestmark = [pytest.mark.timeout(60)]


@database_sync_to_async
def rules(**values):
    Market.objects.filter(symbol="QTX-USD").update(**values)
    forget_markets()


@pytest.fixture(autouse=True)
def clean_books(market):
    yield
    assert reconcile() == []


def test_price_band_and_size_limits_are_refused_on_the_socket(alice, bob, market):
    async def body():
        await limit(bob, "sell", "10.00")
        await limit(alice, "buy", "10.00")
        await rules(price_band=Decimal("0.10"), max_order_quantity=Decimal("5"))
        async with Trader() as ws:
            await ws.auth(token=await async_token(alice))
            error = await ws.refused(
                "order.place", "PRICE_OUT_OF_BAND", "price", **on_socket({**BUY, "price": "11.50"})
            )
            assert "within 9.00 and 11.00 (10% around the reference 10.00)" in error["message"]
            await ws.refused("order.place", "ORDER_TOO_LARGE", "quantity", **on_socket({**BUY, "quantity": "6"}))
            order = (await place(ws))["order"]
            await ws.refused("order.amend", "PRICE_OUT_OF_BAND", "price", id=order["id"], price="8.00")
            await ws.refused("order.amend", "ORDER_TOO_LARGE", "quantity", id=order["id"], quantity="6")

    run(body)


def test_too_many_open_orders_and_the_kill_switch_on_the_socket(alice, market):
    async def body():
        await database_sync_to_async(User.objects.filter(pk=alice.pk).update)(max_open_orders=1)
        async with Trader() as ws:
            await ws.auth(token=await async_token(alice))
            order = (await place(ws))["order"]
            await ws.refused("order.place", "TOO_MANY_OPEN_ORDERS", **on_socket(BUY))
            operator = await database_sync_to_async(User.objects.create_user)(username="olivia", is_staff=True)
            result = await database_sync_to_async(trading_disable)(operator=operator, user=alice, reason="halt desk")
            assert [cancelled.pk for cancelled in result.cancelled] == [order["id"]]
            error = await ws.refused("order.place", "TRADING_DISABLED", **on_socket(BUY))
            assert "disabled" in error["message"]

    run(body)


def test_stp_is_taken_and_source_is_ws(alice, bob, market):
    async def body():
        mine = await limit(alice, "sell", "10.00")
        await limit(bob, "sell", "10.00")
        async with Trader() as ws:
            await ws.auth(token=await async_token(alice))
            result = await place(ws, stp="expire_maker")
            assert (result["order"]["stp"], result["order"]["source"]) == ("expire_maker", "ws")
            assert result["order"]["status"] == "filled"
            await ws.refused("order.place", "INVALID", "stp", **on_socket({**BUY, "stp": "nope"}))
        status = await database_sync_to_async(lambda: Order.objects.get(pk=mine.order.pk).status)()
        assert status == "cancelled"

    run(body)
