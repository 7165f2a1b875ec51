"""Stop orders on the trader's pages: the ticket places them, open orders show them
pending with their stop price, the amend form changes a pending stop's stop price."""

from decimal import Decimal

import pytest

from orders import live
from orders.models import Order

from .stories import buy, print_trade, stop_sell
from .test_pages import HTMX, StreamsSpy, text, ticket


@pytest.fixture
def as_alice(client, alice, settings):
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
    client.force_login(alice)
    return client


@pytest.fixture
def tape_at_100(market, bob, carol):
    print_trade(bob, carol, "100")


def test_the_ticket_previews_a_stop_by_what_it_holds(as_alice, tape_at_100):
    fields = ticket(type="stop_limit", price="103.00", stop_price="102.00", quantity="2")
    page = text(as_alice.post("/markets/QTX-USD/ticket/preview/", fields, **HTMX))

    assert "until a trade at or above 102.00" in page
    assert "206.41" in page  # 2 x 103 + the 0.2% fee reserve, held while it waits


def test_alice_places_a_stop_and_sees_it_pending_among_her_open_orders(as_alice, tape_at_100, alice):
    fields = ticket(type="stop_market", side="sell", stop_price="99.00", quantity="1", time_in_force="IOC")
    asked = text(as_alice.post("/markets/QTX-USD/ticket/", fields, **HTMX))
    # It will sell at market: the ticket asks first, saying what it holds meanwhile.
    assert "Sell 1.00 QTX at market once a trade reaches 99.00?" in asked and "holding 1.00 QTX" in asked
    assert not Order.objects.filter(user=alice).exists()

    response = as_alice.post("/markets/QTX-USD/ticket/", {**fields, "confirm": "1"}, **HTMX)

    assert response.status_code == 200
    order = Order.objects.get(user=alice, status="pending")
    assert (order.type, order.stop_price, order.price) == ("stop_market", Decimal("99"), None)
    page = text(response)
    assert f"Order #{order.pk} (Sell 1 QTX) is pending until a trade reaches 99." in page
    assert f'id="order-{order.pk}"' in page and "pending, stop 99.00" in page


def test_the_ticket_refuses_a_stop_the_price_already_reached_at_its_field(as_alice, tape_at_100, alice):
    fields = ticket(type="stop_limit", price="101.00", stop_price="100.00", quantity="1")
    response = as_alice.post("/markets/QTX-USD/ticket/", fields, **HTMX)

    assert response.status_code == 422
    assert 'id="ticket-error-stop_price">The last trade, at 100' in text(response)
    assert not Order.objects.filter(user=alice, type="stop_limit").exists()


def test_a_limit_order_ignores_a_stop_price_left_in_the_field(as_alice, tape_at_100, alice):
    fields = ticket(price="95.00", stop_price="99.00", quantity="1")
    assert as_alice.post("/markets/QTX-USD/ticket/", fields, **HTMX).status_code == 200
    assert Order.objects.get(user=alice, status="open").stop_price is None


def test_the_amend_form_of_a_pending_stop_changes_its_stop_price(as_alice, tape_at_100, alice):
    order = stop_sell(alice, "1", stop="99").order
    form = text(as_alice.get(f"/orders/{order.pk}/amend/", **HTMX))
    assert 'name="stop_price" value="99"' in form and 'name="price"' not in form

    response = as_alice.post(f"/orders/{order.pk}/amend/", {"quantity": "1", "stop_price": "98.50"}, **HTMX)

    assert response.status_code == 200
    order.refresh_from_db()
    assert (order.stop_price, order.status) == (Decimal("98.50"), "pending")


@pytest.fixture
def streamed(monkeypatch):
    spy = StreamsSpy()
    monkeypatch.setattr(live, "streams", spy)
    return spy.sent


@pytest.mark.django_db(transaction=True)
def test_a_stop_that_triggers_is_a_toast_and_so_is_its_fill(market, alice, bob, carol, streamed):
    print_trade(bob, carol, "100")
    stop = stop_sell(alice, "1", stop="99").order
    buy(carol, "1", at="98")  # what the stop will sell into once it triggers
    assert live.renderer.flush()
    streamed.clear()

    print_trade(bob, carol, "99")  # reaches the stop: it triggers and sells at market

    assert live.renderer.flush()
    html = "".join(h for user_id, h in streamed if user_id == alice.pk)
    assert f"Stop triggered: order #{stop.pk}" in html and "stop 99.00, now at market" in html
    assert "Sold 1.00 QTX at 98.00" in html
    # Later news of the same order is not another trigger.
    assert html.count("Stop triggered") == 1


def test_a_quick_size_of_a_stop_market_buy_counts_what_it_will_hold(as_alice, tape_at_100):
    fields = ticket(type="stop_market", stop_price="101", size="1")
    page = text(as_alice.post("/markets/QTX-USD/ticket/preview/", fields, **HTMX))

    # It holds as a limit buy at 106.05 (5% above its stop) plus the fee reserve: 10,000 USD buys 94.10.
    assert 'name="quantity" id="id_quantity" value="94.1"' in page
    no_stop = text(as_alice.post("/markets/QTX-USD/ticket/preview/", {**fields, "stop_price": ""}, **HTMX))
    assert "Enter a stop price first" in no_stop
