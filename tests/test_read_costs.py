"""What each read costs must not grow with history: pinned here, so a change that scans the
tape (or a trader's whole history) again fails a test.

For every market-data read (the pages, the REST reads, the live hub's refreshes) and every
read of a trader's own history (REST listings, the portfolio page), the test runs the read
once on a short history and once on a long one, and asserts:

- the same number of queries both times;
- every query that reads the tape, candles, orders, fills or the ledger is bounded: it
  carries a LIMIT or reads a time range of candles, and none counts rows;
- on PostgreSQL, no such query's plan reads the trade, order, fill or ledger table
  sequentially even when the planner is told to avoid that (`enable_seqscan = off` leaves
  a sequential scan only where no index can serve the query), and none touches more rows
  of a history table than its longest page (EXPLAIN ANALYZE: an index range over the
  whole tape is no better than a scan).
"""

import functools
import json
import re
from decimal import Decimal

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from rest_framework.test import APIClient

from accounts.models import Asset, LedgerEntry
from accounts.services import balance_deposit
from marketdata.history import history_seed
from marketdata.models import Market, Trade
from marketdata.streams.market import read_market, read_stats
from orders.services import order_cancel, order_place
from tests.api_support import *  # noqa: F403
from tests.api_support import client_for

pytestmark = pytest.mark.django_db

HISTORY_TABLES = ("marketdata_trade", "marketdata_candle", "orders_order", "orders_fill", "accounts_ledgerentry")
SCANNED = ("marketdata_trade", "orders_order", "orders_fill", "accounts_ledgerentry")


def _reads_history(sql: str) -> bool:
    return sql.lstrip().upper().startswith("SELECT") and any(f'"{table}"' in sql or f" {table} " in sql
                                                               for table in HISTORY_TABLES)  # fmt: skip


def _bounded(sql: str) -> bool:
    if re.search(r"\bCOUNT\(", sql, re.IGNORECASE) and "marketdata_candle" not in sql:
        return False
    if re.search(r"\bLIMIT\b", sql, re.IGNORECASE):
        return True
    # A trader's resting orders: bounded by what rests in the book, not by history.
    if "orders_order" in sql and "IN ('open', 'partially_filled')" in sql:
        return True
    # The ticker's one aggregate: a time range of the 1m candles, at most 1440 rows.
    return "marketdata_candle" in sql and re.search(r"start\"? >= ", sql) is not None


# Rows a read may touch in one history table: the longest page (500 trades or candles) and
# the ticker's 24 hours of 1m candles.
MAX_ROWS = {"marketdata_candle": 24 * 60 + 1}
MAX_ROWS_DEFAULT = 600


def _plan_scans(sql: str) -> list[str]:
    """What the plan of `sql` (as executed, parameters inlined) does that grows with history:
    a sequential scan of a history table even with the planner told to avoid one (so no
    index serves the query), or more rows of one touched than a page holds (an index range
    over the whole tape is no better than a scan)."""
    # On tables this small the planner rightly prefers a sequential scan; told not to, it
    # shows the index path it takes on a long history.
    with connection.cursor() as cursor:
        cursor.execute("SET LOCAL enable_seqscan = off")
        cursor.execute(f"EXPLAIN {sql}")
        plan = "\n".join(row[0] for row in cursor.fetchall())
        cursor.execute(f"EXPLAIN (ANALYZE, FORMAT JSON) {sql}")
        analysed = cursor.fetchone()[0]
        cursor.execute("SET LOCAL enable_seqscan = on")
    found = [f"seq scan on {table}" for table in SCANNED if re.search(rf"Seq Scan on {table}\b", plan)]
    for node in _nodes((analysed[0] if isinstance(analysed, list) else json.loads(analysed)[0])["Plan"]):
        table = node.get("Relation Name")
        if table in HISTORY_TABLES:
            loops = node.get("Actual Loops", 1)
            touched = (node.get("Actual Rows", 0) + node.get("Rows Removed by Filter", 0)) * loops
            if touched > MAX_ROWS.get(table, MAX_ROWS_DEFAULT):
                found.append(f"{touched} rows of {table}")
    return found


def _nodes(node):
    yield node
    for child in node.get("Plans", []):
        yield from _nodes(child)


class Prepared:
    """A read that needs something looked up first (outside the measurement): a cursor."""

    def __init__(self, prepare, read):
        self.prepare, self.read = prepare, read


def cost_of(read) -> tuple[int, list[str]]:
    """Run `read`; return its number of queries and its unbounded history reads: those
    without a bound and, on PostgreSQL, those whose plan scans a history table."""
    if isinstance(read, Prepared):
        read = functools.partial(read.read, read.prepare())
    with CaptureQueriesContext(connection) as captured:
        read()
    history = [query["sql"] for query in captured.captured_queries if _reads_history(query["sql"])]
    unbounded = [sql for sql in history if not _bounded(sql)]
    if connection.vendor == "postgresql":
        unbounded += [f"{sql} -> {scans}" for sql in history if (scans := _plan_scans(sql))]
    return len(captured.captured_queries), unbounded


def _ok(response):
    assert response.status_code == 200, response.content[:300]
    return response


@pytest.fixture
def quiet_market(market):
    """BTC-USD, which never trades: a read of its tape or last price must not walk the
    others' trades (an index in the wrong order would, through the whole tape)."""
    return Market.objects.create(
        symbol="BTC-USD",
        base=Asset.objects.get_or_create(code="BTC", defaults={"name": "Bitcoin"})[0],
        quote_id="USD",
        tick_size=Decimal("0.01"),
        lot_size=Decimal("0.0001"),
        min_notional=Decimal("10"),
        price_band=None,
        circuit_breaker=None,
    )


@pytest.fixture
def reads(alice, bob, market, quiet_market):
    """Every read of the issue, as (name, callable), for anonymous visitors and for alice."""
    anon, as_alice = APIClient(), client_for(alice)
    as_alice.force_login(alice)
    symbol = market.symbol
    return [
        ("markets overview page", lambda: _ok(anon.get("/"))),
        ("market page", lambda: _ok(anon.get(f"/markets/{symbol}/"))),
        ("market page, signed in", lambda: _ok(as_alice.get(f"/markets/{symbol}/"))),
        ("GET /api/markets", lambda: _ok(anon.get("/api/markets"))),
        ("GET /api/markets/S", lambda: _ok(anon.get(f"/api/markets/{symbol}"))),
        ("GET tape", lambda: _ok(anon.get(f"/api/markets/{symbol}/trades"))),
        ("GET tape of a market that never traded", lambda: _ok(anon.get("/api/markets/BTC-USD/trades"))),
        ("GET /api/markets/S of a market that never traded", lambda: _ok(anon.get("/api/markets/BTC-USD"))),
        ("market page of a market that never traded", lambda: _ok(anon.get("/markets/BTC-USD/"))),
        *[
            (f"GET candles {interval}", lambda i=interval: _ok(anon.get(f"/api/markets/{symbol}/candles?interval={i}")))
            for interval in ("1m", "5m", "1h", "1d")
        ],
        ("GET /api/book/snapshot", lambda: _ok(anon.get(f"/api/book/snapshot?symbol={symbol}"))),
        ("hub reload", lambda: read_market(market.pk, True)),
        ("hub refresh: ticker, chart, sparkline", lambda: read_stats(market, True, True)),
        ("GET /api/orders", lambda: _ok(as_alice.get("/api/orders"))),
        ("GET /api/orders?status=filled", lambda: _ok(as_alice.get("/api/orders?status=filled"))),
        ("GET /api/orders/open", lambda: _ok(as_alice.get("/api/orders/open"))),
        ("GET /api/trades/history", lambda: _ok(as_alice.get("/api/trades/history"))),
        ("GET /api/user/transactions", lambda: _ok(as_alice.get("/api/user/transactions"))),
        ("GET /api/user/transactions?asset=USD", lambda: _ok(as_alice.get("/api/user/transactions?asset=USD"))),
        ("portfolio page", lambda: _ok(as_alice.get("/portfolio/"))),
        ("portfolio, an older ledger page", Prepared(lambda: _middle_entry(alice),
                                                     lambda middle: _ok(as_alice.get(f"/portfolio/?ledger_before={middle}")))),
    ]  # fmt: skip


def _middle_entry(user) -> int:
    ids = list(LedgerEntry.objects.filter(user=user).order_by("id").values_list("id", flat=True))
    return ids[len(ids) // 2]


def trade(alice, bob, market, rounds: int) -> None:
    """`rounds` trades between bob (resting) and alice (taking); as many orders alice
    cancels, and deposits: every one of alice's tables grows by `rounds` rows or more."""
    for _ in range(rounds):
        order_place(user=bob, market=market, side="sell", price=Decimal("10.00"), quantity=Decimal("0.10"))
        order_place(user=alice, market=market, side="buy", price=Decimal("10.00"), quantity=Decimal("0.10"))
        placed = order_place(user=alice, market=market, side="buy", price=Decimal("9.00"), quantity=Decimal("0.20"))
        order_cancel(user=alice, order_id=placed.order.pk)
        balance_deposit(user=alice, asset="USD", amount=Decimal("1"), reason="gift")


def book(alice, bob, market) -> None:
    order_place(user=bob, market=market, side="sell", price=Decimal("11.00"), quantity=Decimal("1.00"))
    order_place(user=alice, market=market, side="buy", price=Decimal("9.50"), quantity=Decimal("1.00"))


def measure(reads) -> dict:
    """Each read's cost, counted after a first run: what a process loads once and keeps a few
    seconds (users, markets) is no cost per read, and may have expired while history grew.

    On PostgreSQL the history tables are analysed first, as autovacuum would have done on a
    live database: plans then follow the tables' statistics, not whenever it last ran."""
    if connection.vendor == "postgresql":
        with connection.cursor() as cursor:
            cursor.execute(f"ANALYZE {', '.join(HISTORY_TABLES)}")
    costs = {}
    for name, read in reads:
        cost_of(read)
        # The cheaper of two runs: on a loaded machine what a process keeps a few seconds
        # may expire between the warm-up and the count.
        costs[name] = min(cost_of(read), cost_of(read))
    return costs


def warm(reads) -> None:
    measure(reads)


def assert_same_costs(reads, before: dict, after: dict) -> None:
    for name, _ in reads:
        (queries_before, unbounded_before), (queries_after, unbounded_after) = before[name], after[name]
        assert unbounded_before == [] and unbounded_after == [], name
        assert queries_after == queries_before, name


def test_market_reads_cost_the_same_on_an_empty_and_a_long_tape(alice, bob, market, reads):
    book(alice, bob, market)
    warm(reads)
    empty = measure(reads)

    history_seed(market=market, trades=3000, days=3, seed=1)
    assert Trade.objects.filter(market=market).count() == 3000
    long = measure(reads)

    assert_same_costs(reads, empty, long)


def test_history_reads_cost_the_same_for_a_short_and_a_long_history(alice, bob, market, reads):
    book(alice, bob, market)
    trade(alice, bob, market, 2)
    warm(reads)
    short = measure(reads)

    trade(alice, bob, market, 80)  # more than a page of everything: orders, fills, ledger, tape
    long = measure(reads)

    assert_same_costs(reads, short, long)
