"""GTD, iceberg and trailing-stop orders through the REST API: the body's fields, the
answers, and the refusals in the one error shape (docs/API.md, "Orders").

alice and bob trade QTX-USD (tick 0.01, lot 0.01).
"""

from datetime import timedelta
from decimal import Decimal as D

import pytest
from django.utils import timezone

from orders.models import Order
from tests.api_support import *  # noqa: F403
from tests.api_support import assert_error

pytestmark = pytest.mark.django_db


def place(client, **fields):
    order = {"symbol": "QTX-USD", "side": "buy", "type": "limit", "price": "10.00", "quantity": "1.00", **fields}
    return client.post("/api/orders", order, format="json")


def test_a_gtd_order_answers_201_with_its_expire_at(as_alice):
    response = place(as_alice, time_in_force="GTD", expire_at="2099-12-31T18:00:00+01:00")

    assert response.status_code == 201, response.json()
    order = response.json()["order"]
    assert (order["time_in_force"], order["status"]) == ("GTD", "open")
    assert order["expire_at"] == "2099-12-31T17:00:00+00:00"


@pytest.mark.parametrize(
    ("fields", "field"),
    [
        ({"time_in_force": "GTD"}, "expire_at"),
        ({"time_in_force": "GTD", "expire_at": "soon"}, "expire_at"),
        ({"time_in_force": "GTD", "expire_at": 4102444800}, "expire_at"),
        ({"time_in_force": "GTD", "expire_at": "9999-12-31T23:59:59-01:00"}, "expire_at"),
        ({"expire_at": "2099-12-31T18:00:00Z"}, "expire_at"),
        (
            {"type": "market", "price": None, "time_in_force": "GTD", "expire_at": "2099-12-31T18:00:00Z"},
            "time_in_force",
        ),
    ],
)
def test_a_bad_gtd_order_is_a_400_naming_its_field(as_alice, fields, field):
    assert_error(place(as_alice, **fields), 400, "INVALID", field)
    assert not Order.objects.exists()


def test_a_gtd_order_too_soon_is_refused(as_alice):
    soon = (timezone.now() + timedelta(seconds=2)).isoformat()

    error = assert_error(place(as_alice, time_in_force="GTD", expire_at=soon), 400, "INVALID", "expire_at")

    assert "at least 5 seconds ahead" in error["message"]


def test_an_iceberg_answers_201_whole_to_its_owner_and_the_snapshot_shows_its_slice(as_alice, anon):
    response = place(as_alice, side="sell", quantity="5.00", display_quantity="1.00")

    assert response.status_code == 201, response.json()
    order = response.json()["order"]
    assert (order["quantity"], order["remaining_quantity"], order["display_quantity"]) == (
        "5.00000000",
        "5.00000000",
        "1.00000000",
    )
    snapshot = anon.get("/api/book/snapshot", {"symbol": "QTX-USD"}).json()
    assert [[D(price), D(quantity)] for price, quantity in snapshot["asks"]] == [[D("10"), D("1")]]
    mine = as_alice.get(f"/api/orders/{order['id']}").json()
    assert (mine["remaining_quantity"], mine["display_quantity"]) == ("5.00000000", "1.00000000")


@pytest.mark.parametrize(
    "fields",
    [
        {"display_quantity": "0.005"},
        {"display_quantity": "2.00"},
        {"display_quantity": "1.00", "time_in_force": "IOC"},
        {"display_quantity": "-1"},
        {"display_quantity": True},
    ],
)
def test_a_bad_iceberg_is_a_400_naming_display_quantity(as_alice, fields):
    assert_error(place(as_alice, **fields), 400, "INVALID", "display_quantity")
    assert not Order.objects.exists()


def test_a_trailing_stop_answers_201_pending_with_its_stop_and_distance(as_alice, as_bob):
    place(as_bob, side="sell", price="10.00", quantity="1.00")
    assert place(as_alice, price="10.00", quantity="1.00").status_code == 201  # the tape at 10.00

    response = place(as_alice, side="sell", type="trailing_stop", price=None, trailing_percent="2.5")

    assert response.status_code == 201, response.json()
    order = response.json()["order"]
    assert (order["type"], order["status"], order["time_in_force"]) == ("trailing_stop", "pending", "IOC")
    assert (order["stop_price"], order["trailing_percent"], order["trailing_delta"]) == ("9.75000000", "2.5", None)


@pytest.mark.parametrize(
    ("fields", "field"),
    [
        ({"trailing_delta": "0.10", "trailing_percent": "1"}, "trailing_delta"),
        ({"trailing_percent": "51"}, "trailing_percent"),
        ({"trailing_delta": "abc"}, "trailing_delta"),
        ({"trailing_delta": "0.10", "limit_offset": "-1"}, "limit_offset"),
        ({"type": "limit", "trailing_delta": "0.10"}, "trailing_delta"),
    ],
)
def test_a_bad_trailing_stop_is_a_400_naming_its_field(as_alice, fields, field):
    body = {"type": "trailing_stop", "price": None, **fields}
    if body["type"] == "limit":
        body["price"] = "10.00"
    assert_error(place(as_alice, **body), 400, "INVALID", field)
    assert not Order.objects.exists()
