"""Batches over /ws (docs/API.md, "Batches"): `order.batch` and `order.cancel_batch`, each
order answered in its place exactly as POST and DELETE /api/orders/batch answer it."""

import pytest
from rest_framework.test import APIClient

from orders.models import Order, OrderSource
from tests.streams.stream_support import (  # noqa: F401  (fixtures)
    alice_fixture,
    bob_fixture,
    fast_streams_fixture,
    market_fixture,
    run,
)
from tests.streams.test_ws_orders import BUY, Trader, async_token, on_socket, token

pytestmark = [pytest.mark.timeout(60)]


class BatchTrader(Trader):
    async def answer(self, req_id):
        return await self.until(lambda m: m.get("req_id") == req_id and m["type"] in ("order.batch_result", "error"))


def test_a_batch_answers_each_order_in_its_place_as_rest_does(alice, market):
    orders = [on_socket(BUY), on_socket({**BUY, "price": "9.955"}), {**on_socket(BUY), "type": "limit"}]
    orders.append(on_socket({**BUY, "price": "9.00", "client_order_id": "w-1"}))

    async def body():
        async with BatchTrader() as ws:
            await ws.auth(token=await async_token(alice))
            answer = await ws.command("order.batch", orders=orders)
            assert answer["type"] == "order.batch_result", answer
            assert [result["status"] for result in answer["results"]] == [201, 400, 400, 201]
            assert answer["results"][1]["error"]["field"] == "price"
            assert answer["results"][2]["error"]["field"] == "type"  # the order's type is order_type here
            again = await ws.command("order.batch", orders=[orders[3]])
            assert again["results"][0]["status"] == 200
            assert again["results"][0]["order"] == answer["results"][3]["order"]
            ids = [answer["results"][at]["order"]["id"] for at in (0, 3)]
            cancelled = await ws.command("order.cancel_batch", ids=[*ids, ids[0]])
            assert [result["status"] for result in cancelled["results"]] == [200, 200, 409]
            await ws.refused("order.batch", "INVALID", field="orders", orders=[on_socket(BUY)] * 21)
            await ws.refused(
                "order.batch", "INVALID", field="orders", orders=[on_socket(BUY), on_socket({**BUY, "symbol": "B-USD"})]
            )
            await ws.refused("order.cancel_batch", "INVALID", field="ids", ids=[])

    run(body)
    assert Order.objects.filter(user=alice, source=OrderSource.WS).count() == 2


def test_a_batch_counts_one_order_per_order_against_the_rate_rest_shares(alice, market, settings):
    settings.REST_FRAMEWORK = {
        **settings.REST_FRAMEWORK,
        "DEFAULT_THROTTLE_RATES": {**settings.REST_FRAMEWORK["DEFAULT_THROTTLE_RATES"], "orders": "4/minute"},
    }

    async def body():
        async with BatchTrader() as ws:
            await ws.auth(token=await async_token(alice))
            first = await ws.command("order.batch", orders=[on_socket({**BUY, "price": f"9.0{n}"}) for n in range(3)])
            assert [result["status"] for result in first["results"]] == [201] * 3
            # REST's X-RateLimit-* figures, for a program to pace itself by.
            assert first["rate_limit"]["limit"] == 4 and first["rate_limit"]["remaining"] == 1
            assert 1 <= first["rate_limit"]["reset"] <= 60
            error = await ws.refused("order.batch", "THROTTLED", orders=[on_socket(BUY)] * 2)
            assert error["retry_after"] >= 1

    run(body)
    # The socket and REST spend one budget: 3 placed, and the refused batch's 2 counted too.
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {token(alice)}")
    answer = client.post("/api/orders", BUY, format="json")
    assert answer.status_code == 429 and answer.headers["X-RateLimit-Remaining"] == "0"
    assert Order.objects.filter(user=alice).count() == 3
