"""Market data and a trader's history as they grow: seed_history timings and read latencies.

    .venv/bin/python bench/market_history.py [--pg postgresql://postgres@127.0.0.1:5432]
        [--trades 10000000] [--second 2000000] [--rows 1000000] [--ledger 5000000] [--runs 30]

On a fresh PostgreSQL database (qt_bench_history), in one run:

1. Four markets with a resting book of ten levels a side and an empty tape.
2. `seed_history` with --second trades on BTC-USD and --trades trades on QTX-USD, timed
   (7 days each), and 5,000 trades over one day on SMALL-USD.
3. The p50 of every market-data read (page `/markets/S/`, `GET /api/markets/S` with the
   ticker, candles 1m/5m/1h/1d, the tape, the book snapshot, the live hub's reload and its
   ticker/chart/sparkline refresh) on ETH-USD (empty tape), SMALL-USD (5,000 trades: the
   same number of candles and tape rows to render as the long tape) and QTX-USD (the long
   tape), the three taking turns read by read; and of page `/` and `GET /api/markets`
   (every market) before and after the seeding.
4. A trader with --rows orders, fills and ledger entries and one with ten of each: the p50
   of `GET /api/orders`, `/api/trades/history`, `/api/user/transactions` (first page and a
   page deep in the history, by cursor) and `/portfolio/`, for both.
5. `reconcile()` over a ledger of about --ledger rows (the trader's plus synthetic
   deposits of other users), timed, with the process's peak memory before and after.

Reads go through Django's test Client in this process (no HTTP server: the figures are the
application and database cost of each read). Nothing here is a test; figures go to
docs/BENCHMARKS.md.
"""

import argparse
import io
import os
import platform
import resource
import statistics
import sys
import time
from decimal import Decimal
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
BENCH_DB = "qt_bench_history"
sys.path.insert(0, str(ROOT / "bench"))

from engine import psql  # noqa: E402  (bench/engine.py)


def setup_django(server: str) -> None:
    os.environ["DATABASE_URL"] = f"{server}/{BENCH_DB}"
    os.environ.pop("REDIS_URL", None)
    os.environ["DEBUG"] = "0"
    os.environ["SECURE_SSL_REDIRECT"] = "0"
    os.environ["SECURE_COOKIES"] = "0"
    os.environ["SECURE_HSTS_SECONDS"] = "0"
    os.environ["ALLOWED_HOSTS"] = "testserver,127.0.0.1,localhost"
    for scope in ("ANON", "USER"):
        os.environ[f"THROTTLE_{scope}"] = "1000000/minute"
    os.environ.setdefault("DJANGO_SECRET_KEY", "bench-only-" + "x" * 40)
    os.environ["DJANGO_SETTINGS_MODULE"] = "quantumtrades.settings"
    os.environ["LOG_LEVEL"] = "WARNING"
    sys.path.insert(0, str(ROOT))
    import django

    django.setup()
    from django.conf import settings

    # Pages render without collectstatic's manifest (DEBUG off would demand one).
    settings.STORAGES = {
        **settings.STORAGES,
        "staticfiles": {"BACKEND": "django.contrib.staticfiles.storage.StaticFilesStorage"},
    }


def build_world():
    from django.core.management import call_command

    from accounts.models import User
    from accounts.services import balance_deposit
    from marketdata.models import Market
    from orders.services import order_place

    call_command("migrate", verbosity=0)
    call_command("seed_demo", "--history-trades", "0", verbosity=0, stdout=io.StringIO())
    maker = User.objects.create_user(username="bench-maker")
    for asset, amount in {"USD": "100000000", "QTX": "1000000", "BTC": "1000", "ETH": "10000"}.items():
        balance_deposit(user=maker, asset=asset, amount=Decimal(amount))
    for market, mid in (("QTX-USD", "100"), ("BTC-USD", "60000"), ("ETH-USD", "3000")):
        tick = Market.objects.get(symbol=market).tick_size
        for level in range(1, 11):
            for side, sign in (("buy", -1), ("sell", 1)):
                price = Decimal(mid) + sign * tick * 5 * level
                quantity = "1" if market == "QTX-USD" else ("0.01" if market == "BTC-USD" else "0.1")
                order_place(user=maker, market=market, side=side, price=price, quantity=Decimal(quantity))


def market_reads(symbol: str) -> dict:
    """Every read of one market's data, by name."""
    from django.test import Client

    from marketdata.models import Market
    from marketdata.streams.market import read_market, read_stats

    client = Client()
    market = Market.objects.get(symbol=symbol)

    def get(path):
        def read():
            response = client.get(path)
            assert response.status_code == 200, (path, response.status_code)

        return read

    reads = {
        "page `/markets/S/`": get(f"/markets/{symbol}/"),
        "`GET /api/markets/S` (rules + ticker)": get(f"/api/markets/{symbol}"),
        "`GET /api/markets/S/trades` (tape)": get(f"/api/markets/{symbol}/trades"),
        "`GET /api/book/snapshot`": get(f"/api/book/snapshot?symbol={symbol}"),
    }
    for interval in ("1m", "5m", "1h", "1d"):
        reads[f"`GET /api/markets/S/candles?interval={interval}`"] = get(
            f"/api/markets/{symbol}/candles?interval={interval}"
        )
    reads["hub: reload (book + tape)"] = lambda: read_market(market.pk, True)
    reads["hub: ticker + chart + sparkline refresh"] = lambda: read_stats(market, True, True)
    return reads


def global_reads() -> dict:
    from django.test import Client

    client = Client()

    def get(path):
        def read():
            response = client.get(path)
            assert response.status_code == 200, (path, response.status_code)

        return read

    return {"page `/` (four markets)": get("/"), "`GET /api/markets` (four markets)": get("/api/markets")}


def p50s(read_sets: list[dict], runs: int) -> list[dict]:
    """The p50 in ms of each read of each set, the sets taking turns read by read, so each
    set sees the same load on the machine."""
    times = [{name: [] for name in reads} for reads in read_sets]
    for name in read_sets[0]:
        for reads in read_sets:
            for _ in range(3):
                reads[name]()
        for _ in range(runs):
            for reads, timing in zip(read_sets, times, strict=True):
                started = time.perf_counter()
                reads[name]()
                timing[name].append((time.perf_counter() - started) * 1000)
    return [{name: statistics.median(values) for name, values in timing.items()} for timing in times]


def timed_seed(symbol: str, trades: int, days: int = 7) -> float:
    from django.core.management import call_command

    started = time.perf_counter()
    call_command("seed_history", "--market", symbol, "--trades", str(trades), "--days", str(days), "--seed", "1",
                 stdout=io.StringIO())  # fmt: skip
    return time.perf_counter() - started


def small_market() -> None:
    """SMALL-USD: QTX-USD's twin with its own ten-level book (its history comes later)."""
    from accounts.models import Asset, User
    from marketdata.models import Market
    from orders.services import order_place

    Asset.objects.create(code="SMALL", name="Small")
    Market.objects.create(
        symbol="SMALL-USD", base_id="SMALL", quote_id="USD", tick_size=Decimal("0.01"), lot_size=Decimal("0.01"),
        min_notional=Decimal("1"), maker_fee=Decimal("0.001"), taker_fee=Decimal("0.002"),
    )  # fmt: skip
    from accounts.services import balance_deposit

    maker = User.objects.get(username="bench-maker")
    balance_deposit(user=maker, asset="SMALL", amount=Decimal("1000000"))
    for level in range(1, 11):
        for side, sign in (("buy", -1), ("sell", 1)):
            price = Decimal(100) + sign * Decimal("0.05") * level
            order_place(user=maker, market="SMALL-USD", side=side, price=price, quantity=Decimal(1))


def build_traders(rows: int):
    """A trader with `rows` filled orders (each with a fill) and ledger entries; one with ten.
    The REST reads ask for pages of ten, so both answer the same number of rows."""
    from django.db import connection

    from accounts.models import User
    from marketdata.models import Market

    market = Market.objects.get(symbol="QTX-USD")
    users = {}
    started = time.perf_counter()
    with connection.cursor() as cursor:
        for name, count in (("big", rows), ("small", 10)):
            user = User.objects.create_user(username=f"bench-{name}")
            users[name] = user
            cursor.execute(
                "INSERT INTO orders_order (user_id, market_id, client_order_id, side, type, time_in_force, post_only, "
                "price, quantity, filled_quantity, remaining_quantity, filled_notional, held, status, priority, "
                "created_at, updated_at) SELECT %s, %s, NULL, CASE WHEN i %% 2 = 0 THEN 'buy' ELSE 'sell' END, "
                "'limit', 'GTC', false, 100, 1, 1, 0, 100, 0, CASE WHEN i %% 7 = 0 THEN 'cancelled' ELSE 'filled' END, "
                "0, now() - make_interval(secs => %s - i), now() - make_interval(secs => %s - i) "
                "FROM generate_series(1, %s) AS i",
                [user.pk, market.pk, count, count, count],
            )
            cursor.execute(
                "INSERT INTO orders_fill (order_id, trade_id, user_id, market_id, side, role, price, quantity, fee, "
                "created_at) SELECT o.id, t.id, %s, %s, o.side, 'taker', t.price, t.quantity, 0, t.created_at "
                "FROM (SELECT id, side, row_number() OVER (ORDER BY id) AS n FROM orders_order WHERE user_id = %s) o "
                "JOIN (SELECT id, price, quantity, created_at, row_number() OVER (ORDER BY id) AS n "
                "FROM marketdata_trade WHERE market_id = %s AND id > (SELECT COALESCE(MAX(trade_id), 0) "
                "FROM orders_fill) ORDER BY id LIMIT %s) t USING (n)",
                [user.pk, market.pk, user.pk, market.pk, count],
            )
            # Deposits of 1 USD each, the balance their sum: reconcile stays clean.
            cursor.execute(
                "INSERT INTO accounts_ledgerentry (user_id, asset_id, kind, available_delta, held_delta, "
                "available_after, held_after, reference, reason, created_by_id, created_at) "
                "SELECT %s, 'USD', 'deposit', 1, 0, i, 0, '', 'bench', NULL, now() - make_interval(secs => %s - i) "
                "FROM generate_series(1, %s) AS i",
                [user.pk, count, count],
            )
            cursor.execute(
                "INSERT INTO accounts_balance (user_id, asset_id, available, held) VALUES (%s, 'USD', %s, 0)",
                [user.pk, count],
            )
        cursor.execute("ANALYZE")
    return users, time.perf_counter() - started


def grow_ledger(total: int) -> float:
    """Other users' deposits until the ledger holds about `total` rows (2,000 users)."""
    from django.db import connection

    from accounts.models import LedgerEntry

    started = time.perf_counter()
    missing = total - LedgerEntry.objects.count()
    if missing <= 0:
        return 0.0
    users = 2000
    per_user = missing // users
    with connection.cursor() as cursor:
        cursor.execute(
            "INSERT INTO accounts_user (password, is_superuser, username, first_name, last_name, email, is_staff, "
            "is_active, date_joined) SELECT '!', false, 'ledger-' || u, '', '', '', false, true, now() "
            "FROM generate_series(1, %s) AS u",
            [users],
        )
        cursor.execute(
            "INSERT INTO accounts_ledgerentry (user_id, asset_id, kind, available_delta, held_delta, "
            "available_after, held_after, reference, reason, created_by_id, created_at) "
            "SELECT u.id, 'USD', 'deposit', 1, 0, i, 0, '', 'bench', NULL, now() "
            "FROM (SELECT id FROM accounts_user WHERE username LIKE 'ledger-%%') u, generate_series(1, %s) AS i",
            [per_user],
        )
        cursor.execute(
            "INSERT INTO accounts_balance (user_id, asset_id, available, held) "
            "SELECT id, 'USD', %s, 0 FROM accounts_user WHERE username LIKE 'ledger-%%'",
            [per_user],
        )
        cursor.execute("ANALYZE accounts_ledgerentry")
    return time.perf_counter() - started


def history_reads(users):
    from django.test import Client

    from accounts.models import LedgerEntry
    from accounts.tokens import api_login_start
    from orders.models import Fill, Order

    reads = {}
    for name, user in users.items():
        api = Client(HTTP_AUTHORIZATION=f"Bearer {api_login_start(user=user).access_token}")
        page = Client()
        page.force_login(user)

        def get(client, path):
            def read():
                response = client.get(path)
                assert response.status_code == 200, (path, response.status_code, response.content[:200])

            return read

        # A page deep in the history: the cursor of the row in the middle.
        middle = {
            "orders": Order.objects.filter(user=user).order_by("id").values_list("id", flat=True)[Order.objects.filter(user=user).count() // 2],
            "fills": Fill.objects.filter(user=user).order_by("id").values_list("id", flat=True)[Fill.objects.filter(user=user).count() // 2],
            "ledger": LedgerEntry.objects.filter(user=user).order_by("id").values_list("id", flat=True)[LedgerEntry.objects.filter(user=user).count() // 2],
        }  # fmt: skip
        deep = {key: _cursor(value) for key, value in middle.items()}
        reads[name] = {
            "`GET /api/orders`": get(api, "/api/orders?page_size=10"),
            "`GET /api/orders`, a page in the middle": get(api, f"/api/orders?page_size=10&cursor={deep['orders']}"),
            "`GET /api/orders?status=cancelled`": get(api, "/api/orders?page_size=10&status=cancelled"),
            "`GET /api/trades/history`": get(api, "/api/trades/history?page_size=10"),
            "`GET /api/trades/history`, a page in the middle": get(api, f"/api/trades/history?page_size=10&cursor={deep['fills']}"),
            "`GET /api/user/transactions`": get(api, "/api/user/transactions?page_size=10"),
            "`GET /api/user/transactions`, a page in the middle": get(
                api, f"/api/user/transactions?page_size=10&cursor={deep['ledger']}"
            ),
            "page `/portfolio/`": get(page, "/portfolio/"),
            "page `/portfolio/`, a ledger page in the middle": get(page, f"/portfolio/?ledger_before={middle['ledger']}"),
        }  # fmt: skip
    return reads


def _cursor(position: int) -> str:
    """DRF's cursor for "rows before this id" (what a next link carries)."""
    import base64
    from urllib.parse import quote

    return quote(base64.b64encode(f"p={position}".encode()).decode())


def timed_reconcile():
    from accounts.models import LedgerEntry
    from orders.selectors import reconcile

    rows = LedgerEntry.objects.count()
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    started = time.perf_counter()
    breaches = reconcile()
    elapsed = time.perf_counter() - started
    after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return rows, elapsed, len(breaches), before // 1024, after // 1024


def table(rows, header):
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---:" if i else "---" for i in range(len(header))) + "|"]
    lines += ["| " + " | ".join(str(cell) for cell in row) + " |" for row in rows]
    return "\n".join(lines)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pg", default="postgresql://postgres@127.0.0.1:5432")
    parser.add_argument("--trades", type=int, default=10_000_000)
    parser.add_argument("--second", type=int, default=2_000_000)
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--ledger", type=int, default=5_000_000)
    parser.add_argument("--runs", type=int, default=30)
    args = parser.parse_args()

    psql(args.pg, f"DROP DATABASE IF EXISTS {BENCH_DB}", f"CREATE DATABASE {BENCH_DB}")
    setup_django(args.pg)
    print(f"{platform.node()} {platform.python_version()}, load average {os.getloadavg()}", flush=True)
    build_world()

    # QTX-USD takes the long tape; ETH-USD keeps an empty one; SMALL-USD gets a day of
    # 5,000 trades: the same charts and tape to render as the long one, on a short history.
    small_market()
    globals_empty = p50s([global_reads()], args.runs)[0]
    seeded = {"BTC-USD": (args.second, timed_seed("BTC-USD", args.second))}
    print(f"seed_history {args.second:,} on BTC-USD: {seeded['BTC-USD'][1]:.1f} s", flush=True)
    seeded["QTX-USD"] = (args.trades, timed_seed("QTX-USD", args.trades))
    print(f"seed_history {args.trades:,} on QTX-USD: {seeded['QTX-USD'][1]:.1f} s", flush=True)
    timed_seed("SMALL-USD", 5000, days=1)
    globals_long = p50s([global_reads()], args.runs)[0]
    empty, short, long = p50s([market_reads("ETH-USD"), market_reads("SMALL-USD"), market_reads("QTX-USD")], args.runs)

    users, built = build_traders(args.rows)
    print(f"traders built in {built:.1f} s", flush=True)
    trader_reads = history_reads(users)
    small, big = p50s([trader_reads["small"], trader_reads["big"]], args.runs)
    grown = grow_ledger(args.ledger)
    print(f"ledger grown in {grown:.1f} s", flush=True)
    rows, elapsed, breaches, rss_before, rss_after = timed_reconcile()

    print()
    print(table([(symbol, f"{count:,}", f"{seconds:.1f} s") for symbol, (count, seconds) in seeded.items()],
                ["seed_history", "trades", "time"]))  # fmt: skip
    print()
    print(table([(name, f"{empty[name]:.2f}", f"{short[name]:.2f}", f"{long[name]:.2f}", f"{long[name] / empty[name]:.2f}",
                  f"{long[name] / short[name]:.2f}") for name in empty],
                ["read", "empty tape p50 ms", "5,000 trades p50 ms", f"{args.trades:,} trades p50 ms",
                 "ratio to empty", "ratio to 5,000"]))  # fmt: skip
    print()
    print(table([(name, f"{globals_empty[name]:.2f}", f"{globals_long[name]:.2f}",
                  f"{globals_long[name] / globals_empty[name]:.2f}") for name in globals_empty],
                ["read", "empty tapes p50 ms", f"{args.trades:,} + {args.second:,} + 5,000 trades p50 ms", "ratio"]))  # fmt: skip
    print()
    print(table([(name, f"{small[name]:.2f}", f"{big[name]:.2f}", f"{big[name] / small[name]:.2f}") for name in small],
                ["read", "10 rows p50 ms", f"{args.rows:,} rows p50 ms", "ratio"]))  # fmt: skip
    print()
    print(f"reconcile over {rows:,} ledger entries: {elapsed:.1f} s, {breaches} breaches, "
          f"peak RSS {rss_before} MiB before, {rss_after} MiB after")  # fmt: skip
    print(f"load average at the end {os.getloadavg()}")


if __name__ == "__main__":
    main()
