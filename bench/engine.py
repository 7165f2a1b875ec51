"""Orders per second through the matching engine's service layer on PostgreSQL.

    .venv/bin/python bench/engine.py [--seconds 20] [--threads 1,8] [--pg postgresql://postgres@127.0.0.1:5432]
    .venv/bin/python bench/engine.py --cpu 3000 [--rounds 3]

Builds a fresh database, one market with a populated book and a few hundred funded
traders, then runs worker threads (one PostgreSQL connection each) that send a realistic
mix of commands straight to `orders.services`: resting limit orders, orders that cross
the spread, and cancels. Reports commands per second and p50/p99 latency per command
kind, then runs the database ceiling (bench/ceiling/match_ceiling.sql, pgbench, same
server, same run) and prints the ratio. Nothing here is a test; figures go to
docs/BENCHMARKS.md.

`--cpu N` measures instead the engine's own CPU per command, which a shared machine
disturbs far less than throughput: one thread sends one fixed stream of N commands of
the same mix (the same seed every run), with `time.thread_time()` summed around each, so
two trees run one after the other compare command for command. `--name` keeps two runs'
databases apart on one server.
"""

import argparse
import cProfile
import json
import os
import platform
import random
import re
import subprocess
import sys
import threading
import time
from collections import defaultdict
from decimal import Decimal
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
CEILING_DIR = ROOT / "bench" / "ceiling"
BENCH_DB = "qt_bench_engine"
CEILING_DB = "qt_bench_ceiling"
CPU_SEED = 11


def psql(server: str, *commands: str) -> None:
    for command in commands:
        subprocess.run(["psql", f"{server}/postgres", "-qc", command], check=True, capture_output=True)


def setup_django(server: str) -> None:
    os.environ["DATABASE_URL"] = f"{server}/{BENCH_DB}"
    os.environ.pop("REDIS_URL", None)
    os.environ["DEBUG"] = "0"
    os.environ.setdefault("DJANGO_SECRET_KEY", "bench-only-" + "x" * 40)
    os.environ["DJANGO_SETTINGS_MODULE"] = "quantumtrades.settings"
    os.environ["LOG_LEVEL"] = "WARNING"
    sys.path.insert(0, str(ROOT))
    import django

    django.setup()


def build_world(traders: int, resting_per_side: int):
    """A market, funded traders and a book with depth on both sides."""
    from django.core.management import call_command

    from accounts.models import Asset, User
    from accounts.services import balance_deposit
    from marketdata.models import Market
    from orders.services import order_place

    call_command("migrate", verbosity=0)
    usd, _ = Asset.objects.get_or_create(code="USD", defaults={"name": "US Dollar"})
    qtx, _ = Asset.objects.get_or_create(code="QTX", defaults={"name": "QuantumTrades Token"})
    market = Market.objects.create(
        symbol="QTX-USD",
        base=qtx,
        quote=usd,
        tick_size=Decimal("0.01"),
        lot_size=Decimal("0.01"),
        min_notional=Decimal("1"),
        maker_fee=Decimal("0.001"),
        taker_fee=Decimal("0.002"),
    )
    users = []
    for index in range(traders):
        user = User.objects.create(username=f"bench{index}")
        balance_deposit(user=user, asset="USD", amount=Decimal("1000000"))
        balance_deposit(user=user, asset="QTX", amount=Decimal("10000"))
        users.append(user)
    rng = random.Random(7)
    for _ in range(resting_per_side):
        order_place(user=rng.choice(users), market=market, side="buy", price=_price(rng, -1), quantity="1")
        order_place(user=rng.choice(users), market=market, side="sell", price=_price(rng, +1), quantity="1")
    return market, users


def _price(rng: random.Random, direction: int) -> Decimal:
    """A resting price 0.05 to 2.00 away from 100 on the given side."""
    return Decimal(100) + direction * Decimal(rng.randint(5, 200)) / 100


def command(market, users, rng: random.Random, mine: list):
    """One command of the mix: 45 % orders that rest, 35 % that cross the spread, 20 %
    cancels. Returns its kind, and a function that sends it (None: nothing to cancel)."""
    from orders.services import order_cancel, order_place

    user = rng.choice(users)
    roll = rng.random()
    if roll < 0.45:
        side = rng.choice(["buy", "sell"])
        price = _price(rng, -1 if side == "buy" else 1)

        def rest():
            result = order_place(user=user, market=market, side=side, price=price, quantity="1")
            mine.append((user, result.order.pk))

        return "rest", rest
    if roll < 0.80:
        side = rng.choice(["buy", "sell"])
        price = Decimal("102.50") if side == "buy" else Decimal("97.50")
        return "cross", lambda: order_place(
            user=user, market=market, side=side, price=price, quantity="1", time_in_force="IOC"
        )
    if not mine:
        return "cancel", None
    owner, order_id = mine.pop(rng.randrange(len(mine)))
    return "cancel", lambda: order_cancel(user=owner, order_id=order_id)


def worker(market, users, seconds, seed, results, barrier):
    from django.db import connection

    from quantumtrades.core.errors import ServiceError

    rng = random.Random(seed)
    latencies = defaultdict(list)
    errors = defaultdict(int)
    mine = []  # ids of orders this worker placed that may still rest
    barrier.wait()
    deadline = time.perf_counter() + seconds
    while time.perf_counter() < deadline:
        kind, send = command(market, users, rng, mine)
        if send is None:
            continue
        started = time.perf_counter()
        try:
            send()
        except ServiceError as exc:
            errors[f"{kind}:{exc.code}"] += 1
        latencies[kind].append(time.perf_counter() - started)
    connection.close()
    results.append((latencies, errors))


def cpu_run(market, users, commands: int) -> dict:
    """The engine's CPU per command over one fixed stream of `commands`, from one thread."""
    from quantumtrades.core.errors import ServiceError

    rng = random.Random(CPU_SEED)
    cpu, wall = defaultdict(list), []
    refused = 0
    mine = []
    for _ in range(commands):
        kind, send = command(market, users, rng, mine)
        if send is None:
            continue
        started, started_wall = time.thread_time(), time.perf_counter()
        try:
            send()
        except ServiceError:
            refused += 1
        cpu[kind].append(time.thread_time() - started)
        wall.append(time.perf_counter() - started_wall)
    every = [value for values in cpu.values() for value in values]
    return {
        "commands": len(every),
        "cpu_ms_per_command": round(sum(every) / len(every) * 1000, 3),
        "by_kind_cpu_ms": {kind: round(sum(v) / len(v) * 1000, 3) for kind, v in sorted(cpu.items())},
        "wall_ms_per_command": round(sum(wall) / len(wall) * 1000, 3),
        "refused": refused,
    }


def run(market, users, threads, seconds):
    results = []
    barrier = threading.Barrier(threads + 1)
    pool = [
        threading.Thread(target=worker, args=(market, users, seconds, seed, results, barrier))
        for seed in range(threads)
    ]
    for thread in pool:
        thread.start()
    barrier.wait()
    started = time.perf_counter()
    for thread in pool:
        thread.join()
    elapsed = time.perf_counter() - started
    merged, errors = defaultdict(list), defaultdict(int)
    for latencies, errs in results:
        for kind, values in latencies.items():
            merged[kind].extend(values)
        for key, count in errs.items():
            errors[key] += count
    every = sorted(v for values in merged.values() for v in values)
    report = {
        "threads": threads,
        "seconds": round(elapsed, 2),
        "commands": len(every),
        "commands_per_s": round(len(every) / elapsed, 1),
        "p50_ms": _pct(every, 0.50),
        "p99_ms": _pct(every, 0.99),
        "by_kind": {
            kind: {"count": len(v), "p50_ms": _pct(sorted(v), 0.5), "p99_ms": _pct(sorted(v), 0.99)}
            for kind, v in sorted(merged.items())
        },
        "rejections": dict(errors),
    }
    return report


def _pct(values, q):
    if not values:
        return None
    return round(values[min(len(values) - 1, int(q * len(values)))] * 1000, 2)


def ceiling(server: str, clients: int, seconds: int) -> float:
    psql(server, f"DROP DATABASE IF EXISTS {CEILING_DB} WITH (FORCE)", f"CREATE DATABASE {CEILING_DB}")
    subprocess.run(
        ["psql", f"{server}/{CEILING_DB}", "-q", "-f", str(CEILING_DIR / "match_ceiling_schema.sql")],
        check=True,
        capture_output=True,
    )
    out = subprocess.run(
        [
            "pgbench",
            "-n",
            "-d",
            f"{server}/{CEILING_DB}",
            "-f",
            str(CEILING_DIR / "match_ceiling.sql"),
            "-c",
            str(clients),
            "-j",
            str(min(clients, 2)),
            "-T",
            str(seconds),
        ],
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    psql(server, f"DROP DATABASE IF EXISTS {CEILING_DB} WITH (FORCE)")
    return float(re.search(r"tps = ([\d.]+)", out).group(1))


def machine() -> dict:
    cpu = next(
        (
            line.split(":", 1)[1].strip()
            for line in Path("/proc/cpuinfo").read_text().splitlines()
            if "model name" in line
        ),
        platform.processor(),
    )
    pg = subprocess.run(["psql", "--version"], capture_output=True, text=True).stdout.strip()
    return {"cpus": os.cpu_count(), "cpu": cpu, "postgres": pg, "python": platform.python_version()}


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--pg", default="postgresql://postgres@127.0.0.1:5432", help="server URL, no database")
    parser.add_argument("--seconds", type=int, default=20)
    parser.add_argument("--threads", default="1,8")
    parser.add_argument("--traders", type=int, default=300)
    parser.add_argument("--resting", type=int, default=400, help="resting orders per side before the run")
    parser.add_argument("--no-ceiling", action="store_true")
    parser.add_argument("--cpu", type=int, metavar="N", help="measure CPU per command over N commands instead")
    parser.add_argument("--rounds", type=int, default=1, help="--cpu: fresh worlds measured one after another")
    parser.add_argument("--name", default="", help="a suffix for the benchmark's database names")
    parser.add_argument("--profile", metavar="PATH", help="--cpu: write a cProfile of the commands (pstats) here")
    parser.add_argument(
        "--switch-interval", type=float, help="sys.setswitchinterval, seconds (default: Python's, as the server)"
    )
    args = parser.parse_args()
    if args.name:
        global BENCH_DB, CEILING_DB
        BENCH_DB, CEILING_DB = f"{BENCH_DB}_{args.name}", f"{CEILING_DB}_{args.name}"
    # Before commands were grouped per market, 0.2 ms let the book lock's holder back in
    # sooner; since, Python's default does as well (docs/BENCHMARKS.md, "The switch
    # interval, again"). The option stays for comparing them.
    if args.switch_interval is not None:
        sys.setswitchinterval(args.switch_interval)

    psql(args.pg, f"DROP DATABASE IF EXISTS {BENCH_DB} WITH (FORCE)", f"CREATE DATABASE {BENCH_DB}")
    setup_django(args.pg)
    from django.db import connection

    from orders.selectors import reconcile

    market, users = build_world(args.traders, args.resting)
    connection.close()
    if args.cpu:
        for round_ in range(args.rounds):
            if round_:
                # The pool's idle connections too: DROP ... WITH (FORCE) ends them, and the
                # pool would lend a dead one to the next round.
                connection.close()
                connection.close_pool()
                psql(args.pg, f"DROP DATABASE IF EXISTS {BENCH_DB} WITH (FORCE)", f"CREATE DATABASE {BENCH_DB}")
                market, users = build_world(args.traders, args.resting)
            profile = cProfile.Profile() if args.profile else None
            if profile:
                profile.enable()
            report = cpu_run(market, users, args.cpu)
            if profile:
                profile.disable()
                profile.dump_stats(args.profile)
            print(json.dumps({"round": round_ + 1, **report}), flush=True)
        print(json.dumps({"machine": machine(), "reconcile_breaches": len(reconcile())}))
        connection.close()
        psql(args.pg, f"DROP DATABASE IF EXISTS {BENCH_DB} WITH (FORCE)")
        return
    reports = []
    for threads in [int(t) for t in args.threads.split(",")]:
        report = run(market, users, threads, args.seconds)
        if not args.no_ceiling:
            report["ceiling_tps"] = ceiling(args.pg, threads, args.seconds)
            report["ratio"] = round(report["commands_per_s"] / report["ceiling_tps"], 2)
        reports.append(report)
        print(json.dumps(report), flush=True)
    breaches = reconcile()
    print(json.dumps({"machine": machine(), "reconcile_breaches": len(breaches)}))
    connection.close()
    psql(args.pg, f"DROP DATABASE IF EXISTS {BENCH_DB} WITH (FORCE)")
    print(
        "\n| threads | commands/s | p50 ms | p99 ms | rest p50/p99 | cross p50/p99 | cancel p50/p99 | ceiling tps | ratio |"
    )
    print("|---|---|---|---|---|---|---|---|---|")

    def cell(report, kind):
        found = report["by_kind"].get(kind)
        return f"{found['p50_ms']} / {found['p99_ms']}" if found else "-"

    for r in reports:
        print(
            f"| {r['threads']} | {r['commands_per_s']} | {r['p50_ms']} | {r['p99_ms']} | {cell(r, 'rest')} | "
            f"{cell(r, 'cross')} | {cell(r, 'cancel')} | {r.get('ceiling_tps', '-')} | {r.get('ratio', '-')} |"
        )


if __name__ == "__main__":
    main()
