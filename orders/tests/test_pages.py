"""The trader's pages through Django's test client: what alice sees and what her clicks do.

The cast comes from conftest.py: alice, bob and carol with STARTING_USD and STARTING_QTX on
QTX-USD (tick 0.01, lot 0.01, min notional 1, maker 0.1%, taker 0.2%).
"""

import csv
import io
import time
from decimal import Decimal

import pytest
from django.test import Client

from accounts.models import LedgerEntry
from accounts.services import balance_deposit
from orders import live
from orders.events import OrderChanged
from orders.models import Order
from orders.services import order_cancel, order_place

from .stories import available, buy, sell

HTMX = {"HTTP_HX_REQUEST": "true"}
# On PostgreSQL book_snapshot starts its own REPEATABLE READ transaction, which has to be
# the outermost one: tests of pages that read the book run outside a wrapping transaction.
reads_the_book = pytest.mark.django_db(transaction=True)


@pytest.fixture(autouse=True)
def fast_password_hashing(settings):
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]


@pytest.fixture
def as_alice(client, alice):
    client.force_login(alice)
    return client


def ticket(**fields):
    data = {"side": "buy", "type": "limit", "price": "", "quantity": "", "time_in_force": "GTC"}
    data.update(fields)
    return data


def text(response):
    return response.content.decode()


# --- Overview --------------------------------------------------------------------------


def test_overview_lists_each_market_with_its_last_price(client, market, alice, bob):
    sell(bob, "2", at="101.50")
    buy(alice, "2", at="101.50")

    response = client.get("/")

    assert response.status_code == 200
    page = text(response)
    assert 'id="market-row-QTX-USD"' in page
    assert "101.50" in page
    assert 'ws-connect="/ws/live/"' in page


def test_overview_invites_a_visitor_to_register(client, market):
    page = text(client.get("/"))
    assert "Create an account" in page
    assert "Portfolio" not in page


# --- Market page -----------------------------------------------------------------------


@reads_the_book
def test_a_visitor_sees_the_market_but_is_asked_to_log_in_to_trade(client, market, bob):
    sell(bob, "1", at="105")

    response = client.get("/markets/QTX-USD/")

    assert response.status_code == 200
    page = text(response)
    assert 'id="book"' in page and 'id="tape"' in page and 'id="ticker"' in page and 'id="chart"' in page
    assert 'ws-connect="/ws/live/QTX-USD/"' in page
    assert "Log in to trade QTX-USD" in page
    assert 'id="ticket"' not in page
    assert 'id="open-orders"' not in page


@reads_the_book
def test_a_halted_market_says_so_above_the_ticket(as_alice, market):
    market.status = market.Status.HALTED
    market.save()

    page = text(as_alice.get("/markets/QTX-USD/"))
    assert "Trading on QTX-USD is halted" in page

    response = as_alice.post("/markets/QTX-USD/ticket/", ticket(price="99", quantity="1"), **HTMX)
    assert response.status_code == 409
    assert "QTX-USD is halted: new orders are refused." in text(response)


def test_an_unknown_market_is_not_found(client, market):
    assert client.get("/markets/NOPE-USD/").status_code == 404


@reads_the_book
def test_alice_sees_her_ticket_balances_and_open_orders(as_alice, market, alice):
    buy(alice, "2", at="99.50")

    page = text(as_alice.get("/markets/QTX-USD/"))

    assert 'id="ticket"' in page
    assert "Available" in page and "9,800.60" in page  # 10000 - 2 x 99.50 - 0.2% taker reserve
    assert 'id="open-orders"' in page and "99.50" in page
    assert 'id="fills"' in page and 'id="balances"' in page
    # Her level is listed in the private #my-levels fragment, which app.js marks in the book.
    assert '<li data-symbol="QTX-USD" data-side="buy" data-price="99.50"></li>' in page


def _data(page, attribute, of):
    """A JSON data attribute of the element with id `of` (html-unescaped)."""
    import html
    import json
    import re

    tag = re.search(rf'<[^>]* id="{of}"[^>]*>', page, re.S).group(0)
    return json.loads(html.unescape(re.search(rf'{attribute}="([^"]*)"', tag).group(1)))


@reads_the_book
def test_the_chart_starts_with_the_history_of_its_interval_and_the_newest_bar_of_every_one(client, market, alice, bob):
    sell(bob, "2", at="101.50")
    buy(alice, "2", at="101.50")

    page = text(client.get("/markets/QTX-USD/?interval=5m"))

    history = _data(page, "data-history", "price-chart")
    assert len(history) == 1
    when, open_, high, low, close, volume = history[0]
    assert when % 300 == 0 and (open_, high, low, close) == ("101.50000000",) * 4 and volume == "2.00000000"
    assert 'data-interval="5m" aria-current="true"' in page
    # The live feed carries the current bar of each interval, whatever the chart shows.
    tails = _data(page, "data-tails", "chart")
    assert sorted(tails) == ["1d", "1h", "1m", "5m"]
    assert all(rows[-1][4] == "101.50000000" for rows in tails.values())


def test_an_unknown_interval_falls_back_to_one_minute(client, market):
    page = text(client.get("/markets/QTX-USD/?interval=7y"))
    assert 'id="price-chart"' in page and 'data-interval="1m"' in page
    assert _data(page, "data-history", "price-chart") == []


def test_the_book_offers_price_groups_in_multiples_of_the_tick(client, market):
    page = text(client.get("/markets/QTX-USD/"))
    for factor, step in (("1", "0.01"), ("10", "0.1"), ("100", "1"), ("1000", "10")):
        assert f'<option value="{factor}">{step}</option>' in page
    assert 'id="depth-chart"' in page and 'data-tick="0.01"' in page


# --- Ticket preview --------------------------------------------------------------------


@reads_the_book
def test_the_preview_prices_a_limit_buy_with_its_fee(as_alice, market):
    response = as_alice.post("/markets/QTX-USD/ticket/preview/", ticket(price="100.00", quantity="3"), **HTMX)

    assert response.status_code == 200
    page = text(response)
    assert "Est. cost" in page
    assert "300.30" in page  # rests as a maker: 300 + 0.1% maker fee
    assert "0.30" in page
    assert "10,000.00" in page  # available USD


@reads_the_book
def test_the_preview_prices_a_market_buy_from_the_book(as_alice, market, bob, carol):
    sell(bob, "1", at="100")
    sell(carol, "1", at="110")

    page = text(
        as_alice.post(
            "/markets/QTX-USD/ticket/preview/", ticket(type="market", quantity="2", time_in_force="IOC"), **HTMX
        )
    )

    assert "210.42" in page  # 100 + 110, plus 0.2% taker fee
    assert "105.00" in page  # average price


@reads_the_book
def test_the_preview_says_what_cannot_fill(as_alice, market, bob):
    sell(bob, "1", at="100")

    page = text(
        as_alice.post(
            "/markets/QTX-USD/ticket/preview/", ticket(type="market", quantity="3", time_in_force="IOC"), **HTMX
        )
    )

    assert "2.00 would not fill and expires" in page


def test_the_preview_shows_the_engines_refusal_at_its_field(as_alice, market):
    page = text(as_alice.post("/markets/QTX-USD/ticket/preview/", ticket(price="100.001", quantity="1"), **HTMX))

    assert 'id="ticket-error-price" hx-swap-oob="true">price must be a multiple of the tick size 0.01.<' in page


def test_the_preview_judges_nothing_before_a_quantity_is_typed(as_alice, market):
    page = text(as_alice.post("/markets/QTX-USD/ticket/preview/", ticket(price=""), **HTMX))

    assert 'id="ticket-error-price" hx-swap-oob="true"></p>' in page
    assert 'id="ticket-error-quantity" hx-swap-oob="true"></p>' in page


@reads_the_book
def test_the_preview_warns_that_post_only_would_take(as_alice, market, bob):
    sell(bob, "1", at="100")

    page = text(
        as_alice.post("/markets/QTX-USD/ticket/preview/", ticket(price="100", quantity="1", post_only="on"), **HTMX)
    )

    assert "would be rejected" in page


@reads_the_book
def test_the_preview_warns_about_funds(as_alice, market):
    page = text(as_alice.post("/markets/QTX-USD/ticket/preview/", ticket(price="1000", quantity="20"), **HTMX))

    assert "More than your available USD" in page


@reads_the_book
def test_the_preview_of_a_sell_shows_the_base_asset_available(as_alice, market):
    page = text(
        as_alice.post("/markets/QTX-USD/ticket/preview/", ticket(side="sell", price="100", quantity="1"), **HTMX)
    )

    assert "Est. proceeds" in page
    assert "100.00 <span" in page and "QTX" in page


# --- Ticket submit ---------------------------------------------------------------------


def test_alice_places_a_limit_order_and_sees_it_among_her_open_orders(as_alice, market, alice):
    response = as_alice.post(
        "/markets/QTX-USD/ticket/", ticket(price="99.00", quantity="1.5", client_order_id="t-1"), **HTMX
    )

    assert response.status_code == 200
    order = Order.objects.get(user=alice)
    assert (order.side, order.price, order.quantity, order.status) == ("buy", Decimal("99"), Decimal("1.5"), "open")
    page = text(response)
    assert f"Order #{order.pk} (Buy 1.5 QTX) is open." in page
    assert f'id="order-{order.pk}"' in page  # the open-orders fragment, out of band
    assert 'id="balances" class="table-wrap" hx-swap-oob="true"' in page
    # The ticket comes back cleared, with a fresh client order id, still on the buy side.
    assert 'name="quantity" id="id_quantity" value=""' in page
    assert 'value="t-1"' not in page


def test_an_order_that_trades_says_how_much_filled(as_alice, market, bob):
    sell(bob, "1", at="100")

    page = text(as_alice.post("/markets/QTX-USD/ticket/", ticket(price="100", quantity="1"), **HTMX))

    assert "1 filled, now filled." in page
    assert 'id="fills"' in page


def test_the_ticket_refuses_what_the_api_refuses_inline(as_alice, market, alice):
    response = as_alice.post("/markets/QTX-USD/ticket/", ticket(price="99.001", quantity="1"), **HTMX)

    assert response.status_code == 422
    page = text(response)
    assert "price must be a multiple of the tick size 0.01." in page
    assert 'value="99.001"' in page  # what she typed stays
    assert not Order.objects.filter(user=alice).exists()


def test_the_ticket_refuses_a_market_order_that_would_rest(as_alice, market):
    response = as_alice.post(
        "/markets/QTX-USD/ticket/", ticket(type="market", quantity="1", time_in_force="GTC"), **HTMX
    )

    assert response.status_code == 422
    assert "A market order never rests: use IOC or FOK." in text(response)


def test_the_ticket_refuses_an_order_beyond_her_funds(as_alice, market, alice):
    response = as_alice.post("/markets/QTX-USD/ticket/", ticket(price="1000", quantity="20"), **HTMX)

    assert response.status_code == 422
    assert "Not enough USD" in text(response)
    assert available(alice, "USD") == Decimal("10000")


def test_a_double_submit_places_one_order(as_alice, market, alice):
    data = ticket(price="99", quantity="1", client_order_id="same-ticket")
    as_alice.post("/markets/QTX-USD/ticket/", data, **HTMX)
    page = text(as_alice.post("/markets/QTX-USD/ticket/", data, **HTMX))

    assert Order.objects.filter(user=alice).count() == 1
    assert "was placed already" in page


def test_without_javascript_the_ticket_posts_and_returns_to_the_market(as_alice, market, alice):
    response = as_alice.post("/markets/QTX-USD/ticket/", ticket(price="99", quantity="1"))

    assert response.status_code == 302
    assert response["Location"] == "/markets/QTX-USD/"
    assert Order.objects.filter(user=alice).count() == 1


@reads_the_book
def test_without_javascript_a_refused_ticket_shows_the_page_with_the_error(as_alice, market):
    response = as_alice.post("/markets/QTX-USD/ticket/", ticket(price="99", quantity="0.001"))

    assert response.status_code == 422
    page = text(response)
    assert "<html" in page and "quantity must be a multiple of the lot size 0.01." in page


def test_a_visitor_posting_the_ticket_is_sent_to_log_in(client, market):
    response = client.post("/markets/QTX-USD/ticket/", ticket(price="99", quantity="1"))

    assert response.status_code == 302
    assert response["Location"].startswith("/accounts/login/?next=")
    assert not Order.objects.exists()


def test_an_htmx_request_without_a_session_sends_the_page_to_log_in(client, market):
    response = client.post(
        "/markets/QTX-USD/ticket/preview/",
        ticket(price="99", quantity="1"),
        HTTP_HX_CURRENT_URL="http://testserver/markets/QTX-USD/",
        **HTMX,
    )

    assert response.status_code == 200
    assert response["HX-Redirect"] == "/accounts/login/?next=/markets/QTX-USD/"


# --- Cancel and amend ------------------------------------------------------------------


def test_alice_cancels_an_open_order(as_alice, market, alice):
    order = buy(alice, "1", at="99").order

    response = as_alice.post(f"/orders/{order.pk}/cancel/", **HTMX)

    assert response.status_code == 200
    order.refresh_from_db()
    assert order.status == "cancelled"
    page = text(response)
    assert f"Order #{order.pk} cancelled." in page
    assert f'id="order-{order.pk}"' not in page
    assert available(alice, "USD") == Decimal("10000")


def test_someone_elses_order_cannot_be_cancelled(as_alice, market, bob):
    order = buy(bob, "1", at="99").order

    response = as_alice.post(f"/orders/{order.pk}/cancel/", **HTMX)

    assert response.status_code == 404
    assert "No such order." in text(response)
    order.refresh_from_db()
    assert order.status == "open"


def test_cancelling_twice_says_the_order_is_no_longer_open(as_alice, market, alice):
    order = buy(alice, "1", at="99").order
    as_alice.post(f"/orders/{order.pk}/cancel/", **HTMX)

    response = as_alice.post(f"/orders/{order.pk}/cancel/", **HTMX)

    assert response.status_code == 409
    assert "The order is cancelled, no longer open." in text(response)


def test_without_javascript_a_cancel_returns_to_the_page_it_came_from(as_alice, market, alice):
    order = buy(alice, "1", at="99").order

    response = as_alice.post(f"/orders/{order.pk}/cancel/", HTTP_REFERER="http://testserver/portfolio/")
    assert response.status_code == 302 and response["Location"] == "http://testserver/portfolio/"

    other = buy(alice, "1", at="98").order
    response = as_alice.post(f"/orders/{other.pk}/cancel/", HTTP_REFERER="https://evil.example.com/")
    assert response["Location"] == "/markets/QTX-USD/"


def test_cancel_needs_a_post(as_alice, market, alice):
    order = buy(alice, "1", at="99").order
    assert as_alice.get(f"/orders/{order.pk}/cancel/").status_code == 405


def test_the_amend_form_comes_prefilled(as_alice, market, alice):
    order = buy(alice, "1.5", at="99").order

    response = as_alice.get(f"/orders/{order.pk}/amend/", **HTMX)

    assert response.status_code == 200
    page = text(response)
    assert f"Amend order #{order.pk}" in page
    assert 'value="99"' in page and 'value="1.5"' in page
    assert "<html" not in page


def test_without_javascript_the_amend_form_is_a_page(as_alice, market, alice):
    order = buy(alice, "1", at="99").order
    page = text(as_alice.get(f"/orders/{order.pk}/amend/"))
    assert "<html" in page and f"Amend order #{order.pk}" in page


def test_alice_amends_the_price_of_an_order(as_alice, market, alice):
    order = buy(alice, "1", at="99").order

    response = as_alice.post(f"/orders/{order.pk}/amend/", {"price": "98.50", "quantity": "1"}, **HTMX)

    assert response.status_code == 200
    assert "qt:amended" in response["HX-Trigger"]
    order.refresh_from_db()
    assert order.price == Decimal("98.50")
    assert f"Order #{order.pk} amended." in text(response)


def test_an_amend_off_the_tick_is_refused_at_the_price(as_alice, market, alice):
    order = buy(alice, "1", at="99").order

    response = as_alice.post(f"/orders/{order.pk}/amend/", {"price": "98.505", "quantity": "1"}, **HTMX)

    assert response.status_code == 422
    page = text(response)
    assert 'id="amend-error-price">price must be a multiple of the tick size 0.01.<' in page
    assert 'value="98.505"' in page
    order.refresh_from_db()
    assert order.price == Decimal("99")


def test_an_amend_below_what_filled_is_refused_at_the_quantity(as_alice, market, alice, bob):
    order = buy(alice, "2", at="100").order
    sell(bob, "1", at="100")

    response = as_alice.post(f"/orders/{order.pk}/amend/", {"price": "100", "quantity": "1"}, **HTMX)

    assert response.status_code == 422
    assert "The new quantity must exceed the 1 already filled." in text(response)


def test_someone_elses_order_cannot_be_amended(as_alice, market, bob):
    order = buy(bob, "1", at="99").order
    assert as_alice.get(f"/orders/{order.pk}/amend/", **HTMX).status_code == 404
    assert as_alice.post(f"/orders/{order.pk}/amend/", {"price": "98"}, **HTMX).status_code == 404


def test_without_javascript_an_amend_returns_to_the_market(as_alice, market, alice):
    order = buy(alice, "1", at="99").order

    response = as_alice.post(f"/orders/{order.pk}/amend/", {"price": "98", "quantity": ""})

    assert response.status_code == 302
    assert response["Location"] == "/markets/QTX-USD/"


# --- Private fragments -----------------------------------------------------------------


def test_a_page_socket_starts_from_all_private_fragments(market, alice):
    buy(alice, "1", at="99")

    html = live.user_fragments(alice.pk)

    for fragment in ['id="open-orders"', 'id="fills"', 'id="balances"', 'id="my-levels"']:
        assert fragment in html
    assert html.count('hx-swap-oob="true"') == 4
    assert "csrfmiddlewaretoken" not in html  # no request here: htmx sends the token


def test_the_streams_know_how_to_render_a_page_sockets_private_fragments():
    from quantumtrades.core import streams

    assert streams.publishing.user_fragments is live.user_fragments


class StreamsSpy:
    def __init__(self):
        self.sent = []

    def stream_to_user(self, user_id, html):
        self.sent.append((user_id, html))

    def users_watching(self, user_ids):
        return set(user_ids)


@pytest.fixture
def streamed(monkeypatch):
    spy = StreamsSpy()
    monkeypatch.setattr(live, "streams", spy)
    return spy.sent


@pytest.mark.django_db(transaction=True)
def test_a_trade_streams_each_traders_fragments_once_per_batch(market, alice, bob, streamed):
    sell(bob, "1", at="100")
    assert live.renderer.flush()
    streamed.clear()

    buy(alice, "1", at="100")

    assert live.renderer.flush()  # rendered off the committing thread
    by_user = {}
    for user_id, html in streamed:
        by_user.setdefault(user_id, []).append(html)
    assert set(by_user) == {alice.pk, bob.pk}  # the fee account has no pages
    # One batch per command (orders, fills and balances together): one push per trader.
    assert len(by_user[alice.pk]) == 1 and len(by_user[bob.pk]) == 1
    alice_html = "".join(by_user[alice.pk])
    assert alice_html.count('id="balances"') == 1
    assert alice_html.count('id="open-orders"') == 1
    assert alice_html.count('id="fills"') == 1
    assert alice_html.count('id="my-levels"') == 1


@pytest.mark.django_db(transaction=True)
def test_a_fill_is_a_toast_for_the_maker_and_the_taker(market, alice, bob, carol, streamed):
    sell(bob, "1", at="100")
    sell(carol, "2", at="101")
    assert live.renderer.flush()
    streamed.clear()

    buy(alice, "2", at="101")  # takes bob's 1 at 100 and 1 of carol's at 101

    assert live.renderer.flush()
    html = {user_id: "".join(h for u, h in streamed if u == user_id) for user_id, _ in streamed}
    assert 'hx-swap-oob="beforeend:#toasts"' in html[alice.pk]
    # One toast per order, however many fills it took.
    assert html[alice.pk].count("data-toast") == 1
    assert "Bought 2.00 QTX at avg. 100.50" in html[alice.pk] and "2 fills" in html[alice.pk]
    assert "taker" in html[alice.pk]
    assert "Sold 1.00 QTX at 100.00" in html[bob.pk] and "maker" in html[bob.pk]
    assert "Sold 1.00 QTX at 101.00" in html[carol.pk]


@pytest.mark.django_db(transaction=True)
def test_a_cancel_and_an_expiry_are_toasts_and_a_page_that_reconnects_gets_none(market, alice, bob, streamed):
    resting = order_place(user=alice, market=market, side="buy", price=Decimal("90"), quantity=Decimal("1")).order
    assert live.renderer.flush()
    streamed.clear()

    order_cancel(user=alice, order_id=resting.pk)
    order_place(user=bob, market=market, side="sell", type="market", quantity=Decimal("1"), time_in_force="IOC")

    assert live.renderer.flush()
    alice_html = "".join(h for u, h in streamed if u == alice.pk)
    bob_html = "".join(h for u, h in streamed if u == bob.pk)
    assert f"Order #{resting.pk} cancelled" in alice_html and "Buy 1.00 QTX at 90.00 on QTX-USD" in alice_html
    assert "expired" in bob_html and "1.00 did not fill" in bob_html
    # News, not state: what a (re)connecting page is sent holds no toast.
    assert "data-toast" not in live.user_fragments(alice.pk)


def test_a_stop_is_a_toast_when_it_triggers_not_while_it_waits_or_fills_later():
    base = {"id": 7, "symbol": "QTX-USD", "side": "buy", "type": "stop_limit", "price": "101", "stop_price": "100",
            "quantity": "1", "filled_quantity": "0", "remaining_quantity": "1"}  # fmt: skip
    at = {"updated_at": "2026-01-01T10:00:00+00:00"}
    waiting = OrderChanged(user_id=1, market_id=1, order={**base, **at, "status": "pending", "triggered_at": None})
    triggered = OrderChanged(
        user_id=1, market_id=1, order={**base, **at, "status": "open", "triggered_at": at["updated_at"]}
    )
    later = OrderChanged(
        user_id=1,
        market_id=1,
        order={**base, "status": "partially_filled", "triggered_at": at["updated_at"],
               "updated_at": "2026-01-01T10:05:00+00:00"},
    )  # fmt: skip

    assert live.toasts_by_user([waiting]) == {}
    assert [toast["kind"] for toast in live.toasts_by_user([triggered])[1]] == ["triggered"]
    assert live.toasts_by_user([later]) == {}


def test_nothing_is_rendered_for_traders_without_a_page_open(market, alice, monkeypatch):
    calls = []
    monkeypatch.setattr(live, "private_fragments", lambda *args, **kwargs: calls.append(args) or "")

    class Nobody(StreamsSpy):
        def users_watching(self, user_ids):
            return set()

    monkeypatch.setattr(live, "streams", Nobody())
    live.on_events(live_batch(alice))
    assert live.renderer.flush()

    assert calls == []


@pytest.mark.django_db(transaction=True)
def test_private_fragments_render_at_once_then_at_most_once_per_interval(market, alice, settings, monkeypatch):
    assert live.renderer.flush()  # what the fixtures' deposits queued
    settings.STREAMS = {**settings.STREAMS, "PAGE_INTERVAL": 0.5}
    renders = []
    monkeypatch.setattr(live, "private_fragments", lambda user, kinds, **kwargs: renders.append(time.monotonic()) or "")
    spy = StreamsSpy()
    monkeypatch.setattr(live, "streams", spy)
    monkeypatch.setattr(live, "renderer", live.Renderer())
    started = time.monotonic()

    live.on_events(live_batch(alice))
    assert live.renderer.flush()
    for _ in range(3):  # a burst right after: merged into one render, one interval later
        live.on_events(live_batch(alice))
    assert live.renderer.flush()

    assert len(renders) == 2 and len(spy.sent) == 2
    assert renders[0] - started < 0.5, "the first change after a quiet spell is rendered at once"
    assert renders[1] - renders[0] >= 0.49


def live_batch(user):
    from accounts.events import BalanceChanged

    return [BalanceChanged(user_id=user.pk, asset="USD", available=Decimal("1"), held=Decimal("0"))]


# --- Portfolio -------------------------------------------------------------------------


def test_the_portfolio_needs_a_session(client):
    response = client.get("/portfolio/")
    assert response.status_code == 302
    assert response["Location"] == "/accounts/login/?next=/portfolio/"


def test_the_portfolio_values_balances_at_last_prices(as_alice, market, alice, bob):
    sell(bob, "1", at="120")
    buy(alice, "1", at="120")  # alice now has 101 QTX; the last price is 120

    page = text(as_alice.get("/portfolio/"))

    assert "Balances" in page
    assert "101.00" in page  # QTX total
    assert "12,120.00" in page  # 101 x 120
    # USD: 10000 - 120 - 0.24 fee = 9879.76; total value 9879.76 + 12120 (+ BTC unpriced)
    assert "9,879.76" in page
    assert "21,999.76" in page


def test_the_ledger_is_paginated(as_alice, market, alice):
    for n in range(30):
        balance_deposit(user=alice, asset="USD", amount=Decimal("1"), reason=f"gift {n}")
    entries = LedgerEntry.objects.filter(user=alice).count()
    assert entries > 25

    newest = list(LedgerEntry.objects.filter(user=alice).order_by("-id").values_list("id", flat=True))

    first = text(as_alice.get("/portfolio/"))
    # Keyset pages: "older than the last row shown", never a page number (which needs a count).
    assert 'rel="next"' in first and f"ledger_before={newest[24]}" in first
    assert f'id="ledger-{newest[0]}"' in first and f'id="ledger-{newest[25]}"' not in first
    second = as_alice.get(f"/portfolio/?ledger_before={newest[24]}", HTTP_HX_TARGET="ledger", **HTMX)

    assert second.status_code == 200
    page = text(second)
    assert page.lstrip().startswith('<div id="ledger">')
    assert f'id="ledger-{newest[25]}"' in page and f'id="ledger-{newest[24]}"' not in page
    assert f"ledger_after={newest[25]}" in page and "Oldest" in page
    assert "<html" not in page
    back = text(as_alice.get(f"/portfolio/?ledger_after={newest[25]}", HTTP_HX_TARGET="ledger", **HTMX))
    assert f'id="ledger-{newest[0]}"' in back and f'id="ledger-{newest[24]}"' in back and "Newest" in back


def test_order_history_filters_by_market_and_status(as_alice, market, btc_market, alice):
    kept = buy(alice, "1", at="99").order
    cancelled = buy(alice, "1", at="98").order
    as_alice.post(f"/orders/{cancelled.pk}/cancel/", **HTMX)
    on_btc = order_place(user=alice, market=btc_market, side="buy", quantity=Decimal("0.001"), price=Decimal("20000"))

    page = text(as_alice.get("/portfolio/?market=QTX-USD&status=open", HTTP_HX_TARGET="order-history", **HTMX))

    assert f'id="history-{kept.pk}"' in page
    assert f'id="history-{cancelled.pk}"' not in page
    assert f'id="history-{on_btc.order.pk}"' not in page
    page = text(as_alice.get("/portfolio/?status=cancelled", HTTP_HX_TARGET="order-history", **HTMX))
    assert f'id="history-{cancelled.pk}"' in page and f'id="history-{kept.pk}"' not in page


def test_the_ledger_exports_as_csv_with_plain_decimals(as_alice, market, alice):
    balance_deposit(user=alice, asset="USD", amount=Decimal("0.5"), reason='=HYPERLINK("x")')
    buy(alice, "1", at="99")

    response = as_alice.get("/portfolio/ledger.csv")

    assert response.status_code == 200
    assert response["Content-Type"] == "text/csv; charset=utf-8"
    assert response["Content-Disposition"].startswith('attachment; filename="quantumtrades-ledger-alice-')
    rows = list(csv.DictReader(io.StringIO(b"".join(response.streaming_content).decode())))
    assert len(rows) == LedgerEntry.objects.filter(user=alice).count()
    assert [row["id"] for row in rows] == sorted((row["id"] for row in rows), key=int)  # oldest first
    gift = next(row for row in rows if row["available_delta"] == "0.50000000")
    assert gift["reason"] == '\'=HYPERLINK("x")'  # no formula in a spreadsheet
    hold = next(row for row in rows if row["kind"] == "hold")
    assert hold["available_delta"] == "-99.19800000" and hold["held_delta"] == "99.19800000"
    assert all("E" not in row["available_after"] for row in rows)


def test_the_csv_needs_a_session(client):
    assert client.get("/portfolio/ledger.csv").status_code == 302


# --- CSRF: every POST --------------------------------------------------------------------


@pytest.mark.parametrize(
    "path",
    [
        "/markets/QTX-USD/ticket/",
        "/markets/QTX-USD/ticket/preview/",
        "/orders/{order}/cancel/",
        "/orders/{order}/amend/",
        "/accounts/keep-alive/",
        "/accounts/logout/",
    ],
)
def test_a_post_without_the_csrf_token_is_refused(market, alice, path):
    order = buy(alice, "1", at="99").order
    client = Client(enforce_csrf_checks=True)
    client.force_login(alice)

    response = client.post(path.format(order=order.pk), ticket(price="99", quantity="1"), **HTMX)

    assert response.status_code == 403
    order.refresh_from_db()
    assert order.status == "open" and order.price == Decimal("99")
    assert Order.objects.filter(user=alice).count() == 1


@reads_the_book
def test_a_post_with_the_csrf_token_from_the_page_is_accepted(market, alice):
    client = Client(enforce_csrf_checks=True)
    client.force_login(alice)
    client.get("/markets/QTX-USD/")
    token = client.cookies["csrftoken"].value

    response = client.post("/markets/QTX-USD/ticket/", ticket(price="99", quantity="1"), HTTP_X_CSRFTOKEN=token, **HTMX)

    assert response.status_code == 200
    assert Order.objects.filter(user=alice).count() == 1


# --- Quick sizes and the market order's confirmation --------------------------------------


@reads_the_book
def test_a_quick_size_fills_the_quantity_that_share_of_her_balance_pays_for(as_alice, market):
    response = as_alice.post("/markets/QTX-USD/ticket/preview/", ticket(price="100", size="0.25"), **HTMX)

    page = text(response)
    # A quarter of 10,000 USD at 100 with the 0.2% fee reserve: 24.95 QTX (24.96 would need 2,500.01).
    assert 'name="quantity" id="id_quantity" value="24.95"' in page and 'hx-swap-oob="true"' in page
    assert "2,497.49" in page  # the estimate comes along: 2,495 and the 0.1% maker fee
    sell_all = text(as_alice.post("/markets/QTX-USD/ticket/preview/", ticket(side="sell", size="1"), **HTMX))
    assert 'value="100"' in sell_all  # all of her 100 QTX


def test_a_quick_size_at_no_price_asks_for_one(as_alice, market):
    page = text(as_alice.post("/markets/QTX-USD/ticket/preview/", ticket(price="", size="0.5"), **HTMX))

    assert 'id="ticket-error-quantity" hx-swap-oob="true">Enter a price first: the size depends on it.<' in page
    assert 'id="id_quantity"' not in page  # the field she has is left as it is
    for bad in ("abc", "1e999999", "-5", "0.25x"):
        response = as_alice.post("/markets/QTX-USD/ticket/preview/", ticket(price=bad, size="0.5"), **HTMX)
        assert response.status_code == 200 and "Enter a price first" in text(response)
    odd = text(as_alice.post("/markets/QTX-USD/ticket/preview/", ticket(price="1", size="0.33"), **HTMX))
    assert "Choose 25, 50, 75 or 100 %." in odd


@reads_the_book
def test_a_market_order_waits_for_her_confirmation(as_alice, market, alice, bob):
    sell(bob, "2", at="100")
    order = ticket(type="market", quantity="1", time_in_force="IOC", client_order_id="ticket-1")

    first = as_alice.post("/markets/QTX-USD/ticket/", order, **HTMX)

    assert first.status_code == 200
    page = text(first)
    assert "Buy 1.00 QTX at market?" in page and "Est. cost 100.20 USD, fee 0.20 USD" in page
    assert 'name="confirm" value="1"' in page and 'value="ticket-1"' in page
    assert not Order.objects.filter(user=alice).exists()

    confirmed = as_alice.post("/markets/QTX-USD/ticket/", {**order, "confirm": "1"}, **HTMX)

    assert confirmed.status_code == 200
    placed = Order.objects.get(user=alice)
    assert (placed.type, placed.status, placed.client_order_id) == ("market", "filled", "ticket-1")
    assert "filled" in text(confirmed) and "at market?" not in text(confirmed)


def test_a_limit_order_needs_no_confirmation(as_alice, market, alice):
    as_alice.post("/markets/QTX-USD/ticket/", ticket(price="90", quantity="1"), **HTMX)
    assert Order.objects.filter(user=alice, status="open").count() == 1
