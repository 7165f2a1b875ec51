"""The operators' console as the tape grows: the dashboard's and a trader page's latency on
an empty tape and on a long one, and what counting an order's outcome costs.

    .venv/bin/python bench/console.py [--pg postgresql://postgres@127.0.0.1:5432] [--trades 2000000] [--runs 20]

On a fresh PostgreSQL database (qt_bench_console): a market with a resting book, two traders
who trade with each other (orders, fills, ledger), an operator. The p50 of the dashboard
(the page, and its htmx refresh), the trader page and the market page, through Django's
test Client in this process (no HTTP server), before and after `seed_history` writes
--trades trades; then a timed `reconcile` run as the console runs it, and the time of
`orders.activity.order_outcome` per call. Nothing here is a test; figures go to
docs/BENCHMARKS.md ("Operators' console").
"""

import argparse
import os
import platform
import statistics
import sys
import time
import timeit
from decimal import Decimal
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "bench"))

import market_history  # noqa: E402
from engine import psql  # noqa: E402
from market_history import setup_django  # noqa: E402  (bench/market_history.py)

BENCH_DB = "qt_bench_console"


def p50(read, runs: int) -> float:
    for _ in range(3):
        read()
    times = []
    for _ in range(runs):
        started = time.perf_counter()
        read()
        times.append((time.perf_counter() - started) * 1000)
    return statistics.median(times)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pg", default="postgresql://postgres@127.0.0.1:5432")
    parser.add_argument("--trades", type=int, default=2_000_000)
    parser.add_argument("--runs", type=int, default=20)
    args = parser.parse_args()

    market_history.BENCH_DB = BENCH_DB
    psql(args.pg, f"DROP DATABASE IF EXISTS {BENCH_DB}", f"CREATE DATABASE {BENCH_DB}")
    setup_django(args.pg)
    from django.contrib.auth.models import Group
    from django.core.management import call_command
    from django.test import Client

    from accounts.models import User
    from accounts.roles import OPERATORS
    from accounts.services import balance_deposit
    from marketdata.history import history_seed
    from marketdata.models import Market
    from orders import activity, console
    from orders.services import order_cancel, order_place
    from tests.factories import qtx_usd_market

    print(f"{platform.node()} {platform.python_version()}, load average {os.getloadavg()}", flush=True)
    call_command("migrate", verbosity=0)
    market = qtx_usd_market()
    alice, bob = (User.objects.create_user(username=name) for name in ("alice", "bob"))
    for user in (alice, bob):
        balance_deposit(user=user, asset="USD", amount=Decimal("10000000"), reason="bench")
        balance_deposit(user=user, asset="QTX", amount=Decimal("100000"), reason="bench")
    for level in range(10):
        order_place(user=bob, market=market, side="sell", price=Decimal(110 + level), quantity=Decimal("5"))
        order_place(user=alice, market=market, side="buy", price=Decimal(90 - level), quantity=Decimal("5"))
    operator = User.objects.create_user(username="oscar", is_staff=True)
    operator.groups.add(Group.objects.get(name=OPERATORS))
    client = Client()
    client.force_login(operator)
    reads = {
        "dashboard `/admin/`": lambda: client.get("/admin/"),
        "dashboard refresh (htmx fragment)": lambda: client.get("/admin/", headers={"HX-Request": "true"}),
        "trader page": lambda: client.get(f"/admin/accounts/user/{alice.pk}/trader/"),
        "market page": lambda: client.get(f"/admin/marketdata/market/{market.pk}/change/"),
    }
    assert all(read().status_code == 200 for read in reads.values())
    empty = {name: p50(read, args.runs) for name, read in reads.items()}

    started = time.perf_counter()
    history_seed(market=Market.objects.get(pk=market.pk), trades=args.trades, days=3, seed=1)
    print(f"seed_history {args.trades:,}: {time.perf_counter() - started:.1f} s", flush=True)
    for _ in range(200):  # alice's own history: orders, fills and ledger past every page
        order_place(user=alice, market=market, side="buy", price=Decimal("110"), quantity=Decimal("0.01"))
        placed = order_place(user=alice, market=market, side="buy", price=Decimal("80"), quantity=Decimal("1"))
        order_cancel(user=alice, order_id=placed.order.pk)
    long = {name: p50(read, args.runs) for name, read in reads.items()}

    print(f"\n| read (p50 ms) | empty tape | {args.trades:,} trades | ratio |\n|---|---:|---:|---:|")
    for name in reads:
        print(f"| {name} | {empty[name]:.2f} | {long[name]:.2f} | {long[name] / empty[name]:.2f} |")

    run = console.reconcile_run(trigger="command")
    print(f"\nreconcile as the console runs it: {run.seconds:.2f} s, {run.breaches} breaches")
    calls = 1_000_000
    took = timeit.timeit(lambda: activity.order_outcome(source="rest", type="limit", result="accepted"), number=calls)
    print(f"order_outcome: {took / calls * 1e9:.0f} ns per call ({calls:,} calls)")
    print(f"load average at the end {os.getloadavg()}")


if __name__ == "__main__":
    main()
