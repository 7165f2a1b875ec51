"""The trading endpoints: place, list, look up, amend and cancel orders; my fills.

alice and bob trade QTX-USD through the API exactly as an integrator would.
"""

from decimal import Decimal

import pytest
from django.test import override_settings

from accounts.models import Balance
from marketdata.models import Market
from marketdata.services import market_halt
from orders.models import Order
from tests.api_support import *  # noqa: F403
from tests.api_support import STARTING_USD, assert_error, client_for

pytestmark = pytest.mark.django_db

ORDER_FIELDS = {
    "id",
    "client_order_id",
    "symbol",
    "side",
    "type",
    "time_in_force",
    "post_only",
    "stp",
    "source",
    "price",
    "quantity",
    "filled_quantity",
    "remaining_quantity",
    "average_price",
    "stop_price",
    "triggered_at",
    "display_quantity",
    "expire_at",
    "trailing_delta",
    "trailing_percent",
    "limit_offset",
    "list_id",
    "leg",
    "status",
    "created_at",
    "updated_at",
}
FILL_FIELDS = {"id", "order_id", "trade_id", "symbol", "side", "role", "price", "quantity", "fee", "fee_asset", "time"}


def place(client, **fields):
    order = {"symbol": "QTX-USD", "side": "buy", "price": "10.00", "quantity": "1.00", **fields}
    return client.post("/api/orders", order, format="json")


def usd(user):
    balance = Balance.objects.get(user=user, asset_id="USD")
    return balance.available, balance.held


# --- Place -------------------------------------------------------------------------------------


def test_a_limit_order_that_rests_answers_201_with_the_order_and_no_fills(as_alice, alice):
    response = place(as_alice, client_order_id="a-1")

    assert response.status_code == 201
    body = response.json()
    assert set(body) == {"order", "fills"}
    order = body["order"]
    assert set(order) == ORDER_FIELDS
    assert order["symbol"] == "QTX-USD"
    assert order["side"] == "buy"
    assert order["type"] == "limit"
    assert order["time_in_force"] == "GTC"
    assert order["price"] == "10.00000000"
    assert order["quantity"] == "1.00000000"
    assert order["remaining_quantity"] == "1.00000000"
    assert order["average_price"] is None
    assert order["status"] == "open"
    assert order["client_order_id"] == "a-1"
    assert body["fills"] == []
    # 10 USD plus the 0.2% taker fee reserve is held.
    assert usd(alice) == (STARTING_USD - Decimal("10.02"), Decimal("10.02"))


def test_a_crossing_order_answers_its_fills(as_alice, as_bob):
    maker = place(as_bob, side="sell", price="10.00", quantity="2.00").json()["order"]

    response = place(as_alice, side="buy", price="10.50", quantity="1.50")

    assert response.status_code == 201
    body = response.json()
    assert body["order"]["status"] == "filled"
    assert body["order"]["average_price"] == "10.00000000"
    [fill] = body["fills"]
    assert set(fill) == FILL_FIELDS
    assert fill["role"] == "taker"
    assert fill["side"] == "buy"
    assert fill["price"] == "10.00000000"
    assert fill["quantity"] == "1.50000000"
    assert fill["fee"] == "0.03000000"
    assert fill["fee_asset"] == "USD"
    assert Order.objects.get(pk=maker["id"]).status == "partially_filled"


def test_a_plain_json_number_is_read_as_the_exact_decimal(as_alice):
    response = as_alice.post(
        "/api/orders",
        data='{"symbol": "QTX-USD", "side": "buy", "price": 10.1, "quantity": 3}',
        content_type="application/json",
    )

    assert response.status_code == 201
    assert response.json()["order"]["price"] == "10.10000000"
    assert response.json()["order"]["quantity"] == "3.00000000"


def test_a_market_order_defaults_to_immediate_or_cancel(as_alice, as_bob):
    place(as_bob, side="sell", price="10.00", quantity="1.00")

    response = place(as_alice, type="market", price=None, quantity="2.00")

    assert response.status_code == 201
    order = response.json()["order"]
    assert order["time_in_force"] == "IOC"
    assert order["price"] is None
    assert order["filled_quantity"] == "1.00000000"
    assert order["status"] == "expired"


def test_a_repeated_client_order_id_answers_200_with_the_original_and_places_nothing(as_alice, alice):
    first = place(as_alice, client_order_id="retry-me")
    balances_after_first = usd(alice)

    again = place(as_alice, client_order_id="retry-me", price="11.00", quantity="5.00")

    assert first.status_code == 201
    assert again.status_code == 200
    assert again.json() == first.json()
    assert Order.objects.filter(user=alice).count() == 1
    assert usd(alice) == balances_after_first


def test_the_same_client_order_id_from_another_user_is_another_order(as_alice, as_bob):
    first = place(as_alice, client_order_id="shared")

    other = place(as_bob, side="sell", price="20.00", client_order_id="shared")

    assert other.status_code == 201
    assert other.json()["order"]["id"] != first.json()["order"]["id"]


def test_an_order_beyond_the_balance_is_400_insufficient_funds(as_alice):
    response = place(as_alice, quantity="5000.00")

    assert_error(response, 400, code="INSUFFICIENT_FUNDS", field="quantity")
    assert not Order.objects.exists()


def test_an_order_on_a_halted_market_is_409(as_alice, market):
    market_halt(market=market)

    response = place(as_alice)

    assert_error(response, 409, code="MARKET_HALTED")
    assert not Order.objects.exists()


def test_a_post_only_order_that_would_take_is_placed_as_rejected(as_alice, as_bob):
    place(as_bob, side="sell", price="10.00")

    response = place(as_alice, price="10.00", post_only=True)

    assert response.status_code == 201
    assert response.json()["order"]["status"] == "rejected"


# --- Read ----------------------------------------------------------------------------------------


def test_my_orders_are_listed_newest_first_in_pages(as_alice):
    ids = [place(as_alice, price=f"{10 + n}.00").json()["order"]["id"] for n in range(5)]

    first = as_alice.get("/api/orders", {"page_size": 2}).json()
    second = as_alice.get(first["next"]).json()
    last = as_alice.get(second["next"]).json()

    # Keyset pages: results with next and previous links, no count (counting a million
    # orders would cost what the page saves).
    assert set(first) == {"next", "previous", "results"}
    assert [order["id"] for order in first["results"]] == ids[::-1][:2]
    assert first["next"] is not None and first["previous"] is None
    assert [order["id"] for order in second["results"]] == ids[::-1][2:4]
    assert [order["id"] for order in last["results"]] == [ids[0]]
    assert last["next"] is None
    back = as_alice.get(last["previous"]).json()
    assert [order["id"] for order in back["results"]] == ids[::-1][2:4]


def test_a_page_holds_still_while_new_orders_arrive(as_alice):
    """An offset would shift by one for every new order; a cursor names where it stopped."""
    ids = [place(as_alice, price=f"{10 + n}.00").json()["order"]["id"] for n in range(4)]
    first = as_alice.get("/api/orders", {"page_size": 2}).json()

    place(as_alice, price="20.00")
    second = as_alice.get(first["next"]).json()

    assert [order["id"] for order in second["results"]] == ids[::-1][2:]


def test_my_orders_filter_by_status_and_symbol(as_alice, as_bob):
    place(as_bob, side="sell", price="10.00", quantity="1.00")
    filled = place(as_alice, price="10.00").json()["order"]
    resting = place(as_alice, price="9.00").json()["order"]

    open_ones = as_alice.get("/api/orders", {"status": "open", "symbol": "QTX-USD"}).json()
    filled_ones = as_alice.get("/api/orders", {"status": "filled"}).json()

    assert [order["id"] for order in open_ones["results"]] == [resting["id"]]
    assert [order["id"] for order in filled_ones["results"]] == [filled["id"]]


def test_an_unknown_status_filter_is_400(as_alice):
    assert_error(as_alice.get("/api/orders", {"status": "sleeping"}), 400, code="INVALID", field="status")


def test_an_unknown_symbol_filter_is_400(as_alice):
    assert_error(as_alice.get("/api/orders", {"symbol": "NOPE-USD"}), 400, field="symbol")


@pytest.mark.parametrize(
    ("params", "field"),
    [({"page_size": "500"}, "page_size"), ({"page_size": "zero"}, "page_size"), ({"cursor": "bogus"}, "cursor")],
)
def test_a_bad_page_parameter_is_400(as_alice, params, field):
    assert_error(as_alice.get("/api/orders", params), 400, field=field)


def test_open_orders_leave_out_closed_ones(as_alice, as_bob):
    place(as_bob, side="sell", price="10.00", quantity="1.00")
    place(as_alice, price="10.00")
    resting = place(as_alice, price="9.00").json()["order"]

    response = as_alice.get("/api/orders/open", {"symbol": "QTX-USD"})

    assert response.status_code == 200
    assert [order["id"] for order in response.json()["results"]] == [resting["id"]]


def test_one_order_is_found_by_id(as_alice):
    order = place(as_alice).json()["order"]

    response = as_alice.get(f"/api/orders/{order['id']}")

    assert response.status_code == 200
    assert response.json() == order


def test_a_missing_order_is_404(as_alice):
    assert_error(as_alice.get("/api/orders/999999"), 404, code="NOT_FOUND")


def test_an_order_id_past_a_bigint_is_404(as_alice):
    assert_error(as_alice.get(f"/api/orders/{2**70}"), 404, code="NOT_FOUND")
    assert_error(as_alice.delete(f"/api/orders/{2**70}"), 404, code="NOT_FOUND")


def test_my_fills_list_price_quantity_fee_role_side_symbol_and_time(as_alice, as_bob):
    place(as_bob, side="sell", price="10.00", quantity="1.00")
    place(as_alice, price="10.00", quantity="1.00")

    alice_fills = as_alice.get("/api/trades/history").json()["results"]
    bob_fills = as_bob.get("/api/trades/history", {"symbol": "QTX-USD"}).json()["results"]

    assert [(f["role"], f["side"], f["price"], f["fee"]) for f in alice_fills] == [
        ("taker", "buy", "10.00000000", "0.02000000")
    ]
    assert [(f["role"], f["side"], f["price"], f["fee"]) for f in bob_fills] == [
        ("maker", "sell", "10.00000000", "0.01000000")
    ]
    assert set(alice_fills[0]) == FILL_FIELDS


# --- Amend and cancel --------------------------------------------------------------------------


def test_amending_the_price_answers_the_amended_order(as_alice):
    order = place(as_alice, price="10.00").json()["order"]

    response = as_alice.patch(f"/api/orders/{order['id']}", {"price": "9.50"}, format="json")

    assert response.status_code == 200
    assert response.json()["order"]["price"] == "9.50000000"
    assert response.json()["fills"] == []


def test_amending_with_nothing_to_change_is_400(as_alice):
    order = place(as_alice).json()["order"]

    assert_error(as_alice.patch(f"/api/orders/{order['id']}", {}, format="json"), 400, field="price")


def test_amending_with_an_unknown_field_is_400(as_alice):
    order = place(as_alice).json()["order"]

    response = as_alice.patch(f"/api/orders/{order['id']}", {"side": "sell"}, format="json")

    assert_error(response, 400, field="side")


def test_cancelling_answers_the_cancelled_order_and_releases_the_hold(as_alice, alice):
    order = place(as_alice).json()["order"]

    response = as_alice.delete(f"/api/orders/{order['id']}")

    assert response.status_code == 200
    assert response.json()["status"] == "cancelled"
    assert usd(alice) == (STARTING_USD, Decimal(0))


def test_cancelling_an_order_that_is_no_longer_open_is_409(as_alice):
    order = place(as_alice).json()["order"]
    as_alice.delete(f"/api/orders/{order['id']}")

    assert_error(as_alice.delete(f"/api/orders/{order['id']}"), 409, code="ORDER_NOT_OPEN")


def test_cancel_all_answers_the_cancelled_orders(as_alice):
    ids = {place(as_alice, price=f"{9 + n}.00").json()["order"]["id"] for n in range(3)}

    response = as_alice.delete("/api/orders?symbol=QTX-USD")

    assert response.status_code == 200
    assert {order["id"] for order in response.json()} == ids
    assert {order["status"] for order in response.json()} == {"cancelled"}
    assert not Order.objects.open().exists()


def test_cancel_all_without_a_symbol_cancels_on_every_market(as_alice, market):
    other = Market.objects.create(
        symbol="QTX-EUR",
        base_id="QTX",
        quote=market.quote,
        tick_size=Decimal("0.01"),
        lot_size=Decimal("0.01"),
        min_notional=Decimal("1"),
        price_band=None,
        circuit_breaker=None,
    )
    place(as_alice)
    place(as_alice, symbol=other.symbol, side="sell", price="20.00")

    response = as_alice.delete("/api/orders")

    assert response.status_code == 200
    assert len(response.json()) == 2


def test_cancel_all_on_an_unknown_symbol_is_400(as_alice):
    assert_error(as_alice.delete("/api/orders?symbol=NOPE"), 400, field="symbol")


# --- Someone else's orders -----------------------------------------------------------------------


@pytest.mark.parametrize("method", ["get", "patch", "delete"])
def test_someone_elses_order_is_404_exactly_like_a_missing_one(as_alice, as_bob, method):
    bobs = place(as_bob, side="sell", price="20.00").json()["order"]
    kwargs = {"data": {"price": "21.00"}, "format": "json"} if method == "patch" else {}

    theirs = getattr(as_alice, method)(f"/api/orders/{bobs['id']}", **kwargs)
    missing = getattr(as_alice, method)("/api/orders/999999", **kwargs)

    assert_error(theirs, 404, code="NOT_FOUND")
    assert theirs.json() == missing.json()
    assert Order.objects.get(pk=bobs["id"]).status == "open"


def test_my_lists_never_show_someone_elses_orders_or_fills(as_alice, as_bob):
    place(as_bob, side="sell", price="10.00")
    place(as_alice, price="10.00")

    bob_orders = as_bob.get("/api/orders").json()["results"]
    bob_fills = as_bob.get("/api/trades/history").json()["results"]

    assert {order["side"] for order in bob_orders} == {"sell"}
    assert {fill["side"] for fill in bob_fills} == {"sell"}


def test_cancel_all_leaves_someone_elses_orders_alone(as_alice, as_bob):
    bobs = place(as_bob, side="sell", price="20.00").json()["order"]

    as_alice.delete("/api/orders")

    assert Order.objects.get(pk=bobs["id"]).status == "open"


# --- Authentication and throttling ----------------------------------------------------------------


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("get", "/api/orders"),
        ("post", "/api/orders"),
        ("delete", "/api/orders"),
        ("get", "/api/orders/open"),
        ("get", "/api/orders/1"),
        ("patch", "/api/orders/1"),
        ("delete", "/api/orders/1"),
        ("get", "/api/trades/history"),
    ],
)
def test_trading_endpoints_need_a_token(anon, method, path):
    response = getattr(anon, method)(path)

    assert_error(response, 401, code="NOT_AUTHENTICATED")
    assert response.headers["WWW-Authenticate"].startswith("Bearer")


def test_order_commands_are_throttled_per_user_with_retry_after(alice, settings):
    rates = {**settings.REST_FRAMEWORK["DEFAULT_THROTTLE_RATES"], "orders": "2/minute"}
    client = client_for(alice)
    with override_settings(REST_FRAMEWORK={**settings.REST_FRAMEWORK, "DEFAULT_THROTTLE_RATES": rates}):
        statuses = [place(client, price=f"{9 + n}.00").status_code for n in range(3)]
        throttled = place(client, price="5.00")
        reading = client.get("/api/orders")

    assert statuses == [201, 201, 429]
    assert_error(throttled, 429, code="THROTTLED")
    assert 1 <= int(throttled.headers["Retry-After"]) <= 60
    assert reading.status_code == 200
    assert Order.objects.count() == 2


# --- The schema says what the payloads hold --------------------------------------------------------


def test_the_documented_order_and_fill_fields_are_those_of_the_payloads(as_alice, as_bob):
    from orders.api import FillSerializer, OrderSerializer

    place(as_bob, side="sell", price="10.00")
    body = place(as_alice, price="10.00").json()

    assert set(OrderSerializer().fields) == set(body["order"]) == ORDER_FIELDS
    assert set(FillSerializer().fields) == set(body["fills"][0]) == FILL_FIELDS
