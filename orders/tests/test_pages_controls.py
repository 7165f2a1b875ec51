"""Market integrity on the order ticket: the price band shown before submitting, and each
control's refusal shown where the ticket shows refusals."""

from decimal import Decimal

import pytest

from accounts.models import User
from marketdata.models import Market
from orders.engine.caches import forget_markets
from orders.models import Order

from .stories import buy, sell

HTMX = {"HTTP_HX_REQUEST": "true"}
# book_snapshot starts its own transaction on PostgreSQL (see test_pages).
pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture(autouse=True)
def fast_password_hashing(settings):
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]


@pytest.fixture
def as_alice(client, alice):
    client.force_login(alice)
    return client


def ticket(**fields):
    return {"side": "buy", "type": "limit", "price": "", "quantity": "", "time_in_force": "GTC", **fields}


def rules(**values):
    Market.objects.filter(symbol="QTX-USD").update(**values)
    forget_markets()


def test_the_ticket_shows_the_band_around_the_last_trade(as_alice, market, alice, bob):
    sell(bob, "1", at="100")
    buy(alice, "1", at="100")
    rules(price_band=Decimal("0.10"))
    page = as_alice.get("/markets/QTX-USD/").content.decode()
    assert "Price band" in page and "90.00 - 110.00" in page
    preview = as_alice.post("/markets/QTX-USD/ticket/preview/", ticket(price="100", quantity="1"), **HTMX)
    assert "90.00 - 110.00" in preview.content.decode()


def test_without_a_trade_the_band_is_around_the_middle_of_the_book(as_alice, market, alice, bob):
    rules(price_band=Decimal("0.10"))
    assert "Price band" not in as_alice.get("/markets/QTX-USD/").content.decode()  # nothing to measure from
    buy(bob, "1", at="90")
    sell(bob, "1", at="110")
    assert "90.00 - 110.00" in as_alice.get("/markets/QTX-USD/").content.decode()


def test_a_market_without_a_band_shows_none(as_alice, market, alice, bob):
    sell(bob, "1", at="100")
    buy(alice, "1", at="100")
    assert "Price band" not in as_alice.get("/markets/QTX-USD/").content.decode()


def test_the_ticket_shows_each_controls_refusal(as_alice, market, alice, bob):
    sell(bob, "1", at="100")
    buy(alice, "1", at="100")
    rules(price_band=Decimal("0.10"), max_order_quantity=Decimal("5"))

    response = as_alice.post("/markets/QTX-USD/ticket/", ticket(price="120", quantity="1"), **HTMX)
    assert response.status_code == 422
    assert "must be within 90.00 and 110.00 (10% around the reference 100.00)" in response.content.decode()

    response = as_alice.post("/markets/QTX-USD/ticket/", ticket(price="100", quantity="6"), **HTMX)
    assert response.status_code == 422
    assert "above this market&#x27;s limit of 5 QTX per order" in response.content.decode()

    User.objects.filter(pk=alice.pk).update(max_open_orders=0)
    response = as_alice.post("/markets/QTX-USD/ticket/", ticket(price="99", quantity="1"), **HTMX)
    assert response.status_code == 409
    assert "You already have 0 open orders" in response.content.decode()

    User.objects.filter(pk=alice.pk).update(trading_enabled=False)
    response = as_alice.post("/markets/QTX-USD/ticket/", ticket(price="99", quantity="1"), **HTMX)
    assert response.status_code == 403
    assert "Trading is disabled for this account" in response.content.decode()
    assert Order.objects.filter(user=alice).count() == 1
