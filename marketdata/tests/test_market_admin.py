"""The Market admin: every rule edited under the book lock and audited, halt and resume
(through a call auction) audited with the operator (docs/API.md, "Operators' API")."""

from decimal import Decimal

import pytest

from accounts.models import OperatorAction, User
from marketdata.models import Market
from tests.factories import qtx_usd_market


@pytest.fixture
def operator(db):
    return User.objects.create_user(username="ops", password="ops-pass-2026", is_staff=True, is_superuser=True)


@pytest.fixture
def market(db):
    return qtx_usd_market()


def form_data(market, **changes):
    data = {
        "min_notional": f"{market.min_notional}",
        "price_band": "",
        "max_order_quantity": "",
        "max_order_notional": "",
        "circuit_breaker": "",
        "circuit_window_seconds": f"{market.circuit_window_seconds}",
        "auction_seconds": f"{market.auction_seconds}",
    }
    return {**data, **changes}


def test_the_change_form_edits_the_rules_and_audits_them(client, operator, market):
    client.force_login(operator)
    page = client.get(f"/admin/marketdata/market/{market.pk}/change/")
    assert page.status_code == 200
    html = page.content.decode()
    for name in ("price_band", "circuit_breaker", "circuit_window_seconds", "auction_seconds", "max_order_notional"):
        assert f'name="{name}"' in html
    assert "the market goes into a call auction instead" in html  # the model's help text
    assert 'name="auction_ends_at"' not in html and 'name="last_price"' not in html  # read only

    data = form_data(market, circuit_breaker="0.04", auction_seconds="45", max_order_quantity="250")
    preview = client.post(f"/admin/marketdata/market/{market.pk}/change/", data)
    # Nothing is saved before the operator has seen what each change does.
    assert preview.status_code == 200
    assert [effect.name for effect in preview.context["effects"]] == [
        "max_order_quantity",
        "circuit_breaker",
        "auction_seconds",
    ]
    assert "New orders above 250 QTX are refused (ORDER_TOO_LARGE)" in preview.content.decode()
    market.refresh_from_db()
    assert market.circuit_breaker is None and not OperatorAction.objects.exists()

    response = client.post(f"/admin/marketdata/market/{market.pk}/change/", {**data, "_confirmed": "1"})
    assert response.status_code == 302, response.content[:2000]
    market.refresh_from_db()
    assert (market.circuit_breaker, market.auction_seconds, market.max_order_quantity) == (
        Decimal("0.04"),
        45,
        Decimal("250"),
    )
    action = OperatorAction.objects.get()
    assert action.kind == "market_rules_changed" and action.operator == operator and action.market == "QTX-USD"
    assert action.details == {
        "max_order_quantity": [None, "250"],
        "circuit_breaker": [None, "0.04"],
        "auction_seconds": [30, 45],
    }


def test_halt_and_resume_actions_are_audited_and_resume_opens_an_auction(client, operator, market):
    client.force_login(operator)
    url = "/admin/marketdata/market/"
    client.post(url, {"action": "halt", "_selected_action": [market.pk]})
    market.refresh_from_db()
    assert market.status == Market.Status.HALTED
    client.post(url, {"action": "resume", "_selected_action": [market.pk]})
    market.refresh_from_db()
    assert market.status == Market.Status.AUCTION and market.auction_ends_at is not None
    assert list(OperatorAction.objects.order_by("id").values_list("kind", "operator__username")) == [
        ("market_halted", "ops"),
        ("market_resumed", "ops"),
    ]
