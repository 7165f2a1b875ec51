"""The operators' admin: the kill switch's actions on users (with a reason, on a
confirmation page), the audited order cancel and user limits, and the audit trail."""

import pytest

from accounts.models import OperatorAction, User
from orders.models import Order, OrderStatus
from orders.selectors import reconcile

from .stories import buy, stop_buy

pytestmark = pytest.mark.django_db


@pytest.fixture
def olivia(assets):
    return User.objects.create_superuser(username="olivia", password="olivia-pass-2026")


@pytest.fixture
def admin_client(client, olivia):
    client.force_login(olivia)
    return client


def test_disable_trading_asks_for_a_reason_then_cancels_everything(admin_client, market, alice, olivia):
    buy(alice, "1", at="10")
    stop_buy(alice, "1", stop="20")
    chosen = {"action": "disable_trading", "_selected_action": [alice.pk]}

    confirm = admin_client.post("/admin/accounts/user/", chosen)
    assert confirm.status_code == 200
    page = confirm.content.decode()
    assert "Disable trading" in page and 'name="reason"' in page and "alice" in page
    assert Order.objects.active().filter(user=alice).count() == 2  # nothing done yet

    done = admin_client.post("/admin/accounts/user/", {**chosen, "apply": "1", "reason": "desk request"}, follow=True)

    assert [str(message) for message in done.context["messages"]] == ["alice: trading disabled, 2 order(s) cancelled."]
    alice.refresh_from_db()
    assert (alice.trading_enabled, alice.trading_disabled_reason) == (False, "desk request")
    assert not Order.objects.active().filter(user=alice).exists()
    assert OperatorAction.objects.filter(kind="trading_disabled", user=alice, operator=olivia).exists()
    assert reconcile() == []

    admin_client.post("/admin/accounts/user/", {"action": "enable_trading", "_selected_action": [alice.pk]})
    alice.refresh_from_db()
    assert alice.trading_enabled
    assert OperatorAction.objects.filter(kind="trading_enabled", user=alice).exists()


def test_the_user_page_shows_the_trading_fields_and_audits_a_new_limit(admin_client, alice, olivia):
    page = admin_client.get(f"/admin/accounts/user/{alice.pk}/change/")
    text = page.content.decode()
    assert "Trading" in text and "max_open_orders" in text
    assert "the kill switch" in text  # trading_enabled's help text, shown read-only
    form = page.context["adminform"].form
    data = {name: value for name, value in form.initial.items() if value is not None and name in form.fields}
    data.update({"max_open_orders": "5", "date_joined_0": "2026-01-01", "date_joined_1": "00:00:00"})
    data.pop("date_joined", None)
    data.pop("last_login", None)
    data.update({"balances-TOTAL_FORMS": "0", "balances-INITIAL_FORMS": "0"})
    response = admin_client.post(f"/admin/accounts/user/{alice.pk}/change/", data)
    assert response.status_code == 302, response.context["adminform"].form.errors if response.context else response
    alice.refresh_from_db()
    assert alice.max_open_orders == 5
    action = OperatorAction.objects.get(kind="user_limits_changed")
    assert (action.user, action.operator, action.details) == (alice, olivia, {"max_open_orders": [None, 5]})


def test_the_order_cancel_action_is_audited(admin_client, market, alice, olivia):
    order = buy(alice, "1", at="10").order
    admin_client.post("/admin/orders/order/", {"action": "cancel", "_selected_action": [order.pk]})
    order.refresh_from_db()
    assert order.status == OrderStatus.CANCELLED
    action = OperatorAction.objects.get(kind="order_cancelled")
    assert (action.user, action.operator, action.market, action.details) == (
        alice,
        olivia,
        "QTX-USD",
        {"order": order.pk},
    )


def test_the_audit_trail_is_read_only_and_filtered(admin_client, market, alice, olivia):
    OperatorAction.objects.create(operator=olivia, kind="trading_disabled", user=alice, reason="why")
    listing = admin_client.get("/admin/accounts/operatoraction/?kind=trading_disabled")
    assert listing.status_code == 200 and "why" in listing.content.decode()
    assert admin_client.get(f"/admin/accounts/operatoraction/?operator__id__exact={olivia.pk}").status_code == 200
    assert admin_client.get("/admin/accounts/operatoraction/add/").status_code == 403
    action = OperatorAction.objects.get()
    assert admin_client.post(f"/admin/accounts/operatoraction/{action.pk}/delete/").status_code == 403


def test_the_order_list_filters_by_source(admin_client, market, alice):
    buy(alice, "1", at="10")
    listing = admin_client.get("/admin/orders/order/?source__exact=system")
    assert listing.status_code == 200
    assert listing.context["cl"].result_count == 1
    assert admin_client.get("/admin/orders/order/?source__exact=rest").context["cl"].result_count == 0
