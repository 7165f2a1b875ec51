"""The operators' admin of the richer orders: an order's page shows the fields of its kind
(GTD, iceberg, trailing stop, its list and leg), a list's page shows its orders, and the
order list filters find them."""

from datetime import timedelta
from decimal import Decimal

import pytest
from django.contrib.auth import get_user_model
from django.utils import timezone

from accounts.models import OperatorAction
from orders.models import Order, OrderList
from orders.selectors import reconcile
from orders.services import oco_place

from .stories import print_trade

pytestmark = pytest.mark.django_db


@pytest.fixture
def admin_client(client, assets):
    olivia = get_user_model().objects.create_superuser(username="olivia", password="olivia-pass-2026")
    client.force_login(olivia)
    return client


def resting(user, market, **fields):
    """An order row as the engine leaves it resting (written straight: these tests are
    about what the admin shows, the engine's tests about how the rows come about)."""
    fields = {"side": "sell", "price": Decimal("101"), "quantity": Decimal("5"), **fields}
    return Order.objects.create(user=user, market=market, remaining_quantity=fields["quantity"], **fields)


def test_an_orders_page_shows_the_fields_of_its_kind_only(admin_client, market, alice):
    expire_at = timezone.now() + timedelta(hours=1)
    iceberg = resting(
        alice,
        market,
        time_in_force="GTD",
        expire_at=expire_at,
        display_quantity=Decimal("1"),
        visible_quantity=Decimal("1"),
    )
    plain = resting(alice, market)

    page = admin_client.get(f"/admin/orders/order/{iceberg.pk}/change/").content.decode()
    assert ">Good till date<" in page and ">Iceberg<" in page and "Visible quantity" in page
    assert ">Trailing stop<" not in page and ">Order list<" not in page

    page = admin_client.get(f"/admin/orders/order/{plain.pk}/change/").content.decode()
    assert ">Iceberg<" not in page and ">Good till date<" not in page


def test_a_lists_page_shows_its_orders_and_the_order_links_back(admin_client, market, alice, bob):
    oco = OrderList.objects.create(user=alice, market=market, kind=OrderList.Kind.OCO)
    limit = resting(alice, market, order_list=oco, leg="limit")
    stop = resting(
        alice,
        market,
        order_list=oco,
        leg="stop",
        type="stop_market",
        price=None,
        stop_price=Decimal("95"),
        status="pending",
    )
    resting(bob, market)

    page = admin_client.get(f"/admin/orders/orderlist/{oco.pk}/change/").content.decode()
    assert f"/admin/orders/order/{limit.pk}/change/" in page and f"/admin/orders/order/{stop.pk}/change/" in page

    page = admin_client.get(f"/admin/orders/order/{stop.pk}/change/").content.decode()
    assert f'/admin/orders/orderlist/{oco.pk}/change/">Stop #{oco.pk}</a>' in page

    listed = admin_client.get("/admin/orders/order/", {"listed": "oco"}).context["cl"].result_list
    assert sorted(order.pk for order in listed) == [limit.pk, stop.pk]
    lists = admin_client.get("/admin/orders/orderlist/", {"kind__exact": "oco"}).context["cl"].result_list
    assert [(order_list.pk, order_list.open_count) for order_list in lists] == [(oco.pk, 2)]


def test_the_cancel_list_action_cancels_every_open_order_of_a_list_and_audits_it(admin_client, market, alice, bob):
    print_trade(bob, alice, "100")
    oco = oco_place(
        user=alice, market=market, side="sell", quantity=Decimal("1"), price=Decimal("105"), stop_price=Decimal("95")
    ).order_list

    done = admin_client.post(
        "/admin/orders/orderlist/", {"action": "cancel_list", "_selected_action": [oco.pk]}, follow=True
    )

    assert [str(message) for message in done.context["messages"]] == ["Cancelled 1 list(s)."]
    assert set(oco.orders.values_list("status", flat=True)) == {"cancelled"}
    assert OperatorAction.objects.get(kind="order_cancelled", user=alice).details == {"list": oco.pk}
    assert reconcile() == []
