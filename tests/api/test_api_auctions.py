"""Operators' PATCH /api/markets/{symbol} and call auctions through the REST API
(docs/API.md, "Call auctions" and "Operators")."""

from datetime import timedelta
from decimal import Decimal

import pytest
from django.core.management import call_command
from django.utils import timezone

from accounts import keys
from accounts.models import OperatorAction
from marketdata.models import Market
from orders.auctions import auction_end
from orders.selectors import reconcile
from tests.api_support import *  # noqa: F403

D = Decimal


def patch(client, symbol="QTX-USD", **fields):
    return client.patch(f"/api/markets/{symbol}", fields, format="json")


def place(client, **order):
    return client.post("/api/orders", {"symbol": "QTX-USD", "type": "limit", **order}, format="json")


def test_get_shows_every_rule_and_no_auction(anon, market):
    body = anon.get("/api/markets/QTX-USD").json()
    assert body["status"] == "trading"
    assert body["price_band"] is None and body["circuit_breaker"] is None
    assert body["circuit_window_seconds"] == 300 and body["auction_seconds"] == 30
    assert body["max_order_quantity"] is None and body["max_order_notional"] is None
    assert body["auction_ends_at"] is None
    assert body["indicative_price"] is None and body["indicative_volume"] is None
    assert anon.get("/api/markets").json()[0].keys() == body.keys()


def test_operator_changes_rules_and_they_are_audited(as_operator, operator, market):
    response = patch(
        as_operator,
        circuit_breaker="0.03",
        auction_seconds=60,
        max_order_quantity="500",
        price_band="0.2",
        reason="volatile week",
    )
    assert response.status_code == 200, response.content
    body = response.json()
    assert body["circuit_breaker"] == "0.030000" and body["auction_seconds"] == 60
    assert body["max_order_quantity"] == "500.00000000" and body["price_band"] == "0.200000"
    assert body == as_operator.get("/api/markets/QTX-USD").json()
    action = OperatorAction.objects.get()
    assert action.kind == "market_rules_changed" and action.operator == operator and action.reason == "volatile week"
    assert action.details == {
        "price_band": [None, "0.2"],
        "max_order_quantity": [None, "500"],
        "circuit_breaker": [None, "0.03"],
        "auction_seconds": [30, 60],
    }
    # null clears a nullable rule
    assert patch(as_operator, max_order_quantity=None).json()["max_order_quantity"] is None


def test_a_rule_change_counts_at_once(as_operator, as_alice, market):
    assert place(as_alice, side="buy", price="10.01", quantity="1").status_code == 201
    assert patch(as_operator, tick_size="0.1").status_code == 200
    assert_error(place(as_alice, side="buy", price="10.01", quantity="1"), 400, "INVALID", "price")  # noqa: F405


@pytest.mark.parametrize(
    "fields, field",
    [
        ({"colour": "red"}, "colour"),
        ({"tick_size": "0"}, "tick_size"),
        ({"tick_size": "-1"}, "tick_size"),
        ({"maker_fee": "1"}, "maker_fee"),
        ({"maker_fee": "0.0000001"}, "maker_fee"),
        ({"price_band": "0"}, "price_band"),
        ({"circuit_breaker": "1.5"}, "circuit_breaker"),
        ({"max_order_notional": "0"}, "max_order_notional"),
        ({"auction_seconds": 0}, "auction_seconds"),
        ({"auction_seconds": 3601}, "auction_seconds"),
        ({"auction_seconds": "30"}, "auction_seconds"),
        ({"circuit_window_seconds": True}, "circuit_window_seconds"),
        ({"status": "auction"}, "status"),
        ({"tick_size": None}, "tick_size"),
        ({"tick_size": "0.00001", "lot_size": "0.00001"}, "lot_size"),
    ],
)
def test_bad_changes_are_400_naming_the_field(as_operator, market, fields, field):
    assert_error(patch(as_operator, **fields), 400, field=field)  # noqa: F405
    assert not OperatorAction.objects.exists()


def test_fees_change_only_without_open_orders(as_operator, as_alice, market):
    assert patch(as_operator, taker_fee="0.003").status_code == 200
    assert place(as_alice, side="buy", price="10", quantity="1").status_code == 201
    assert_error(patch(as_operator, maker_fee="0.002"), 400, "INVALID", "maker_fee")  # noqa: F405


def test_only_staff_logins_may_patch(anon, as_alice, alice, operator, market):
    assert anon.patch("/api/markets/QTX-USD", {"status": "halted"}, format="json").status_code == 401
    assert_error(patch(as_alice, status="halted"), 403)  # noqa: F405
    _, secret = keys.api_key_create(user=operator, name="ops", scopes=["read", "trade"])
    with_key = client_for(alice)  # noqa: F405
    with_key.credentials(HTTP_AUTHORIZATION=f"Api-Key {secret}")
    assert_error(patch(with_key, status="halted"), 403)  # noqa: F405
    assert Market.objects.get().status == "trading"


def test_an_unknown_market_is_404(as_operator, market):
    assert_error(patch(as_operator, symbol="NOPE-USD", status="halted"), 404, "NOT_FOUND")  # noqa: F405


def test_halt_then_resume_through_an_auction_and_its_uncross(as_operator, as_alice, as_bob, operator, market):
    body = patch(as_operator, status="halted", reason="news").json()
    assert body["status"] == "halted" and body["auction_ends_at"] is None
    assert_error(place(as_alice, side="sell", price="100", quantity="1"), 409, "MARKET_HALTED")  # noqa: F405

    body = patch(as_operator, status="trading").json()
    assert body["status"] == "auction"
    ends = timezone.datetime.fromisoformat(body["auction_ends_at"].replace("Z", "+00:00"))
    assert timedelta(seconds=28) < ends - timezone.now() <= timedelta(seconds=30)
    assert body["indicative_price"] is None and body["indicative_volume"] == "0.00000000"

    # During the auction: limit GTC orders rest (201, no fills), the book crosses.
    assert place(as_alice, side="sell", price="100", quantity="2").status_code == 201
    response = place(as_bob, side="buy", price="101", quantity="1")
    assert response.status_code == 201 and response.json()["fills"] == []
    assert_error(  # noqa: F405
        place(as_bob, side="buy", quantity="1", type="market"), 409, "MARKET_IN_AUCTION"
    )
    assert_error(  # noqa: F405
        place(as_bob, side="buy", price="101", quantity="1", time_in_force="IOC"), 409, "MARKET_IN_AUCTION"
    )
    body = as_alice.get("/api/markets/QTX-USD").json()
    # 100: buys 1, sells 2 -> 1 (sellers over); 101: buys 1, sells 2 -> 1 (sellers over): the lower.
    assert body["indicative_price"] == "100.00000000" and body["indicative_volume"] == "1.00000000"
    assert list(OperatorAction.objects.order_by("id").values_list("kind", flat=True)) == [
        "market_halted",
        "market_resumed",
    ]

    Market.objects.update(auction_ends_at=timezone.now() - timedelta(seconds=1))
    assert auction_end(market_id=market.pk)
    body = as_alice.get("/api/markets/QTX-USD").json()
    assert body["status"] == "trading" and body["indicative_price"] is None
    assert as_alice.get("/api/markets/QTX-USD/trades").json()[0]["price"] == "100.00000000"
    assert reconcile() == []
    call_command("reconcile")


def test_halting_a_market_in_auction_halts_it(as_operator, market):
    patch(as_operator, status="halted")
    assert patch(as_operator, status="trading").json()["status"] == "auction"
    body = patch(as_operator, status="halted").json()
    assert body["status"] == "halted" and body["auction_ends_at"] is None


def test_rules_and_status_in_one_request(as_operator, market):
    body = patch(as_operator, auction_seconds=120, status="halted").json()
    assert body["auction_seconds"] == 120 and body["status"] == "halted"
    body = patch(as_operator, status="trading").json()
    ends = timezone.datetime.fromisoformat(body["auction_ends_at"].replace("Z", "+00:00"))
    assert ends - timezone.now() > timedelta(seconds=100)
