"""Market integrity through REST (docs/API.md, "Market integrity"): each control's refusal in
the one error shape, `stp` and `source` on orders, and the staff kill switch."""

from decimal import Decimal

import pytest

from accounts.keys import api_key_create
from accounts.models import OperatorAction
from marketdata.models import Market
from orders.engine.caches import forget_markets
from orders.selectors import reconcile
from orders.services import order_place
from tests.api_support import *  # noqa: F403

pytestmark = pytest.mark.django_db

BUY = {"symbol": "QTX-USD", "side": "buy", "type": "limit", "price": "100.00", "quantity": "1.00"}


def rules(**values):
    Market.objects.filter(symbol="QTX-USD").update(**values)
    forget_markets()


def trade_at(seller, buyer, price):
    order_place(user=seller, market="QTX-USD", side="sell", quantity=Decimal(1), price=Decimal(price))
    order_place(user=buyer, market="QTX-USD", side="buy", quantity=Decimal(1), price=Decimal(price))


@pytest.fixture(autouse=True)
def clean_books():
    yield
    assert reconcile() == []


def test_a_price_outside_the_band_is_refused_400(as_alice, alice, bob):
    trade_at(alice, bob, "100")
    rules(price_band=Decimal("0.10"))
    response = as_alice.post("/api/orders", {**BUY, "price": "120.00"}, format="json")
    error = assert_error(response, 400, "PRICE_OUT_OF_BAND", "price")  # noqa: F405
    assert "within 90.00 and 110.00 (10% around the reference 100.00)" in error["message"]
    order = as_alice.post("/api/orders", BUY, format="json").json()["order"]
    response = as_alice.patch(f"/api/orders/{order['id']}", {"price": "80.00"}, format="json")
    assert_error(response, 400, "PRICE_OUT_OF_BAND", "price")  # noqa: F405


def test_an_order_too_large_is_refused_400(as_alice):
    rules(max_order_quantity=Decimal("2"), max_order_notional=Decimal("150"))
    response = as_alice.post("/api/orders", {**BUY, "quantity": "3"}, format="json")
    assert_error(response, 400, "ORDER_TOO_LARGE", "quantity")  # noqa: F405
    response = as_alice.post("/api/orders", {**BUY, "quantity": "2"}, format="json")
    assert_error(response, 400, "ORDER_TOO_LARGE", "quantity")  # noqa: F405
    assert as_alice.post("/api/orders", BUY, format="json").status_code == 201


def test_too_many_open_orders_is_refused_409(as_alice, alice):
    alice.max_open_orders = 1
    alice.save(update_fields=["max_open_orders"])
    assert as_alice.post("/api/orders", BUY, format="json").status_code == 201
    response = as_alice.post("/api/orders", BUY, format="json")
    assert_error(response, 409, "TOO_MANY_OPEN_ORDERS")  # noqa: F405


def test_stp_and_source_travel_with_the_order(as_alice, alice, bob):
    order_place(user=alice, market="QTX-USD", side="sell", quantity=Decimal(1), price=Decimal("100"))
    order_place(user=bob, market="QTX-USD", side="sell", quantity=Decimal(1), price=Decimal("100"))
    body = as_alice.post("/api/orders", {**BUY, "stp": "expire_maker"}, format="json").json()
    assert body["order"]["stp"] == "expire_maker"
    assert body["order"]["source"] == "rest"
    assert body["order"]["status"] == "filled"
    assert [fill["price"] for fill in body["fills"]] == ["100.00000000"]
    assert not orders_of(alice).filter(side="sell", status="open").exists()  # noqa: F405
    response = as_alice.post("/api/orders", {**BUY, "stp": "expire_nobody"}, format="json")
    assert_error(response, 400, field="stp")  # noqa: F405


# --- The kill switch -----------------------------------------------------------------


def test_staff_disable_a_users_trading_and_enable_it_again(as_operator, as_alice, alice, operator):
    as_alice.post("/api/orders", BUY, format="json")
    as_alice.post("/api/orders", {**BUY, "type": "stop_limit", "stop_price": "120.00"}, format="json")

    response = as_operator.post(
        "/api/admin/users/alice/trading", {"enabled": False, "reason": "runaway algorithm"}, format="json"
    )

    assert response.status_code == 200, response.content
    assert response.json() == {
        "username": "alice",
        "trading_enabled": False,
        "reason": "runaway algorithm",
        "cancelled": 2,
    }
    assert not orders_of(alice).filter(status__in=["open", "pending"]).exists()  # noqa: F405
    response = as_alice.post("/api/orders", BUY, format="json")
    error = assert_error(response, 403, "TRADING_DISABLED")  # noqa: F405
    assert "disabled" in error["message"]
    action = OperatorAction.objects.get(user=alice)
    assert (action.kind, action.operator, action.reason) == ("trading_disabled", operator, "runaway algorithm")

    response = as_operator.post("/api/admin/users/alice/trading", {"enabled": True}, format="json")
    assert response.json() == {"username": "alice", "trading_enabled": True, "reason": "", "cancelled": 0}
    assert as_alice.post("/api/orders", BUY, format="json").status_code == 201


def test_disabling_needs_a_reason(as_operator, alice):
    response = as_operator.post("/api/admin/users/alice/trading", {"enabled": False}, format="json")
    assert_error(response, 400, "INVALID", "reason")  # noqa: F405
    response = as_operator.post("/api/admin/users/alice/trading", {"enabled": "no", "reason": "x"}, format="json")
    assert_error(response, 400, field="enabled")  # noqa: F405


def test_only_staff_with_a_login_may_use_the_switch(as_alice, anon, operator, bob):
    body = {"enabled": False, "reason": "because"}
    assert_error(as_alice.post("/api/admin/users/bob/trading", body, format="json"), 403)  # noqa: F405
    assert_error(anon.post("/api/admin/users/bob/trading", body, format="json"), 401)  # noqa: F405
    _, secret = api_key_create(user=operator, name="ops", scopes=["read", "trade"])
    with_key = client_for(operator).__class__()  # noqa: F405
    with_key.credentials(HTTP_AUTHORIZATION=f"Api-Key {secret}")
    assert_error(with_key.post("/api/admin/users/bob/trading", body, format="json"), 403)  # noqa: F405
    bob.refresh_from_db()
    assert bob.trading_enabled


def test_an_unknown_user_is_404(as_operator):
    response = as_operator.post("/api/admin/users/nobody/trading", {"enabled": True}, format="json")
    assert_error(response, 404, "NOT_FOUND")  # noqa: F405
