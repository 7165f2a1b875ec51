"""Candles and the ticker equal the tape, whatever trades and however they arrive.

Hypothesis runs random orders through the matching engine at random moments (gaps of
nothing to a couple of days, so trades share a minute, cross hours and days), sometimes
after a synthesised history (`seed_history`), and then checks that every interval's
candles equal an aggregate over the raw tape, computed in Python from every trade, and
that the 24-hour ticker equals that of the tape's last 24 hours, at several moments.
"""

import contextlib
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from unittest import mock

import pytest
from django.db import connection, transaction
from django.test.utils import CaptureQueriesContext
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from marketdata.history import history_seed
from marketdata.models import Trade
from marketdata.selectors import ticker
from marketdata.services import candles_rebuild
from marketdata.tests.tape import as_dict, assert_candles_match_tape, tape_ticker
from orders.services import order_place
from quantumtrades.core.errors import ServiceError

pytestmark = pytest.mark.django_db

START = datetime(2026, 11, 30, 23, 58, 30, tzinfo=UTC)  # close to an hour's and a day's end
PRICES = [Decimal(p) for p in ("99.98", "99.99", "100.00", "100.01", "100.02")]

steps = st.lists(
    st.tuples(
        st.sampled_from([0, 0, 1, 17, 59, 61, 299, 301, 3599, 3601, 86399, 86401, 90000]),  # seconds to wait
        st.sampled_from(["alice", "bob"]),
        st.sampled_from(["buy", "sell"]),
        st.sampled_from(PRICES),
        st.integers(1, 40).map(lambda n: n * Decimal("0.25")),
    ),
    min_size=1,
    max_size=25,
)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(steps=steps, history=st.sampled_from([0, 0, 50, 400]))
def test_candles_and_ticker_equal_an_aggregate_over_the_tape(market, alice, bob, steps, history):
    traders = {"alice": alice, "bob": bob}
    clock = START
    with transaction.atomic():
        if history:
            history_seed(market=market, trades=history, days=2, price=Decimal("100.00"), seed=history, now=clock)
        with mock.patch("django.utils.timezone.now", lambda: clock):
            for wait, name, side, price, quantity in steps:
                clock += timedelta(seconds=wait)
                # Out of funds: a refusal trades nothing.
                with contextlib.suppress(ServiceError):
                    order_place(user=traders[name], market=market, side=side, price=price, quantity=quantity)

        assert_candles_match_tape(market)
        for now in (clock, clock + timedelta(seconds=30), clock + timedelta(hours=23), clock + timedelta(hours=25)):
            assert as_dict(ticker(market=market, now=now)) == tape_ticker(market, now), now
        # And the repair command comes back to the same candles.
        candles_rebuild(market=market)
        assert_candles_match_tape(market)
        transaction.set_rollback(True)


def test_one_command_that_trades_costs_one_candle_statement(market, alice, bob):
    """Three trades in one command: one upsert covers them and every interval."""
    for price in ("100.00", "100.01", "100.02"):
        order_place(user=bob, market=market, side="sell", price=Decimal(price), quantity=Decimal("1"))

    with CaptureQueriesContext(connection) as captured:
        order_place(user=alice, market=market, side="buy", price=Decimal("100.02"), quantity=Decimal("3"))

    candle_writes = [q["sql"] for q in captured.captured_queries if "marketdata_candle" in q["sql"]]
    assert len(candle_writes) == 1 and candle_writes[0].startswith("INSERT")
    assert Trade.objects.filter(market=market).count() == 3
    assert_candles_match_tape(market)


def test_a_command_that_trades_nothing_writes_no_candle(market, alice):
    with CaptureQueriesContext(connection) as captured:
        order_place(user=alice, market=market, side="buy", price=Decimal("99"), quantity=Decimal("1"))

    assert not [q for q in captured.captured_queries if "marketdata_candle" in q["sql"]]
