"""`manage.py simulate_market`: the demo books keep moving and stay at least ten levels deep."""

import random
from decimal import Decimal

import pytest

from marketdata.models import BookLevel, Side, Trade
from orders.management.commands.simulate_market import BOOK_DEPTH, Simulation
from orders.selectors import reconcile

from .stories import trader

pytestmark = pytest.mark.django_db


def depth(market) -> dict[str, int]:
    live = BookLevel.objects.filter(market=market, quantity__gt=0)
    return {side: live.filter(side=side).count() for side in (Side.BUY, Side.SELL)}


@pytest.fixture
def simulation(market):
    makers = [trader(name, USD="1000000", QTX="20000") for name in ("maker1", "maker2")]
    takers = [trader("taker1", USD="500000", QTX="10000")]
    return Simulation(market, makers, takers, random.Random(2026))


def test_a_fresh_book_is_primed_ten_levels_deep_on_each_side(market, simulation):
    simulation.prime()

    assert depth(market) == {Side.BUY: BOOK_DEPTH, Side.SELL: BOOK_DEPTH}


def test_the_book_stays_ten_levels_deep_while_it_trades(market, simulation):
    simulation.prime()
    seen = []

    for _ in range(150):
        simulation.step()
        seen.append(depth(market))

    assert all(min(sides.values()) >= BOOK_DEPTH for sides in seen)
    assert Trade.objects.filter(market=market).count() > 10
    assert reconcile() == []


def test_it_continues_from_the_last_trade_price(market, simulation):
    Trade.objects.create(market=market, price=Decimal("42.00"), quantity=Decimal("1"), taker_side="buy", seq=0)

    resumed = Simulation(market, simulation.makers, simulation.takers, random.Random(1))

    assert resumed.fair == Decimal("42.00")


def test_the_fair_price_walks_without_drifting(market, simulation):
    """Steps far smaller than a tick: a walk rounded to the tick grid at each step would
    sink by up to a tick a step; this one stays put."""
    walk = Simulation(market, simulation.makers, simulation.takers, random.Random(5), volatility=1e-6)
    start = walk.fair = Decimal("100")

    for _ in range(1000):
        walk.fair = walk._walk(walk.fair)

    assert abs(walk.fair - start) < Decimal("0.05")
