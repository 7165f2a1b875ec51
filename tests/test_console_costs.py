"""What the operators' console costs must not grow with history: the dashboard (every
market's figures, the venue's per-minute counts, who trades the most) and a trader's page
read the same number of queries on a long tape and a long account history as on short
ones, and no query walks a history table (tests/test_read_costs.py's measures).

The tape holds QT_CONSOLE_TAPE trades (3000 unless told: as the other read-cost tests, the
plans on PostgreSQL are what prove the bound, and CI's time is counted);
`QT_CONSOLE_TAPE=1000000` runs it on a million-trade tape (docs/BENCHMARKS.md, "Operators'
console").

The console counts two things on purpose, each bounded by something other than history:
the orders since a minute's mark (a range of the primary key from an id marked at that
minute's start: the minutes' orders) and the resting orders and pending stops of each
market (the partial indexes that hold only what rests). On PostgreSQL the plans' rows
prove the bound.
"""

import os
import re

import pytest
from django.contrib.auth.models import Group
from django.core.cache import cache
from django.db import connection

from accounts.roles import OPERATORS
from marketdata.history import history_seed
from orders import console
from tests.api_support import *  # noqa: F403
from tests.test_read_costs import book, cost_of, trade

pytestmark = pytest.mark.django_db

LONG_TAPE = int(os.environ.get("QT_CONSOLE_TAPE", "3000"))


def _bounded_by_design(sql: str) -> bool:
    """The console's own bounded reads that test_read_costs' shape check does not know."""
    return (
        # The newest order id: the primary key's end.
        re.search(r'SELECT MAX\("orders_order"\."id"\)', sql) is not None
        # The orders since the oldest minute mark: a range of the primary key.
        or re.search(r'FROM "orders_order" WHERE "orders_order"\."id" > ', sql) is not None
        # Each market's resting orders and pending stops: the partial indexes of what rests.
        or ("COUNT(" in sql and 'FROM "marketdata_market"' in sql)
    )


def costs(reads) -> dict:
    if connection.vendor == "postgresql":
        with connection.cursor() as cursor:
            cursor.execute(
                "ANALYZE marketdata_trade, marketdata_candle, orders_order, orders_fill, accounts_ledgerentry"
            )
    measured = {}
    for name, read in reads:
        read()  # what a process loads once (users, markets) is no cost per read
        queries, unbounded = cost_of(read)
        measured[name] = (queries, [sql for sql in unbounded if " -> " in sql or not _bounded_by_design(sql)])
    return measured


def test_the_dashboard_and_the_trader_page_cost_the_same_on_a_long_tape(client, operator, alice, bob, market):
    operator.is_superuser = False
    operator.save(update_fields=["is_superuser"])
    operator.groups.add(Group.objects.get(name=OPERATORS))
    client.force_login(operator)
    book(alice, bob, market)  # resting orders, no trade yet: the tape is synthesised onto an empty one

    def page(path):
        response = client.get(path)
        assert response.status_code == 200, response.content[:300]

    reads = [
        ("dashboard", lambda: page("/admin/")),
        ("dashboard refresh", lambda: client.get("/admin/", headers={"HX-Request": "true"})),
        ("trader page", lambda: page(f"/admin/accounts/user/{alice.pk}/trader/")),
        ("market page", lambda: page(f"/admin/marketdata/market/{market.pk}/change/")),
    ]
    short = costs(reads)

    history_seed(market=market, trades=LONG_TAPE, days=3, seed=1)
    trade(alice, bob, market, 80)  # more than a page of alice's orders, fills and ledger
    # Time passes: the history is older than the dashboard's minutes, as on a live venue.
    cache.clear()
    console.order_marks_record()
    long = costs(reads)

    for name, _ in reads:
        assert short[name][1] == [] and long[name][1] == [], (name, long[name][1])
        assert long[name][0] == short[name][0], name
