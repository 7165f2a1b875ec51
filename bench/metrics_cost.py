"""What the metrics cost an order through the REST API, with and without, in one process.

    .venv/bin/python bench/metrics_cost.py [--pg postgresql://postgres@127.0.0.1:5432] [--blocks 20] [--pairs 50]

A fresh PostgreSQL database (qt_bench_metrics), QTX-USD and two funded traders. Each block
sends `--pairs` pairs of orders through the whole Django stack (`POST /api/orders` with
DRF's test client: middleware, authentication, throttles, serializers, the engine): alice
buys, bob sells at the same price, so every pair trades and the book stays empty. Blocks
alternate metrics on and off (on, off, off, on, ...) (`quantumtrades.core.metrics.ENABLED`, what METRICS_ENABLED
sets), so a machine whose load drifts weighs on both alike; each block's CPU is
`time.thread_time()` around it. Prints the CPU per order of each block and the medians; `--profile` writes a cProfile
of one block with metrics on instead, to see what the metrics' own functions take.
Nothing here is a test; figures go to docs/BENCHMARKS.md.
"""

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
BENCH_DB = "qt_bench_metrics"


def psql(server: str, command: str) -> None:
    subprocess.run(["psql", f"{server}/postgres", "-qc", command], check=True, capture_output=True)


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--pg", default="postgresql://postgres@127.0.0.1:5432", help="server URL, no database")
    parser.add_argument("--blocks", type=int, default=20)
    parser.add_argument("--pairs", type=int, default=50)
    parser.add_argument("--profile", metavar="PATH", help="instead: write a cProfile of one block with metrics on")
    args = parser.parse_args()

    psql(args.pg, f"DROP DATABASE IF EXISTS {BENCH_DB} WITH (FORCE)")
    psql(args.pg, f"CREATE DATABASE {BENCH_DB}")
    os.environ.update(
        DATABASE_URL=f"{args.pg}/{BENCH_DB}",
        DEBUG="0",
        DJANGO_SECRET_KEY="bench-only-" + "x" * 40,
        DJANGO_SETTINGS_MODULE="quantumtrades.settings",
        LOG_LEVEL="WARNING",
        ALLOWED_HOSTS="testserver",
        SECURE_SSL_REDIRECT="0",
        THROTTLE_USER="1000000/minute",
        THROTTLE_ORDERS="1000000/minute",
    )
    os.environ.pop("REDIS_URL", None)
    sys.path.insert(0, str(ROOT))
    import django

    django.setup()
    from decimal import Decimal

    from django.core.management import call_command
    from django.db import connection
    from rest_framework.test import APIClient

    from accounts.models import User
    from accounts.services import balance_deposit
    from accounts.tokens import api_login_start
    from quantumtrades.core import metrics
    from tests.factories import fee_account, qtx_usd_market

    call_command("migrate", verbosity=0)
    fee_account()
    qtx_usd_market()
    clients = []
    for name in ("alice", "bob"):
        user = User.objects.create_user(username=name, password=f"{name}-pass-2026")
        balance_deposit(user=user, asset="USD", amount=Decimal("100000000"), reason="bench")
        balance_deposit(user=user, asset="QTX", amount=Decimal("1000000"), reason="bench")
        client = APIClient()
        client.credentials(HTTP_AUTHORIZATION=f"Bearer {api_login_start(user=user).access_token}")
        clients.append(client)
    order = {"symbol": "QTX-USD", "type": "limit", "price": "10.00", "quantity": "1.00"}

    def block():
        for _ in range(args.pairs):
            for client, side in zip(clients, ("buy", "sell"), strict=True):
                response = client.post("/api/orders", {**order, "side": side}, format="json")
                assert response.status_code == 201, response.content

    block()  # warm up
    if args.profile:
        import cProfile

        profile = cProfile.Profile()
        profile.runcall(block)
        profile.dump_stats(args.profile)
        connection.close()
        psql(args.pg, f"DROP DATABASE IF EXISTS {BENCH_DB} WITH (FORCE)")
        return
    cpu = {True: [], False: []}
    for number in range(args.blocks):
        metrics.ENABLED = number % 4 in (0, 3)  # on, off, off, on: neither goes first always
        started = time.thread_time()
        block()
        cpu[metrics.ENABLED].append((time.thread_time() - started) / (2 * args.pairs) * 1000)
        print(
            json.dumps(
                {
                    "block": number + 1,
                    "metrics": metrics.ENABLED,
                    "cpu_ms_per_order": round(cpu[metrics.ENABLED][-1], 3),
                }
            ),
            flush=True,
        )
    with_, without = statistics.median(cpu[True]), statistics.median(cpu[False])
    print(
        json.dumps(
            {
                "median_cpu_ms_per_order_with": round(with_, 3),
                "median_cpu_ms_per_order_without": round(without, 3),
                "ratio": round(with_ / without, 3),
                "spread_without": [round(min(cpu[False]), 3), round(max(cpu[False]), 3)],
                "spread_with": [round(min(cpu[True]), 3), round(max(cpu[True]), 3)],
                "load_average": os.getloadavg(),
            }
        )
    )
    connection.close()
    psql(args.pg, f"DROP DATABASE IF EXISTS {BENCH_DB} WITH (FORCE)")


if __name__ == "__main__":
    main()
