"""Operators act through admin actions, which go through the same services as everyone."""

from decimal import Decimal

import pytest

from accounts.keys import api_key_create
from accounts.models import ApiKey, Balance, LedgerEntry, User
from accounts.services import balance_deposit
from marketdata.models import Market
from orders.models import Order, OrderStatus
from orders.services import order_place

pytestmark = pytest.mark.django_db


@pytest.fixture
def operator_client(client, operator):
    client.force_login(operator)
    return client


def test_adjust_action_writes_one_ledger_entry_with_the_reason(operator_client, operator, alice, market):
    balance_deposit(user=alice, asset="USD", amount=Decimal("100"))
    balance = Balance.objects.get(user=alice, asset="USD")

    response = operator_client.post(
        "/admin/accounts/balance/",
        {"action": "adjust", "_selected_action": [balance.pk], "apply": "1", "amount": "-25.5", "reason": "chargeback"},
    )

    assert response.status_code == 302
    balance.refresh_from_db()
    assert balance.available == Decimal("74.5")
    entry = LedgerEntry.objects.filter(user=alice, kind="adjustment").get()
    assert (entry.available_delta, entry.reason, entry.created_by) == (Decimal("-25.5"), "chargeback", operator)


def test_adjust_action_first_asks_for_amount_and_reason(operator_client, alice, market):
    balance_deposit(user=alice, asset="USD", amount=Decimal("100"))
    balance = Balance.objects.get(user=alice, asset="USD")

    response = operator_client.post("/admin/accounts/balance/", {"action": "adjust", "_selected_action": [balance.pk]})

    assert response.status_code == 200
    assert b'name="reason"' in response.content
    assert not LedgerEntry.objects.filter(kind="adjustment").exists()


def test_adjust_action_refuses_to_overdraw(operator_client, alice, market):
    balance_deposit(user=alice, asset="USD", amount=Decimal("10"))
    balance = Balance.objects.get(user=alice, asset="USD")

    operator_client.post(
        "/admin/accounts/balance/",
        {"action": "adjust", "_selected_action": [balance.pk], "apply": "1", "amount": "-11", "reason": "oops"},
    )

    balance.refresh_from_db()
    assert balance.available == Decimal("10")
    assert not LedgerEntry.objects.filter(kind="adjustment").exists()


def test_halt_and_resume_actions(operator_client, market):
    operator_client.post("/admin/marketdata/market/", {"action": "halt", "_selected_action": [market.pk]})
    assert Market.objects.get(pk=market.pk).status == Market.Status.HALTED

    # A resumed market opens with a call auction (docs/API.md, "Call auctions").
    operator_client.post("/admin/marketdata/market/", {"action": "resume", "_selected_action": [market.pk]})
    assert Market.objects.get(pk=market.pk).status == Market.Status.AUCTION


def test_cancel_action_releases_the_hold(operator_client, alice, market):
    User.objects.get_or_create(username="fees", defaults={"is_active": False})
    balance_deposit(user=alice, asset="USD", amount=Decimal("1000"))
    order = order_place(user=alice, market=market, side="buy", price="10.00", quantity="5").order

    operator_client.post("/admin/orders/order/", {"action": "cancel", "_selected_action": [order.pk]})

    assert Order.objects.get(pk=order.pk).status == OrderStatus.CANCELLED
    balance = Balance.objects.get(user=alice, asset="USD")
    assert (balance.available, balance.held) == (Decimal("1000"), Decimal("0"))


def test_operators_see_pending_stops_and_cancel_them(operator_client, alice, market):
    User.objects.get_or_create(username="fees", defaults={"is_active": False})
    balance_deposit(user=alice, asset="USD", amount=Decimal("1000"))
    stop = order_place(user=alice, market=market, side="buy", type="stop_market", stop_price="10.00", quantity="5")

    listing = operator_client.get("/admin/orders/order/?status__exact=pending").content.decode()
    assert "Stop price" in listing and f">{stop.order.pk}<" in listing
    operator_client.post("/admin/orders/order/", {"action": "cancel", "_selected_action": [stop.order.pk]})

    assert Order.objects.get(pk=stop.order.pk).status == OrderStatus.CANCELLED
    balance = Balance.objects.get(user=alice, asset="USD")
    assert (balance.available, balance.held) == (Decimal("1000"), Decimal("0"))


def test_revoke_action_revokes_the_selected_api_keys_only(operator_client, alice, bob, market):
    kept, kept_secret = api_key_create(user=bob, name="bob's bot")
    revoked, revoked_secret = api_key_create(user=alice, name="leaked")

    response = operator_client.post("/admin/accounts/apikey/", {"action": "revoke", "_selected_action": [revoked.pk]})

    assert response.status_code == 302
    assert ApiKey.objects.get(pk=revoked.pk).revoked
    assert not ApiKey.objects.get(pk=kept.pk).revoked
    assert operator_client.get("/api/auth/me", HTTP_AUTHORIZATION=f"Api-Key {revoked_secret}").status_code == 401
    assert operator_client.get("/api/auth/me", HTTP_AUTHORIZATION=f"Api-Key {kept_secret}").status_code == 200


def test_the_api_key_pages_show_no_secret_and_offer_no_edit(operator_client, alice, market):
    key, secret = api_key_create(user=alice, name="bot")

    listing = operator_client.get("/admin/accounts/apikey/")
    page = operator_client.get(f"/admin/accounts/apikey/{key.pk}/change/")

    assert listing.status_code == page.status_code == 200
    assert key.prefix.encode() in listing.content
    assert secret.split(".")[1].encode() not in listing.content + page.content
    assert key.hashed_key.encode() not in page.content
    assert b'name="name"' not in page.content
    assert operator_client.get("/admin/accounts/apikey/add/").status_code == 403
