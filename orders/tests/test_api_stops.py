"""Stop orders through the REST API: placed pending, listed among open orders, amended,
cancelled, and refused in the one error shape when wrong.

alice and bob trade QTX-USD (tick 0.01); a trade at 10.00 is on the tape before each test.
"""

from decimal import Decimal

import pytest

from accounts.models import Balance
from orders.models import Order
from tests.api_support import *  # noqa: F403
from tests.api_support import STARTING_USD, assert_error

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def tape_at_10(as_alice, as_bob):
    place(as_bob, side="sell", type="limit", price="10.00", quantity="1.00")
    assert place(as_alice, side="buy", type="limit", price="10.00", quantity="1.00").status_code == 201


def place(client, **fields):
    order = {"symbol": "QTX-USD", "side": "buy", "quantity": "1.00", **fields}
    return client.post("/api/orders", order, format="json")


def usd_held(user):
    return Balance.objects.get(user=user, asset_id="USD").held


def test_a_stop_limit_answers_201_pending_with_its_stop_price(as_alice, alice):
    response = place(as_alice, type="stop_limit", stop_price="10.50", price="10.60", quantity="2.00")

    assert response.status_code == 201, response.json()
    body = response.json()
    order = body["order"]
    assert (order["type"], order["status"], order["time_in_force"]) == ("stop_limit", "pending", "GTC")
    assert (order["stop_price"], order["price"], order["triggered_at"]) == ("10.50000000", "10.60000000", None)
    assert body["fills"] == []
    # 2 x 10.60 = 21.20 + the 0.2% taker fee reserve, 0.0424.
    assert str(usd_held(alice)) == "21.24240000"


def test_a_stop_market_defaults_to_ioc_and_has_no_price(as_alice):
    order = place(as_alice, type="stop_market", side="sell", stop_price="9.50").json()["order"]
    assert (order["type"], order["time_in_force"], order["price"], order["status"]) == (
        "stop_market",
        "IOC",
        None,
        "pending",
    )


@pytest.mark.parametrize(
    ("fields", "field"),
    [
        ({"type": "stop_limit", "price": "10.60"}, "stop_price"),
        ({"type": "stop_market", "stop_price": "10.00"}, "stop_price"),  # the last trade is there already
        ({"type": "stop_market", "side": "sell", "stop_price": "10.20"}, "stop_price"),  # above the last trade
        ({"type": "stop_market", "stop_price": "10.505"}, "stop_price"),
        ({"type": "stop_market", "stop_price": "NaN"}, "stop_price"),
        ({"type": "stop_market", "stop_price": True}, "stop_price"),
        ({"type": "limit", "price": "10.00", "stop_price": "10.50"}, "stop_price"),
        ({"type": "stop_market", "stop_price": "10.50", "price": "10.60"}, "price"),
        ({"type": "stop_limit", "stop_price": "10.50", "price": "10.60", "post_only": True}, "post_only"),
        ({"type": "stop", "stop_price": "10.50"}, "type"),
    ],
)
def test_a_bad_stop_is_a_400_naming_its_field(as_alice, alice, fields, field):
    assert_error(place(as_alice, **fields), 400, field=field)
    assert not Order.objects.filter(user=alice, status="pending").exists()


def test_pending_stops_are_open_orders_and_cancel_releases_them(as_alice, alice):
    stop = place(as_alice, type="stop_market", stop_price="10.50").json()["order"]

    listed = as_alice.get("/api/orders/open").json()
    assert [o["id"] for o in listed["results"]] == [stop["id"]]
    assert as_alice.get("/api/orders?status=pending").json()["results"][0]["id"] == stop["id"]

    response = as_alice.delete(f"/api/orders/{stop['id']}")
    assert response.status_code == 200
    assert response.json()["status"] == "cancelled"
    assert usd_held(alice) == 0
    # All but the 10.00 + 0.02 taker fee of the trade on the tape.
    assert Balance.objects.get(user=alice, asset_id="USD").available == STARTING_USD - Decimal("10.02")


def test_a_pending_stop_is_amended_through_patch(as_alice):
    stop = place(as_alice, type="stop_limit", stop_price="10.50", price="10.60").json()["order"]

    response = as_alice.patch(f"/api/orders/{stop['id']}", {"stop_price": "10.70", "price": "10.80"}, format="json")

    assert response.status_code == 200, response.json()
    order = response.json()["order"]
    assert (order["stop_price"], order["price"], order["status"]) == ("10.70000000", "10.80000000", "pending")
    refused = as_alice.patch(f"/api/orders/{stop['id']}", {"stop_price": "9.90"}, format="json")
    assert_error(refused, 400, field="stop_price")


def test_a_stop_triggered_by_a_trade_shows_when(as_alice, as_bob):
    stop = place(as_alice, type="stop_market", stop_price="10.50").json()["order"]
    place(as_bob, side="sell", type="limit", price="10.50", quantity="2.00")
    place(as_bob, side="buy", type="limit", price="10.50", quantity="1.00")  # meets his own ask: no trade
    assert as_alice.get(f"/api/orders/{stop['id']}").json()["status"] == "pending"

    place(as_alice, side="buy", type="limit", price="10.50", quantity="1.00")

    order = as_alice.get(f"/api/orders/{stop['id']}").json()
    assert order["status"] == "filled"
    assert order["triggered_at"] is not None
    assert order["average_price"] == "10.50000000"


def test_the_schema_describes_stop_orders(as_alice):
    schema = as_alice.get("/api/schema/?format=json").json()
    components = schema["components"]["schemas"]
    assert "stop_price" in components["OrderPlaceInputRequest"]["properties"]
    assert "stop_price" in components["PatchedOrderAmendInputRequest"]["properties"]
    assert {"stop_price", "triggered_at"} <= set(components["Order"]["properties"])
    types = str(components)
    assert "stop_limit" in types and "stop_market" in types and "pending" in types
