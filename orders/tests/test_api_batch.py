"""Batches: up to 20 orders placed, or cancelled, in one request, each answered in its place.

alice lays a ladder of bids on QTX-USD in one request, as a market maker's bot would.
"""

from decimal import Decimal

import pytest
from django.test import override_settings

from orders.engine import command as engine_command
from orders.models import Order, OrderStatus
from tests.api_support import *  # noqa: F403
from tests.api_support import STARTING_USD, assert_error, balances_of, client_for

pytestmark = pytest.mark.django_db

D = Decimal


def bid(price, quantity="1.00", **fields):
    return {"symbol": "QTX-USD", "side": "buy", "price": price, "quantity": quantity, **fields}


def place_batch(client, orders):
    return client.post("/api/orders/batch", {"orders": orders}, format="json")


@pytest.fixture
def market_locks(monkeypatch):
    """How many times a command took the book lock (the market row's SELECT ... FOR UPDATE)."""
    taken = []
    lock = engine_command.market_lock

    def counted(**kwargs):
        taken.append(kwargs["market_id"])
        return lock(**kwargs)

    monkeypatch.setattr(engine_command, "market_lock", counted)
    return taken


def test_a_bad_order_among_good_ones_is_answered_in_its_place_and_the_good_ones_rest(as_alice, alice, market_locks):
    orders = [
        bid("10.00", client_order_id="ladder-1"),
        bid("9.955"),  # off the tick: refused before the book
        bid("9.90", quantity="2.00"),
        bid("9.80", quantity="100000.00"),  # more than alice has: refused under the book lock
        bid("9.70"),
    ]
    response = place_batch(as_alice, orders)

    assert response.status_code == 200, response.content
    results = response.json()["results"]
    assert [result["status"] for result in results] == [201, 400, 201, 400, 201]
    assert results[1]["error"]["field"] == "price"
    assert results[3]["error"]["code"] == "INSUFFICIENT_FUNDS"
    assert [results[at]["order"]["price"] for at in (0, 2, 4)] == ["10.00000000", "9.90000000", "9.70000000"]
    assert all(results[at]["order"]["status"] == "open" and results[at]["fills"] == [] for at in (0, 2, 4))
    resting = Order.objects.filter(user=alice, status=OrderStatus.OPEN).order_by("-price")
    assert [order.price for order in resting] == [D("10"), D("9.9"), D("9.7")]
    # Held exactly what the three that rest need (10 + 19.80 + 9.70, and the taker fee on each).
    held = D("39.50") * (1 + resting[0].market.taker_fee)
    assert balances_of(alice)["USD"] == (STARTING_USD - held, held)
    # The book lock taken by the first order and kept; taken again once after the refusal
    # under it, whose rollback may have taken the lock with it (the first order's stands).
    assert len(market_locks) == 2
    # The book's sequence moved once per order that stands.
    resting[0].market.refresh_from_db()
    assert resting[0].market.book_seq == 3

    again = place_batch(as_alice, [bid("10.00", client_order_id="ladder-1"), bid("9.60")])
    assert [result["status"] for result in again.json()["results"]] == [200, 201]
    assert again.json()["results"][0]["order"]["id"] == results[0]["order"]["id"]


def test_the_lock_is_taken_once_for_a_batch_of_twenty(as_alice, alice, market_locks):
    response = place_batch(as_alice, [bid(f"{9 + n / 100:.2f}") for n in range(20)])

    assert [result["status"] for result in response.json()["results"]] == [201] * 20
    assert len(market_locks) == 1
    assert Order.objects.filter(user=alice, status=OrderStatus.OPEN).count() == 20


def test_orders_trade_with_each_other_and_the_book_in_the_order_given(as_alice, as_bob, alice, bob):
    assert place_batch(as_bob, [{**bid("10.00"), "side": "sell"}]).status_code == 200
    response = place_batch(as_alice, [bid("10.00", quantity="0.40"), bid("10.00", quantity="1.00")])

    first, second = response.json()["results"]
    assert first["order"]["status"] == "filled" and len(first["fills"]) == 1
    assert second["order"]["status"] == "partially_filled" and second["fills"][0]["quantity"] == "0.60000000"


@pytest.mark.parametrize(
    ("orders", "field"),
    [
        ([bid("10.00"), {**bid("10.00"), "symbol": "BTC-USD"}], "orders"),
        ([bid("10.00")] * 21, "orders"),
        ([], "orders"),
        ([{**bid("10.00"), "symbol": "NOPE-USD"}], "symbol"),
    ],
    ids=["two markets", "21 orders", "none", "unknown market"],
)
def test_a_batch_that_is_not_1_to_20_orders_of_one_market_is_refused_whole(as_alice, alice, orders, field):
    assert_error(place_batch(as_alice, orders), 400, code="INVALID", field=field)
    assert not Order.objects.filter(user=alice).exists()


def test_a_batch_body_is_strict(as_alice, alice):
    assert_error(as_alice.post("/api/orders/batch", {"orders": "x"}, format="json"), 400, field="orders")
    assert_error(as_alice.post("/api/orders/batch", {"orders": [], "x": 1}, format="json"), 400, field="x")
    not_objects = place_batch(as_alice, [1, bid("10.00", extra=True)])
    assert [result["status"] for result in not_objects.json()["results"]] == [400, 400]
    assert not_objects.json()["results"][1]["error"]["field"] == "extra"


def test_cancel_a_batch_each_answered_in_its_place(as_alice, as_bob, alice, bob):
    placed = place_batch(as_alice, [bid("10.00"), bid("9.00"), bid("8.00")]).json()["results"]
    ids = [result["order"]["id"] for result in placed]
    bobs = place_batch(as_bob, [bid("7.00")]).json()["results"][0]["order"]["id"]
    as_alice.delete(f"/api/orders/{ids[2]}")

    response = as_alice.delete("/api/orders/batch", {"ids": [ids[0], bobs, ids[2], ids[1], 10**30]}, format="json")

    assert response.status_code == 200, response.content
    results = response.json()["results"]
    assert [result["status"] for result in results] == [200, 404, 409, 200, 404]
    assert [results[at]["order"]["status"] for at in (0, 3)] == ["cancelled", "cancelled"]
    assert results[2]["error"]["code"] == "ORDER_NOT_OPEN"
    assert balances_of(alice)["USD"] == (STARTING_USD, D(0))
    assert Order.objects.get(pk=bobs).status == OrderStatus.OPEN
    assert_error(as_alice.delete("/api/orders/batch", {"ids": list(range(1, 22))}, format="json"), 400, field="ids")


def test_a_batch_of_n_counts_n_orders_and_its_headers_say_so(alice, settings):
    rates = {**settings.REST_FRAMEWORK["DEFAULT_THROTTLE_RATES"], "orders": "5/minute"}
    client = client_for(alice)
    with override_settings(REST_FRAMEWORK={**settings.REST_FRAMEWORK, "DEFAULT_THROTTLE_RATES": rates}):
        first = place_batch(client, [bid("10.00"), bid("9.00"), bid("8.00")])
        second = place_batch(client, [bid("7.00"), bid("6.00"), bid("5.00")])

    assert first.status_code == 200
    assert (first.headers["X-RateLimit-Limit"], first.headers["X-RateLimit-Remaining"]) == ("5", "2")
    assert_error(second, 429, code="THROTTLED")
    assert second.headers["X-RateLimit-Remaining"] == "0"
    assert 1 <= int(second.headers["Retry-After"]) <= 60
    assert Order.objects.filter(user=alice).count() == 3
