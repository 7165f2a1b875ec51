"""Django admin: operators see every table; nobody else gets in; money is never edited by hand."""

from decimal import Decimal

import pytest
from django.contrib import admin

from accounts.keys import api_key_create, api_keys_for_user
from accounts.models import ApiLogin, Balance, User
from accounts.tokens import api_login_start
from orders.console import reconcile_run
from orders.models import ReconcileRun

CHANGELISTS = [
    "/admin/accounts/user/",
    "/admin/accounts/asset/",
    "/admin/accounts/balance/",
    "/admin/accounts/ledgerentry/",
    "/admin/accounts/apikey/",
    "/admin/accounts/operatoraction/",
    "/admin/marketdata/market/",
    "/admin/marketdata/trade/",
    "/admin/marketdata/candle/",
    "/admin/orders/order/",
    "/admin/orders/fill/",
    "/admin/orders/reconcilerun/",
    "/admin/orders/orderlist/",
]
ADMIN_PAGES = ["/admin/", *CHANGELISTS]


def test_every_model_our_apps_register_has_its_changelist_tested():
    registered = {
        f"/admin/{model._meta.app_label}/{model._meta.model_name}/"
        for model in admin.site._registry
        if model._meta.app_label in {"accounts", "marketdata", "orders"}
    }

    assert registered == set(CHANGELISTS)


@pytest.mark.parametrize("url", ADMIN_PAGES)
def test_operator_opens_admin_page(client, operator, trading_history, url):
    reconcile_run(trigger=ReconcileRun.Trigger.COMMAND)
    client.force_login(operator)

    response = client.get(url)

    assert response.status_code == 200
    if url != "/admin/":
        assert response.context["cl"].result_count > 0


@pytest.mark.parametrize("url", ADMIN_PAGES)
def test_anonymous_visitor_is_sent_to_the_admin_login(client, db, url):
    response = client.get(url)

    assert response.status_code == 302
    assert response.url.startswith("/admin/login/")


@pytest.mark.parametrize("url", ADMIN_PAGES)
def test_trader_is_sent_to_the_admin_login(client, alice, url):
    client.force_login(alice)

    response = client.get(url)

    assert response.status_code == 302
    assert response.url.startswith("/admin/login/")


def test_balance_change_page_shows_no_editable_amount(client, operator, trading_history, alice):
    balance = Balance.objects.get(user=alice, asset="USD")
    client.force_login(operator)

    response = client.get(f"/admin/accounts/balance/{balance.pk}/change/")

    assert response.status_code == 200
    assert b'name="available"' not in response.content
    assert b'name="held"' not in response.content


def test_posting_a_changed_balance_changes_nothing(client, operator, trading_history, alice):
    balance = Balance.objects.get(user=alice, asset="USD")
    client.force_login(operator)

    response = client.post(
        f"/admin/accounts/balance/{balance.pk}/change/",
        {"user": alice.pk, "asset": "USD", "available": "999999", "held": "0"},
    )

    assert response.status_code == 403
    balance.refresh_from_db()
    assert balance.available == Decimal("1000")


def test_an_operator_setting_a_traders_password_ends_her_api_logins_and_keys(client, operator, alice, bob):
    """As a reset does: the operator is taking the account back for her."""
    api_login_start(user=alice)
    api_key_create(user=alice, name="bot")
    api_login_start(user=bob)
    client.force_login(operator)

    response = client.post(
        f"/admin/accounts/user/{alice.pk}/password/",
        {
            "password1": "a-brand-new-passphrase-2026",
            "password2": "a-brand-new-passphrase-2026",
            "usable_password": "true",
        },
    )

    assert response.status_code == 302
    assert not ApiLogin.objects.filter(user=alice, ended_at__isnull=True).exists()
    assert not api_keys_for_user(alice).exists()
    assert ApiLogin.objects.filter(user=bob, ended_at__isnull=True).exists()  # nobody else's
    assert client.get("/admin/").status_code == 200  # the operator stays signed in


@pytest.mark.parametrize("name", ["ALICE", "\u0430lice"], ids=["another case", "a Cyrillic letter"])
def test_an_operator_cannot_add_a_look_alike_of_a_user(client, operator, alice, name):
    client.force_login(operator)

    response = client.post(
        "/admin/accounts/user/add/",
        {
            "username": name,
            "password1": "a-long-passphrase-2026",
            "password2": "a-long-passphrase-2026",
            "usable_password": "true",
        },
    )

    assert response.status_code == 200  # the form again, with the error
    assert response.context["adminform"].form.errors["username"]
    assert not User.objects.filter(username=name).exists()
