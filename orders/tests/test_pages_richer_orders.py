"""The richer orders on the trader's pages: the ticket shows the fields of the kind chosen
(OCO, bracket, trailing stop, iceberg, GTD), explains a refusal next to its field, places
each through its service; open orders group a list's legs under one row with one Cancel."""

import re
from datetime import timedelta
from decimal import Decimal

import pytest
from django.utils import timezone

from orders.live import private_fragments
from orders.models import Order, OrderList
from orders.services import oco_place

from .stories import STARTING_QTX, available, print_trade, sell
from .test_pages import HTMX, reads_the_book, text, ticket


@pytest.fixture
def as_alice(client, alice, settings):
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
    client.force_login(alice)
    return client


@pytest.fixture
def tape_at_100(market, bob, carol):
    print_trade(bob, carol, "100")


def field_shown(page, name) -> bool:
    """Whether the ticket shows the field `name` (its wrapper has no `hidden`)."""
    wrapper = re.search(rf'<div class="field {name}-field[^"]*" data-kinds="[^"]*"( hidden)?>', page)
    assert wrapper, f"no {name} field on the ticket"
    return wrapper.group(1) is None


def error_at(page, name) -> str:
    return re.search(rf'id="ticket-error-{name}"[^>]*>([^<]*)<', page).group(1)


def oco(**fields):
    return ticket(
        **{"type": "oco", "side": "sell", "price": "105.00", "stop_price": "95.00", "quantity": "2", **fields}
    )


@reads_the_book
def test_the_ticket_shows_the_fields_of_the_chosen_kind_only(as_alice, tape_at_100):
    page = text(as_alice.get("/markets/QTX-USD/"))
    # A limit order: an iceberg's display, no stop, no stop-limit price, no expiry until GTD.
    assert field_shown(page, "display_quantity")
    assert not any(field_shown(page, name) for name in ("stop_price", "stop_limit_price", "expire_at"))

    refused = text(as_alice.post("/markets/QTX-USD/ticket/", oco(stop_limit_price="94.005"), **HTMX))

    assert field_shown(refused, "stop_limit_price") and field_shown(refused, "stop_price")
    assert not field_shown(refused, "display_quantity")
    assert error_at(refused, "stop_limit_price") == "price must be a multiple of the tick size 0.01."


@reads_the_book
def test_the_preview_of_an_oco_says_what_its_one_hold_is(as_alice, tape_at_100):
    page = text(as_alice.post("/markets/QTX-USD/ticket/preview/", oco(), **HTMX))

    assert "a limit at 105.00 and a stop at 95.00" in page
    assert "Holds 2.00 QTX meanwhile" in page  # one hold for both orders, not two


def test_an_oco_the_last_trade_has_passed_is_refused_at_its_price(as_alice, tape_at_100, alice):
    response = as_alice.post("/markets/QTX-USD/ticket/", oco(price="99.00"), **HTMX)

    assert response.status_code == 422
    assert error_at(text(response), "price").startswith(
        "A sell OCO&#x27;s price must be above the last trade price, 100"
    )
    assert not Order.objects.filter(user=alice).exists()


def test_an_oco_from_the_ticket_shows_as_one_list_and_is_cancelled_as_one(as_alice, tape_at_100, alice):
    response = as_alice.post("/markets/QTX-USD/ticket/", oco(), **HTMX)

    assert response.status_code == 200
    order_list = OrderList.objects.get(user=alice)
    page = text(response)
    assert f"OCO #{order_list.pk} (Sell 2 QTX) placed" in page
    # One row for the list with one Cancel, its two orders under it, without their own.
    head = re.search(rf'<tr id="order-list-{order_list.pk}".*?</tr>', page, re.S).group(0)
    assert "Cancel list" in head
    legs = re.findall(
        rf'<tr id="order-\d+" data-order-id="\d+" class="leg" data-list-id="{order_list.pk}">(.*?)</tr>', page, re.S
    )
    assert [("Limit" in leg, "Stop" in leg) for leg in legs] == [(True, False), (False, True)]
    assert "pending, stop 95.00" in legs[1] and "Cancel order" not in "".join(legs)
    assert available(alice, "QTX") == STARTING_QTX - 2

    cancelled = as_alice.post(f"/orders/lists/{order_list.pk}/cancel/", **HTMX)

    assert cancelled.status_code == 200
    assert f"List #{order_list.pk} cancelled." in text(cancelled)
    assert set(Order.objects.filter(order_list=order_list).values_list("status", flat=True)) == {"cancelled"}
    assert available(alice, "QTX") == STARTING_QTX
    assert 'id="order-list-' not in text(cancelled)


def test_someone_elses_list_cannot_be_cancelled(as_alice, tape_at_100, bob):
    order_list = oco_place(
        user=bob, market="QTX-USD", side="sell", quantity=Decimal("1"), price=Decimal("105"), stop_price=Decimal("95")
    ).order_list

    response = as_alice.post(f"/orders/lists/{order_list.pk}/cancel/", **HTMX)

    assert response.status_code == 404
    assert Order.objects.filter(order_list=order_list, status__in=["open", "pending"]).count() == 2


def test_an_expiry_that_is_not_a_time_is_refused_at_its_field(as_alice, market, alice):
    fields = ticket(price="95.00", quantity="1", time_in_force="GTD", expire_at="tomorrow")
    response = as_alice.post("/markets/QTX-USD/ticket/", fields, **HTMX)

    assert response.status_code == 422
    page = text(response)
    assert field_shown(page, "expire_at")
    assert error_at(page, "expire_at").startswith("expire_at must be an ISO 8601 time")
    assert not Order.objects.filter(user=alice).exists()


def test_a_gtd_order_from_the_ticket_shows_when_it_expires(as_alice, market, alice):
    # What a browser's datetime-local field sends: no seconds, no offset, read as UTC.
    expire_at = (timezone.now() + timedelta(hours=2)).replace(second=0, microsecond=0)
    fields = ticket(price="95.00", quantity="1", time_in_force="GTD", expire_at=f"{expire_at:%Y-%m-%dT%H:%M}")
    response = as_alice.post("/markets/QTX-USD/ticket/", fields, **HTMX)

    assert response.status_code == 200
    order = Order.objects.get(user=alice)
    assert (order.time_in_force, order.expire_at) == ("GTD", expire_at)
    assert f'until <time datetime="{expire_at:%Y-%m-%dT%H:%M:%S}+00:00"' in text(response)


def test_an_iceberg_from_the_ticket_shows_its_displayed_part_and_its_total(as_alice, market, alice):
    fields = ticket(side="sell", price="105.00", quantity="5", display_quantity="1")
    preview = text(as_alice.post("/markets/QTX-USD/ticket/preview/", fields, **HTMX))
    assert "An iceberg: the book shows 1.00 at a time." in preview

    response = as_alice.post("/markets/QTX-USD/ticket/", fields, **HTMX)

    assert response.status_code == 200
    order = Order.objects.get(user=alice)
    assert (order.display_quantity, order.visible_quantity) == (Decimal("1"), Decimal("1"))
    assert "shows 1.00 of 5.00" in text(response)


def bracket(**fields):
    terms = {"type": "bracket", "price": "99.00", "quantity": "2", "take_profit_price": "110.00"}
    return ticket(**{**terms, "stop_loss_stop_price": "95.00", **fields})


def test_a_bracket_is_refused_at_the_field_it_breaks(as_alice, market, alice):
    response = as_alice.post("/markets/QTX-USD/ticket/", bracket(take_profit_price=""), **HTMX)

    assert response.status_code == 422
    page = text(response)
    assert field_shown(page, "take_profit_price") and field_shown(page, "stop_loss_price")
    assert not field_shown(page, "display_quantity") and not field_shown(page, "stop_limit_price")
    assert error_at(page, "take_profit_price") == "A bracket needs a take-profit price."
    off_tick = text(as_alice.post("/markets/QTX-USD/ticket/", bracket(stop_loss_price="94.005"), **HTMX))
    assert error_at(off_tick, "stop_loss_price") == "price must be a multiple of the tick size 0.01."
    # The service's own rules for a bracket, at their fields: exits either side of the entry, a buy.
    below = text(as_alice.post("/markets/QTX-USD/ticket/", bracket(take_profit_price="98.00"), **HTMX))
    assert error_at(below, "take_profit_price") == "The take-profit&#x27;s price must be above the entry&#x27;s price."
    sold = text(as_alice.post("/markets/QTX-USD/ticket/", bracket(side="sell"), **HTMX))
    assert error_at(sold, "side").startswith("A bracket&#x27;s entry is a buy")
    assert not Order.objects.filter(user=alice).exists()


def test_a_bracket_from_the_ticket_shows_its_exits_under_it_once_the_entry_fills(as_alice, tape_at_100, alice, bob):
    response = as_alice.post("/markets/QTX-USD/ticket/", bracket(), **HTMX)

    assert response.status_code == 200
    order_list = OrderList.objects.get(user=alice)
    page = text(response)
    assert f"Bracket #{order_list.pk} (Buy 2 QTX) placed: its entry is open." in page
    assert "when the entry fills: take-profit 110.00, stop-loss 95.00" in page

    sell(bob, "2", at="99")  # the entry fills: its exits come in the same command
    page = private_fragments(alice)

    legs = re.findall(rf'class="leg" data-list-id="{order_list.pk}">(.*?)</tr>', page, re.S)
    assert [("Take profit" in leg, "Stop loss" in leg) for leg in legs] == [(True, False), (False, True)]
    assert "110.00" in legs[0] and "pending, stop 95.00" in legs[1]
    assert "when the entry fills" not in page

    as_alice.post(f"/orders/lists/{order_list.pk}/cancel/", **HTMX)

    assert not Order.objects.active().filter(order_list=order_list).exists()
    assert available(alice, "QTX") == STARTING_QTX + 2


def test_a_trailing_stop_from_the_ticket_shows_its_stop_moving_with_the_market(
    as_alice, tape_at_100, alice, bob, carol
):
    fields = ticket(type="trailing_stop", side="sell", trailing_delta="2.00", quantity="1", time_in_force="IOC")
    asked = text(as_alice.post("/markets/QTX-USD/ticket/", fields, **HTMX))
    # It sells at market once triggered: the ticket asks first, saying where the stop starts.
    assert "Sell 1.00 QTX at market once a trade reaches 98.00?" in asked

    placed = text(as_alice.post("/markets/QTX-USD/ticket/", {**fields, "confirm": "1"}, **HTMX))

    order = Order.objects.get(user=alice, type="trailing_stop")
    assert (order.status, order.stop_price, order.trailing_delta) == ("pending", Decimal("98"), Decimal("2"))
    assert "pending, stop 98.00" in placed and "trails 2.00" in placed
    print_trade(bob, carol, "103")
    assert "pending, stop 101.00" in private_fragments(alice)
