"""Call auctions under real concurrency (PostgreSQL): several processes' scheduler jobs
end one auction once, orders arriving meanwhile either rest in the auction or meet the
market after it, and a circuit breaker tripped by racing takers leaves the books exact.
(The single-thread equivalents are in test_engine_auction.py.)"""

from datetime import timedelta
from decimal import Decimal

import pytest
from django.utils import timezone

from marketdata.models import Market, Trade
from orders.auctions import auctions_end_due
from orders.models import Order
from orders.selectors import reconcile
from quantumtrades.core.errors import ServiceError

from .stories import buy, sell, trader
from .test_concurrency import together

pytestmark = [pytest.mark.postgres, pytest.mark.django_db(transaction=True), pytest.mark.timeout(300)]


@pytest.fixture(autouse=True)
def postgres_only(on_postgres):
    pass


def test_racing_jobs_end_an_auction_once(market, assets, fees):
    sellers = [trader(f"seller{n}", QTX="10") for n in range(3)]
    buyers = [trader(f"buyer{n}", USD="10000") for n in range(3)]
    Market.objects.filter(pk=market.pk).update(
        status=Market.Status.AUCTION, auction_ends_at=timezone.now() + timedelta(seconds=30)
    )
    for n in range(3):
        sell(sellers[n], "1", at=f"{100 + n}")
        buy(buyers[n], "1", at=f"{102 - n}")
    Market.objects.filter(pk=market.pk).update(auction_ends_at=timezone.now() - timedelta(seconds=1))

    outcomes = together(6, lambda index: auctions_end_due())

    assert not [o for o in outcomes if isinstance(o, Exception)], outcomes
    assert sorted(outcomes) == [[]] * 5 + [["QTX-USD"]]
    market.refresh_from_db()
    assert market.status == Market.Status.TRADING
    # 100, 101: two each side meet; the uncross price is one of the candidates, once.
    assert Trade.objects.values("price").distinct().count() == 1
    assert sum(t.quantity for t in Trade.objects.all()) == Decimal("2")
    assert reconcile() == []


def test_orders_racing_the_uncross_rest_or_trade_but_never_both(market, assets, fees):
    traders = [trader(f"t{n}", USD="10000", QTX="10") for n in range(8)]
    Market.objects.filter(pk=market.pk).update(
        status=Market.Status.AUCTION, auction_ends_at=timezone.now() + timedelta(seconds=30)
    )
    sell(traders[0], "2", at="100")
    buy(traders[1], "1", at="100")
    Market.objects.filter(pk=market.pk).update(auction_ends_at=timezone.now() - timedelta(seconds=1))

    def work(index):
        if index < 2:
            return auctions_end_due()
        try:
            return buy(traders[index], "0.5", at="100", time_in_force="IOC" if index % 2 else "GTC").order.status
        except ServiceError as refused:
            return refused.code

    outcomes = together(8, work)
    assert not [o for o in outcomes if isinstance(o, Exception)], outcomes
    # An IOC either met the market after the uncross or was refused during the auction.
    assert set(outcomes[3::2]) <= {"filled", "expired", "MARKET_IN_AUCTION"}
    market.refresh_from_db()
    assert market.status == Market.Status.TRADING
    assert Trade.objects.values("price").distinct().count() == 1
    assert reconcile() == []


def test_racing_takers_trip_the_breaker_once(market, assets, fees):
    Market.objects.filter(pk=market.pk).update(circuit_breaker=Decimal("0.05"))
    maker, first = trader("maker", QTX="100"), trader("first", USD="10000")
    takers = [trader(f"taker{n}", USD="10000") for n in range(6)]
    sell(maker, "1", at="100")
    buy(first, "1", at="100")
    for n in range(6):
        sell(maker, "1", at=f"{101 + 2 * n}")  # 101, 103, 105 within; 107, 109, 111 past

    outcomes = together(6, lambda index: buy(takers[index], "1", at="120").order.status)

    assert not [o for o in outcomes if isinstance(o, Exception)], outcomes
    market.refresh_from_db()
    assert market.status == Market.Status.AUCTION
    assert sorted(Trade.objects.values_list("price", flat=True)) == [
        Decimal("100"), Decimal("101"), Decimal("103"), Decimal("105"),
    ]  # fmt: skip
    assert Order.objects.filter(user__in=takers, status="open").count() == 3  # rest in the auction
    assert reconcile() == []
