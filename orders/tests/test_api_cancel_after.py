"""POST /api/orders/cancel-after, the dead man's switch over REST (docs/API.md, section 4
and "Dead man's switch"): arming, disarming, refusals, who may, the throttle, and the
switch firing on what alice placed through the API."""

from datetime import datetime, timedelta

import pytest
from django.test import override_settings
from django.utils import timezone

from accounts.keys import api_key_create
from accounts.models import User
from orders.models import Order, OrderStatus
from quantumtrades.core import scheduler
from tests.api_support import *  # noqa: F403
from tests.api_support import assert_error, client_for

pytestmark = pytest.mark.django_db

URL = "/api/orders/cancel-after"


def arm(client, seconds, **extra):
    return client.post(URL, {"seconds": seconds, **extra}, format="json")


def key_client(user, scopes):
    from rest_framework.test import APIClient

    _, secret = api_key_create(user=user, name="bot", scopes=list(scopes))
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Api-Key {secret}")
    return client


def test_arming_answers_when_it_fires_and_stores_it(as_alice, alice):
    before = timezone.now()
    response = arm(as_alice, 30)
    assert response.status_code == 200, response.content
    assert set(response.json()) == {"armed_until"}
    armed_until = datetime.fromisoformat(response.json()["armed_until"])
    assert before + timedelta(seconds=30) <= armed_until <= timezone.now() + timedelta(seconds=30)
    assert User.objects.get(pk=alice.pk).cancel_orders_at == armed_until


def test_zero_disarms(as_alice, alice):
    arm(as_alice, 30)
    response = arm(as_alice, 0)
    assert response.status_code == 200 and response.json() == {"armed_until": None}
    assert User.objects.get(pk=alice.pk).cancel_orders_at is None


def test_an_integral_json_number_is_whole(as_alice):
    response = as_alice.post(URL, '{"seconds": 10.0}', content_type="application/json")
    assert response.status_code == 200, response.content


@pytest.mark.parametrize(
    "body",
    [
        {"seconds": 4},
        {"seconds": 1},
        {"seconds": -5},
        {"seconds": 601},
        {"seconds": 10**30},
        {"seconds": "10"},
        {"seconds": 10.5},
        {"seconds": True},
        {"seconds": None},
        {"seconds": [10]},
        {},
    ],
)
def test_other_values_are_refused_on_the_seconds_field(as_alice, alice, body):
    arm(as_alice, 30)
    armed = User.objects.get(pk=alice.pk).cancel_orders_at
    assert_error(as_alice.post(URL, body, format="json"), 400, code="INVALID", field="seconds")
    assert User.objects.get(pk=alice.pk).cancel_orders_at == armed


def test_unknown_fields_and_non_objects_are_refused(as_alice):
    assert_error(arm(as_alice, 30, symbol="QTX-USD"), 400, code="INVALID", field="symbol")
    assert_error(as_alice.post(URL, "[30]", content_type="application/json"), 400, code="INVALID")


def test_it_needs_a_login_or_a_key_that_trades(alice, anon):
    assert_error(arm(anon, 30), 401, code="NOT_AUTHENTICATED")
    assert_error(arm(key_client(alice, ["read"]), 30), 403, code="PERMISSION_DENIED")
    assert User.objects.get(pk=alice.pk).cancel_orders_at is None
    trading_key = key_client(alice, ["read", "trade"])
    assert arm(trading_key, 30).status_code == 200


def test_it_counts_against_the_order_commands_rate(alice, settings):
    rates = {**settings.REST_FRAMEWORK["DEFAULT_THROTTLE_RATES"], "orders": "2/minute"}
    client = client_for(alice)
    with override_settings(REST_FRAMEWORK={**settings.REST_FRAMEWORK, "DEFAULT_THROTTLE_RATES": rates}):
        statuses = [arm(client, 30).status_code for _ in range(2)]
        throttled = arm(client, 30)
    assert statuses == [200, 200]
    assert_error(throttled, 429, code="THROTTLED")
    assert int(throttled.headers["Retry-After"]) >= 1


def test_get_is_not_allowed(as_alice):
    assert as_alice.get(URL).status_code == 405


def test_the_switch_fires_on_the_orders_placed_through_the_api(as_alice, as_bob, alice):
    placed = as_alice.post(
        "/api/orders", {"symbol": "QTX-USD", "side": "buy", "price": "9.00", "quantity": "1.00"}, format="json"
    )
    bobs = as_bob.post(
        "/api/orders", {"symbol": "QTX-USD", "side": "sell", "price": "11.00", "quantity": "1.00"}, format="json"
    )
    assert arm(as_alice, 5).status_code == 200
    scheduler.run_due()
    assert Order.objects.get(pk=placed.json()["order"]["id"]).status == OrderStatus.OPEN  # not yet
    User.objects.filter(pk=alice.pk).update(cancel_orders_at=timezone.now() - timedelta(milliseconds=1))
    scheduler.run_due()
    assert Order.objects.get(pk=placed.json()["order"]["id"]).status == OrderStatus.CANCELLED
    assert Order.objects.get(pk=bobs.json()["order"]["id"]).status == OrderStatus.OPEN
    assert as_alice.get("/api/orders/open").json()["results"] == []
