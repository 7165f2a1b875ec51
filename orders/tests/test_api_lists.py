"""Order lists through the REST API: an OCO placed, shown, cancelled as one; someone
else's list a 404; wrong input a 400 naming its field, never a 500.

alice and bob trade QTX-USD (tick 0.01); a trade at 10.00 is on the tape before each test.
"""

import pytest

from accounts.models import Balance
from orders.selectors import reconcile
from tests.api_support import *  # noqa: F403
from tests.api_support import assert_error

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def tape_at_10(as_alice, as_bob):
    as_bob.post(
        "/api/orders", {"symbol": "QTX-USD", "side": "sell", "price": "10.00", "quantity": "1.00"}, format="json"
    )
    as_alice.post(
        "/api/orders", {"symbol": "QTX-USD", "side": "buy", "price": "10.00", "quantity": "1.00"}, format="json"
    )
    yield
    assert reconcile() == []


def oco(client, **fields):
    body = {"symbol": "QTX-USD", "side": "buy", "quantity": "2.00", "price": "9.00", "stop_price": "11.00", **fields}
    return client.post("/api/orders/oco", body, format="json")


def by_leg(orders):
    """(limit, stop) of an OCO's orders."""
    legs = {order["leg"]: order for order in orders}
    return legs["limit"], legs["stop"]


def test_an_oco_is_placed_shown_and_cancelled_as_one(as_alice, alice):
    response = oco(as_alice, stop_limit_price="11.20", client_order_id="my-oco")

    assert response.status_code == 201, response.json()
    body = response.json()
    placed = body["list"]
    assert (placed["kind"], placed["status"], placed["symbol"]) == ("oco", "active", "QTX-USD")
    limit, stop = by_leg(body["orders"])
    assert (limit["leg"], limit["type"], limit["status"], limit["client_order_id"]) == (
        "limit",
        "limit",
        "open",
        "my-oco",
    )
    assert (stop["leg"], stop["type"], stop["status"], stop["price"]) == (
        "stop",
        "stop_limit",
        "pending",
        "11.20000000",
    )
    assert limit["list_id"] == stop["list_id"] == placed["id"]
    assert body["fills"] == []
    # One hold, the larger need: 2 x 11.20 + 0.2% = 22.4448.
    assert str(Balance.objects.get(user=alice, asset_id="USD").held) == "22.44480000"
    # Repeated, the original list, 200.
    again = oco(as_alice, stop_limit_price="11.20", client_order_id="my-oco")
    assert again.status_code == 200 and again.json()["list"]["id"] == placed["id"]

    shown = as_alice.get(f"/api/orders/lists/{placed['id']}").json()
    assert [order["id"] for order in shown["orders"]] == sorted([limit["id"], stop["id"]])
    assert as_alice.get(f"/api/orders/{limit['id']}").json()["list_id"] == placed["id"]

    cancelled = as_alice.delete(f"/api/orders/lists/{placed['id']}")
    assert cancelled.status_code == 200
    assert cancelled.json()["status"] == "done"
    assert [order["status"] for order in cancelled.json()["orders"]] == ["cancelled", "cancelled"]
    assert Balance.objects.get(user=alice, asset_id="USD").held == 0
    assert_error(as_alice.delete(f"/api/orders/lists/{placed['id']}"), 409, "ORDER_NOT_OPEN")


def test_cancelling_one_leg_cancels_the_other(as_alice):
    body = oco(as_alice).json()
    limit, stop = by_leg(body["orders"])
    assert as_alice.delete(f"/api/orders/{limit['id']}").json()["status"] == "cancelled"
    assert as_alice.get(f"/api/orders/{stop['id']}").json()["status"] == "cancelled"
    assert as_alice.get(f"/api/orders/lists/{body['list']['id']}").json()["status"] == "done"
    assert_error(as_alice.patch(f"/api/orders/{limit['id']}", {"price": "9.10"}, format="json"), 409, "ORDER_NOT_OPEN")


def test_someone_elses_list_is_a_404(as_alice, as_bob):
    list_id = oco(as_alice).json()["list"]["id"]
    assert_error(as_bob.get(f"/api/orders/lists/{list_id}"), 404, "NOT_FOUND")
    assert_error(as_bob.delete(f"/api/orders/lists/{list_id}"), 404, "NOT_FOUND")
    assert_error(as_bob.get("/api/orders/lists/99999999999999999999"), 404)
    assert as_alice.get(f"/api/orders/lists/{list_id}").status_code == 200


def test_an_order_of_a_list_is_not_amended(as_alice):
    limit, _ = by_leg(oco(as_alice).json()["orders"])
    assert_error(as_alice.patch(f"/api/orders/{limit['id']}", {"price": "9.10"}, format="json"), 400, "INVALID", "id")


@pytest.mark.parametrize(
    ("fields", "status", "code", "field"),
    [
        ({"price": "10.00"}, 400, "INVALID", "price"),  # at the last trade: it would act at once
        ({"stop_price": "9.50"}, 400, "INVALID", "stop_price"),
        ({"side": "sell"}, 400, "INVALID", "price"),  # a sell's limit must be above the last trade
        ({"stop_limit_price": "11.001"}, 400, "INVALID", "stop_limit_price"),
        ({"stop_limit_price": "NaN"}, 400, "INVALID", "stop_limit_price"),
        ({"quantity": "-1"}, 400, "INVALID", "quantity"),
        ({"quantity": "100000.00"}, 400, "INSUFFICIENT_FUNDS", "quantity"),
        ({"type": "limit"}, 400, "INVALID", "type"),  # not a field of an OCO
        ({"symbol": "NOPE-USD"}, 400, None, "symbol"),
        ({"price": None}, 400, "INVALID", "price"),
    ],
)
def test_bad_ocos_are_refused_with_their_field(as_alice, fields, status, code, field):
    assert_error(oco(as_alice, **fields), status, code, field)


def test_an_oco_needs_a_body_of_its_fields(as_alice):
    assert_error(as_alice.post("/api/orders/oco", [], format="json"), 400)
    assert_error(as_alice.post("/api/orders/oco", {"symbol": "QTX-USD"}, format="json"), 400, "INVALID")


def bracket(client, entry=None, take_profit=None, stop_loss=None):
    body = {
        "entry": {"symbol": "QTX-USD", "side": "buy", "quantity": "2.00", "price": "10.00", **(entry or {})},
        "take_profit": {"price": "11.00", **(take_profit or {})},
        "stop_loss": {"stop_price": "9.50", **(stop_loss or {})},
    }
    return client.post("/api/orders/bracket", body, format="json")


def test_a_bracket_places_its_exits_as_its_entry_fills(as_alice, as_bob):
    response = bracket(as_alice, stop_loss={"price": "9.40"})
    assert response.status_code == 201, response.json()
    body = response.json()
    assert (body["list"]["kind"], body["list"]["take_profit_price"], body["list"]["stop_loss_price"]) == (
        "bracket",
        "11.00000000",
        "9.40000000",
    )
    [entry] = body["orders"]
    assert (entry["leg"], entry["status"]) == ("entry", "open")

    as_bob.post(
        "/api/orders", {"symbol": "QTX-USD", "side": "sell", "price": "10.00", "quantity": "0.50"}, format="json"
    )

    shown = as_alice.get(f"/api/orders/lists/{body['list']['id']}").json()
    legs = {order["leg"]: order for order in shown["orders"]}
    assert (legs["take_profit"]["side"], legs["take_profit"]["quantity"], legs["take_profit"]["status"]) == (
        "sell",
        "0.50000000",
        "open",
    )
    assert (legs["stop_loss"]["type"], legs["stop_loss"]["price"], legs["stop_loss"]["status"]) == (
        "stop_limit",
        "9.40000000",
        "pending",
    )
    assert legs["entry"]["status"] == "partially_filled"
    cancelled = as_alice.delete(f"/api/orders/lists/{body['list']['id']}").json()
    assert {order["status"] for order in cancelled["orders"]} == {"cancelled"}


@pytest.mark.parametrize(
    ("changes", "field"),
    [
        ({"entry": {"side": "sell"}}, "entry.side"),
        ({"entry": {"price": "10.001"}}, "entry.price"),
        ({"entry": {"time_in_force": "GTD"}}, "entry.time_in_force"),
        ({"entry": {"type": "market"}}, "entry.type"),
        ({"take_profit": {"price": "9.00"}}, "take_profit.price"),
        ({"stop_loss": {"stop_price": "10.50"}}, "stop_loss.stop_price"),
        ({"stop_loss": {"price": "-1"}}, "stop_loss.price"),
        ({"entry": {"quantity": "100000.00"}}, "quantity"),
    ],
)
def test_bad_brackets_are_refused_with_their_field(as_alice, changes, field):
    error = assert_error(bracket(as_alice, **changes), 400)
    assert error["field"] == field, error
