"""The call auction's uncross against a brute-force reference written from the rules alone
(docs/API.md, "Call auctions"), and golden cases of the price rules.

`reference_uncross` tries every limit price in the book and applies the four rules one after
the other, by counting orders, with no cumulative walk. Hypothesis draws books; the pure
computation (`marketdata.auction.uncross_price`) must pick the same price and volume, and an
engine uncross of the same book, placed order by order during an auction, must trade that
volume at that one price, fill each side in price-time priority, leave the book uncrossed and
`reconcile` clean.
"""

from datetime import timedelta
from decimal import Decimal

import pytest
from django.db import transaction
from django.utils import timezone
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from marketdata.auction import uncross_price
from marketdata.models import Market, Trade
from orders.auctions import auction_end
from orders.models import Order
from orders.selectors import reconcile

from .stories import buy, sell, trader

D = Decimal


def reference_uncross(orders, reference=None):
    """(price, volume) by the rules, from (side, price, quantity) orders; None if nothing crosses."""
    candidates = sorted({price for _, price, _ in orders})
    rows = []
    for price in candidates:
        demand = sum((q for side, p, q in orders if side == "buy" and p >= price), D(0))
        supply = sum((q for side, p, q in orders if side == "sell" and p <= price), D(0))
        rows.append((price, min(demand, supply), demand - supply))
    if not rows or max(volume for _, volume, _ in rows) == 0:
        return None
    most = max(volume for _, volume, _ in rows)
    rows = [row for row in rows if row[1] == most]  # rule 1
    least = min(abs(surplus) for _, _, surplus in rows)
    rows = [row for row in rows if abs(row[2]) == least]  # rule 2
    if all(surplus > 0 for *_, surplus in rows):  # rule 3: buyers over at every one
        return max(rows)[:2]
    if all(surplus < 0 for *_, surplus in rows):  # sellers over at every one
        return min(rows)[:2]
    if reference is None:
        return min(rows)[:2]
    return min(rows, key=lambda row: (abs(row[0] - reference), row[0]))[:2]  # rule 4, then the lower


def levels(orders, side):
    found = {}
    for order_side, price, quantity in orders:
        if order_side == side:
            found[price] = found.get(price, D(0)) + quantity
    return list(found.items())


prices = st.integers(min_value=95, max_value=105).map(D)
quantities = st.integers(min_value=1, max_value=8).map(lambda n: D(n) / 4)
books = st.lists(st.tuples(st.sampled_from(["buy", "sell"]), prices, quantities), min_size=0, max_size=14)
references = st.none() | prices


@settings(max_examples=500, deadline=None)
@given(books, references)
def test_the_uncross_price_equals_the_brute_force_reference(orders, reference):
    found = uncross_price(levels(orders, "buy"), levels(orders, "sell"), reference)
    expected = reference_uncross(orders, reference)
    assert (None if found is None else (found.price, found.volume)) == expected


# --- Golden cases -------------------------------------------------------------------------


@pytest.mark.parametrize(
    "orders, reference, expected",
    [
        # The most volume: 3 at 101 (buys 100+ : 5, 101+: 3; sells <=101: 3).
        ([("buy", 101, 3), ("buy", 100, 2), ("sell", 99, 1), ("sell", 101, 2)], None, (101, 3)),
        # Equal volume 2 at 100 and 101; least surplus at 101 (0 against 1).
        ([("buy", 101, 2), ("buy", 100, 1), ("sell", 100, 2)], None, (101, 2)),
        # Volume 1 and surplus +1 at both 100 and 102: buyers over -> the higher.
        ([("buy", 102, 2), ("sell", 100, 1)], None, (102, 1)),
        # Sellers over at both: the lower.
        ([("buy", 102, 1), ("sell", 100, 2)], None, (100, 1)),
        # Balanced at both: the nearest the reference, 101.5 -> 102; 100.5 -> 100.
        ([("buy", 102, 1), ("sell", 100, 1)], D("101.5"), (102, 1)),
        ([("buy", 102, 1), ("sell", 100, 1)], D("100.5"), (100, 1)),
        # Equidistant from the reference (101): the lower.
        ([("buy", 102, 1), ("sell", 100, 1)], D("101"), (100, 1)),
        # Nothing crosses.
        ([("buy", 99, 1), ("sell", 100, 1)], None, None),
        ([("buy", 99, 1)], None, None),
    ],
)
def test_golden_cases(orders, reference, expected):
    orders = [(side, D(price), D(quantity)) for side, price, quantity in orders]
    found = uncross_price(levels(orders, "buy"), levels(orders, "sell"), reference)
    assert (None if found is None else (found.price, found.volume)) == (
        None if expected is None else (D(expected[0]), D(expected[1]))
    )
    assert reference_uncross(orders, reference) == (None if expected is None else (D(expected[0]), D(expected[1])))


# --- The engine's uncross -----------------------------------------------------------------


@pytest.fixture
def cast(market, fees, assets):
    return {
        "buy": [trader(name, USD="100000") for name in ("alice", "bob")],
        "sell": [trader(name, QTX="1000") for name in ("carol", "dave")],
    }


def test_the_engine_uncross_follows_the_reference(cast, market):
    @settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
    @given(st.lists(st.tuples(st.sampled_from(["buy", "sell"]), prices, quantities, st.integers(0, 1)), max_size=12))
    def uncross_matches(orders):
        with transaction.atomic():
            Market.objects.filter(pk=market.pk).update(
                status=Market.Status.AUCTION, auction_ends_at=timezone.now() + timedelta(seconds=30)
            )
            placed = []
            for side, price, quantity, who in orders:
                verb = buy if side == "buy" else sell
                placed.append(verb(cast[side][who], f"{quantity}", at=f"{price}").order)
            assert not Trade.objects.exists()
            expected = reference_uncross([(side, price, quantity) for side, price, quantity, _ in orders])

            Market.objects.filter(pk=market.pk).update(auction_ends_at=timezone.now() - timedelta(seconds=1))
            assert auction_end(market_id=market.pk)
            trades = list(Trade.objects.all())
            if expected is None:
                assert trades == []
            else:
                price, volume = expected
                assert {trade.price for trade in trades} == {price}
                assert sum(trade.quantity for trade in trades) == volume
                for side in ("buy", "sell"):
                    # Price-time priority on each side: better prices first, then earlier orders.
                    ranked = sorted(
                        (o for o in placed if o.side == side),
                        key=lambda o: (-o.price if side == "buy" else o.price, o.priority),
                    )
                    left = volume
                    for order in ranked:
                        order.refresh_from_db()
                        eligible = order.price >= price if side == "buy" else order.price <= price
                        should = min(order.quantity, left) if eligible else D(0)
                        assert order.filled_quantity == should, (side, order.price, order.priority)
                        left -= should
            market_now = Market.objects.get(pk=market.pk)
            assert market_now.status == Market.Status.TRADING
            best_bid = Order.objects.bids(market).values_list("price", flat=True).first()
            best_ask = Order.objects.asks(market).values_list("price", flat=True).first()
            assert best_bid is None or best_ask is None or best_bid < best_ask
            assert reconcile() == []
            transaction.set_rollback(True)

    uncross_matches()
