"""Order entry over HTTP, the way an integrator drives it, next to the engine and the database.

    .venv/bin/python bench/api_orders.py [--seconds 15] [--clients 1,4,16] [--layouts 1,2] [--batch 20]
        [--server uvicorn|daphne|granian] [--mix book|neutral] [--think MS]

Builds a fresh PostgreSQL database (qt_bench_api, or `--db`): one market (QTX-USD) and funded
traders. Then, for each layout, the real server (`--server`, uvicorn by default, as in
production; DEBUG=0, Redis for the cache and the channel layer):

- `1`: one server process, the clients connected to it directly;
- `N` > 1: N processes behind Debian's nginx with the project's site (docker/nginx.conf),
  as docker compose runs them.

For each client count, that many clients (asyncio, one keep-alive connection each, in this
process) post limit orders with a client_order_id for `--seconds` after a warm-up, in one of
two mixes (`--mix`):
- `book` (the default): one trader per client, on a book of 200 resting orders a side; about
  two thirds rest away from the middle of the book, one third cross the spread and trade;
- `neutral`: the orders of the neutral load tool that also loaded the public implementations
  of the original specifications (orderload.py: side at random, price uniform in 100 +/- 2 to
  the cent, 1 to 10 whole lots, each order a random one of twenty traders), on an empty book,
  so that about half of them cross one or more levels of the book they build.
With `--think MS` each client waits that long after each answer, as a client with work of its
own between orders does: a server that idles between requests spends more CPU on each.
Then (`--batch N`, 0 to skip) the same mix in batches of N (`POST /api/orders/batch`), so
that a batch's orders/s stand beside one by one's. Reported: orders/s, p50 and p99 latency,
every answer that was not 201, the server's CPU per order (the server and nginx processes'
CPU time over the window, divided by the orders) and its context switches per order (all
their threads'; each hand-over between threads and each wait on a socket is one).
`GET /api/auth/me` is timed at one client as the cost of a request that does nothing.

In the same run, on the same database: the engine alone (`orders.services.order_place` in
this process, one thread: what one order costs with no HTTP), and the database ceiling
(`bench/ceiling/match_ceiling.sql` under pgbench, 1 and 16 clients). Prints a JSON document
and the Markdown table of docs/BENCHMARKS.md. Every loop is bounded in time; every process
started here is stopped by pid; only loopback addresses are used.
"""

import argparse
import asyncio
import gc
import json
import math
import os
import platform
import random
import secrets
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from decimal import Decimal
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from engine import ceiling  # noqa: E402  (bench/engine.py: pgbench on match_ceiling.sql)

from tests.e2e.servers import AppServer, Daphne, Nginx, nginx_path  # noqa: E402  (the test suite's process helpers)

BENCH_DB = "qt_bench_api"
PASSWORD = "bench-pass-2026-long"
MID = Decimal("100.00")
TICK = Decimal("0.01")
RESTING_PER_SIDE = 200
# `--versus`: pairs of blocks run first and not counted.
PAIRED_WARMUP = 2


# --- Setup ------------------------------------------------------------------------------------


def server_env(args) -> dict:
    env = {
        **os.environ,
        "DATABASE_URL": f"{args.pg}/{args.db}",
        "REDIS_URL": args.redis,
        "DEBUG": "0",
        "DJANGO_SECRET_KEY": "bench-" + secrets.token_urlsafe(40),
        "ALLOWED_HOSTS": "127.0.0.1,localhost",
        # Plain HTTP on loopback: no redirect to HTTPS, no HSTS.
        "SECURE_SSL_REDIRECT": "0",
        "SECURE_COOKIES": "0",
        "SECURE_HSTS_SECONDS": "0",
        # Throttles stay on (they cost a round trip to Redis per request) but never bite.
        "THROTTLE_USER": "1000000/minute",
        "THROTTLE_ORDERS": "1000000/minute",
        "THROTTLE_AUTH": "100000/minute",
        "LOG_LEVEL": "WARNING",
    }
    env.pop("SIMULATE_MARKET_RATE", None)
    return env


def psql(server: str, *commands: str) -> None:
    for command in commands:
        subprocess.run(["psql", f"{server}/postgres", "-qc", command], check=True, capture_output=True)


def setup_django(env: dict) -> None:
    os.environ.update(env)
    os.environ["DJANGO_SETTINGS_MODULE"] = "quantumtrades.settings"
    import django

    django.setup()


def build_world(traders: int, *, book: bool = True):
    """Migrate, one market, `traders` funded traders; with `book`, 200 resting orders a side."""
    from django.core.management import call_command

    from accounts.services import balance_deposit
    from orders.services import order_place
    from tests.factories import fee_account, qtx_usd_market

    call_command("migrate", verbosity=0)
    fee_account()
    market = qtx_usd_market()
    from accounts.models import User

    users = []
    for index in range(traders + 1):
        # A venue raises its busy accounts' open-order limit; the load here rests thousands.
        user = User.objects.create_user(username=f"bench{index}", password=PASSWORD, max_open_orders=1_000_000)
        balance_deposit(user=user, asset="USD", amount=Decimal("1000000000"))
        balance_deposit(user=user, asset="QTX", amount=Decimal("10000000"))
        users.append(user)
    maker, traders = users[0], users[1:]
    rng = random.Random(1)
    for _ in range(RESTING_PER_SIDE if book else 0):
        for side, sign in (("buy", -1), ("sell", 1)):
            price = MID + sign * TICK * rng.randint(1, 200)
            order_place(user=maker, market=market, side=side, price=price, quantity=Decimal("5.00"))
    return market, traders


def book_mix(rng: random.Random) -> dict:
    """Two thirds rest away from the middle, one third cross the spread and trade."""
    side = rng.choice(("buy", "sell"))
    sign = -1 if side == "buy" else 1
    rests = rng.random() < 2 / 3
    price = MID + sign * TICK * rng.randint(1, 100) if rests else MID - sign * Decimal("0.50")
    quantity = Decimal(rng.randint(10, 100)) / 100
    return {"symbol": "QTX-USD", "side": side, "type": "limit", "price": f"{price}", "quantity": f"{quantity}"}


def neutral_mix(rng: random.Random) -> dict:
    """The neutral load tool's orders (orderload.py, which also loaded the public implementations
    of the original specifications): side at random, price uniform in 100 +/- 2 to the cent,
    1 to 10 whole lots, so about half of them cross one or more levels of a book they built."""
    side = "buy" if rng.random() < 0.5 else "sell"
    price = f"{100 + rng.uniform(-2, 2):.2f}"
    return {"symbol": "QTX-USD", "side": side, "type": "limit", "price": price, "quantity": str(rng.randint(1, 10))}


# `--mix`: the world each starts from (a resting book or none), its orders, and whose they are.
MIXES = {
    # One trader per client, on a book of 200 resting orders a side.
    "book": {"orders": book_mix, "book": True, "traders": None},
    # Twenty traders, each order a random one's (as orderload registers twenty), on an empty book.
    "neutral": {"orders": neutral_mix, "book": False, "traders": 20},
}


def processes(pids) -> list[int]:
    """The processes and their children (nginx's workers)."""
    return [task for pid in pids for task in [pid, *children(pid)]]


def cpu_seconds(pids) -> float:
    """User + system CPU of the processes and their children."""
    total = 0.0
    for process in processes(pids):
        try:
            fields = Path(f"/proc/{process}/stat").read_text().rsplit(")", 1)[1].split()
        except FileNotFoundError:
            continue
        total += (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    return total


def context_switches(pids) -> int:
    """Voluntary and involuntary context switches of every thread of the processes and their
    children: each hand-over between threads, and each wait for a socket, costs one."""
    total = 0
    for process in processes(pids):
        for status in Path(f"/proc/{process}/task").glob("*/status"):
            try:
                lines = status.read_text().splitlines()
            except FileNotFoundError:  # the thread ended meanwhile
                continue
            total += sum(int(line.split()[1]) for line in lines if "ctxt_switches" in line)
    return total


def children(pid) -> list[int]:
    try:
        return [int(child) for child in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]
    except FileNotFoundError:
        return []


# --- A lean HTTP/1.1 client --------------------------------------------------------------------
# On two shared cores the load generator's CPU is taken from the server, so it must cost far
# less per request than the server does: a bare asyncio stream, one request at a time.


class Connection:
    def __init__(self, port: int):
        self.port = port
        self.reconnects = 0

    async def open(self):
        self.reader, self.writer = await asyncio.open_connection("127.0.0.1", self.port)
        return self

    async def request(self, method: str, path: str, body: dict | None = None, token: str | None = None):
        try:
            return await self._request(method, path, body, token)
        except (asyncio.IncompleteReadError, ConnectionError):
            # The server (nginx after keepalive_requests) closed the connection: a new one.
            self.close()
            await self.open()
            self.reconnects += 1
            return await self._request(method, path, body, token)

    async def _request(self, method, path, body, token):
        data = json.dumps(body).encode() if body is not None else b""
        head = f"{method} {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
        if token:
            head += f"Authorization: Bearer {token}\r\n"
        self.writer.write(f"{head}Content-Length: {len(data)}\r\n\r\n".encode() + data)
        status_line, *header_lines = (await self.reader.readuntil(b"\r\n\r\n")).decode("latin-1").split("\r\n")
        headers = dict(line.lower().split(": ", 1) for line in header_lines if ": " in line)
        if "content-length" in headers:
            payload = await self.reader.readexactly(int(headers["content-length"]))
        else:  # chunked
            payload = b""
            while size := int((await self.reader.readuntil(b"\r\n")).strip(), 16):
                payload += await self.reader.readexactly(size + 2)
            await self.reader.readuntil(b"\r\n")
        return int(status_line.split()[1]), payload

    def close(self):
        self.writer.close()


async def login(port: int, username: str) -> tuple[Connection, str]:
    connection = await Connection(port).open()
    status, body = await connection.request("POST", "/api/auth/login", {"username": username, "password": PASSWORD})
    assert status == 200, body
    return connection, json.loads(body)["access"]


def summary(latencies, outcomes, seconds) -> dict:
    latencies = sorted(latencies)

    def ms(q):
        return round(latencies[min(len(latencies) - 1, int(q * len(latencies)))] * 1000, 2) if latencies else None

    return {
        "per_second": round(len(latencies) / seconds, 1),
        "p50_ms": ms(0.50),
        "p99_ms": ms(0.99),
        "outcomes": outcomes,
    }


async def load(
    port,
    usernames,
    *,
    seconds,
    warmup,
    pids,
    path="/api/orders",
    seed=0,
    batch=0,
    mix="book",
    clients=None,
    logged_in=None,
    think=0.0,
) -> dict:
    """`clients` clients (default: one per username) on one keep-alive connection each, for
    `seconds` after `warmup`; with `batch`, each request places that many orders (`POST
    /api/orders/batch`). The book mix sends each client's orders as its own trader; the
    neutral mix sends each order as a trader drawn at random from `usernames`. With
    `logged_in` ((connection, token) pairs from `login`) those sessions are used, and left
    open, instead of logging in anew. With `think` (seconds), each client waits that long
    after each answer before its next request, as a client with work of its own between
    orders does (orderload.py's httpx spends 1.4-2.2 ms of CPU a request)."""
    keep = logged_in is not None
    logged_in = logged_in if keep else [await login(port, username) for username in usernames]
    tokens = [token for _, token in logged_in]
    for connection, _ in logged_in[clients:] if clients and not keep else ():
        connection.close()
    sessions = logged_in[:clients] if clients else logged_in
    make_order, shared = MIXES[mix]["orders"], MIXES[mix]["traders"] is not None
    latencies, outcomes = [], {}
    loop = asyncio.get_running_loop()
    start = loop.time() + warmup
    stop = start + seconds
    cpu = {}

    async def client(index, connection, token):
        rng = random.Random(seed * 1000 + index)
        sent = 0
        while (now := loop.time()) < stop:
            if shared:
                token = rng.choice(tokens)
            if batch:
                orders = [
                    {**make_order(rng), "client_order_id": f"b{seed}-{index}-{sent}-{n}-{time.time_ns()}"}
                    for n in range(batch)
                ]
                status, payload = await connection.request("POST", "/api/orders/batch", {"orders": orders}, token)
                if status == 200 and start <= now:  # each order's own answer, as one by one counts them
                    for result in json.loads(payload)["results"]:
                        outcomes[f"order {result['status']}"] = outcomes.get(f"order {result['status']}", 0) + 1
            elif path == "/api/orders":
                body = {**make_order(rng), "client_order_id": f"b{seed}-{index}-{sent}-{time.time_ns()}"}
                status, _ = await connection.request("POST", path, body, token)
            else:
                status, _ = await connection.request("GET", path, None, token)
            sent += 1
            finished = loop.time()
            if start <= now and finished <= stop:
                outcomes[str(status)] = outcomes.get(str(status), 0) + 1
                if status in (200, 201):
                    latencies.append(finished - now)
            if think:
                await asyncio.sleep(think)

    async def meter():
        await asyncio.sleep(max(0, start - loop.time()))
        cpu["start"], cpu["switches_start"] = cpu_seconds(pids), context_switches(pids)
        await asyncio.sleep(max(0, stop - loop.time()))
        cpu["stop"], cpu["switches_stop"] = cpu_seconds(pids), context_switches(pids)

    # The load generator's own collector pauses would land in the latencies measured: this
    # process holds all of Django and the world it built, and a full collection of it took
    # up to 94 ms, in every request in flight. Nothing it allocates here needs collecting.
    gc.collect()
    gc.freeze()
    gc.disable()
    try:
        await asyncio.gather(meter(), *(client(i, c, t) for i, (c, t) in enumerate(sessions)))
    finally:
        gc.enable()
        gc.unfreeze()
    for connection, _ in sessions if not keep else ():
        connection.close()
    result = summary(latencies, outcomes, seconds)
    result["server_cpu_ms_per_request"] = (
        round((cpu["stop"] - cpu["start"]) * 1000 / len(latencies), 2) if latencies else None
    )
    result["server_switches_per_request"] = (
        round((cpu["switches_stop"] - cpu["switches_start"]) / len(latencies), 1) if latencies else None
    )
    if batch:
        result["orders_per_second"] = round(result["per_second"] * batch, 1)
        result["server_cpu_ms_per_order"] = (
            round((cpu["stop"] - cpu["start"]) * 1000 / (len(latencies) * batch), 3) if latencies else None
        )
    return result


# --- Layouts -----------------------------------------------------------------------------------


class QuietDaphne(Daphne):
    """daphne without its access log: nginx keeps one, and the log line costs daphne CPU.
    It serves the code of `cwd`: this checkout, or another one (`--tree`) to compare."""

    def argv(self):
        argv = super().argv()
        return [*argv[:-1], "-v", "0", argv[-1]]


class QuietServer(AppServer):
    """uvicorn or granian without its access log, for the same reason."""

    def argv(self):
        argv = super().argv()
        quiet = {"uvicorn": ["--no-access-log", "--log-level", "warning"], "granian": []}[self.server]
        return [*argv[:-1], *quiet, argv[-1]]


def quiet_server(server: str, workdir: Path, env: dict):
    """The application under `server`, with no access log."""
    return QuietDaphne(workdir, env) if server == "daphne" else QuietServer(workdir, env, server)


def start_layout(processes: int, env: dict, workdir: Path, tree: Path, server: str = "daphne"):
    servers = []
    for _ in range(processes):
        process = quiet_server(server, workdir, env)
        process.cwd = tree
        servers.append(process.start())
    if processes == 1:
        return servers, servers[0].port, [d.process.pid for d in servers]
    if not nginx_path():
        raise SystemExit("layout 2 needs Debian's nginx: apt-get install nginx")
    proxy = Nginx(workdir, [d.port for d in servers]).start()
    return [*servers, proxy], proxy.port, [p.process.pid for p in (*servers, proxy)]


def usernames(traders, clients: int, mix: str) -> list[str]:
    """Whose orders the clients send: one trader per client, or all of them (neutral)."""
    return [user.username for user in (traders if MIXES[mix]["traders"] else traders[:clients])]


def run_layouts(args, env, traders) -> list[dict]:
    runs = []
    workdir = Path(tempfile.mkdtemp(prefix="qt-bench-api-"))
    try:
        for processes in (int(value) for value in args.layouts.split(",")):
            started, port, pids = start_layout(processes, env, workdir, args.tree, args.server)
            try:
                me = asyncio.run(load(port, [traders[0].username], seconds=5, warmup=1, pids=pids, path="/api/auth/me"))
                runs.append({"layout": processes, "clients": 1, "path": "GET /api/auth/me", **me})
                for clients in (int(value) for value in args.clients.split(",")):
                    result = asyncio.run(
                        load(
                            port,
                            usernames(traders, clients, args.mix),
                            seconds=args.seconds,
                            warmup=args.warmup,
                            pids=pids,
                            seed=processes * 100 + clients,
                            mix=args.mix,
                            clients=clients,
                            think=args.think / 1000,
                        )
                    )
                    runs.append({"layout": processes, "clients": clients, "path": "POST /api/orders", **result})
                    print(json.dumps(runs[-1]), file=sys.stderr)
                for clients in (int(value) for value in args.clients.split(",")) if args.batch else ():
                    result = asyncio.run(
                        load(
                            port,
                            usernames(traders, clients, args.mix),
                            seconds=args.seconds,
                            warmup=args.warmup,
                            pids=pids,
                            seed=processes * 100 + clients + 50,
                            batch=args.batch,
                            mix=args.mix,
                            clients=clients,
                        )
                    )
                    path = f"POST /api/orders/batch ({args.batch})"
                    runs.append({"layout": processes, "clients": clients, "path": path, **result})
                    print(json.dumps(runs[-1]), file=sys.stderr)
            finally:
                for process in reversed(started):
                    process.stop()
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    return runs


def run_paired(args, env, traders) -> dict:
    """`--versus TREE`: this tree (`--tree`) and TREE, one server process each, side by side
    on the same database, the first of `--clients` in blocks of `--block-seconds` that
    alternate between them (ABBA...): two pairs of warm-up, then `--blocks` pairs. This
    machine's speed drifts by up to two times within minutes, more than any one change
    moves; a block of each, a few seconds apart, sees the same machine, so the pairs compare
    where whole runs in turn did not."""
    workdir = Path(tempfile.mkdtemp(prefix="qt-bench-api-"))
    started = []
    try:
        sides = {}
        for name, tree in (("this", args.tree), ("versus", args.versus)):
            servers, port, pids = start_layout(1, env, workdir, tree, args.server)
            started += servers
            sides[name] = (port, pids)
        clients = int(args.clients.split(",")[0])

        async def blocks():
            names = usernames(traders, clients, args.mix)
            sessions = {name: [await login(port, user) for user in names] for name, (port, _) in sides.items()}
            rows = {name: [] for name in sides}
            for block in range(PAIRED_WARMUP + args.blocks):
                warming = block < PAIRED_WARMUP
                # ABBA: each side goes first as often as second.
                for name in ("this", "versus") if block % 4 in (0, 3) else ("versus", "this"):
                    port, pids = sides[name]
                    result = await load(
                        port,
                        names,
                        seconds=1 if warming else args.block_seconds,
                        warmup=0 if warming else 0.2,
                        pids=pids,
                        mix=args.mix,
                        clients=clients,
                        logged_in=sessions[name],
                        seed=block,
                    )
                    if not warming:
                        rows[name].append(result)
            for pairs in sessions.values():
                for connection, _ in pairs:
                    connection.close()
            return rows

        rows = asyncio.run(blocks())
    finally:
        for process in reversed(started):
            process.stop()
        shutil.rmtree(workdir, ignore_errors=True)
    return paired_summary(rows)


def paired_summary(rows) -> dict:
    """Medians of each side's blocks; in how many pairs this tree did better; and the
    geometric mean of the pairs' ratios (this / versus) with about 95 % of its spread (two
    standard errors either side), the figure that the drift between pairs least moves."""
    keys = ("per_second", "p50_ms", "server_cpu_ms_per_request")
    medians = {name: {key: statistics.median(row[key] for row in runs) for key in keys} for name, runs in rows.items()}
    pairs = list(zip(rows["this"], rows["versus"], strict=True))
    ratios = {}
    for key in keys:
        logs = [math.log(a[key] / b[key]) for a, b in pairs]
        mean, error = statistics.mean(logs), 2 * statistics.stdev(logs) / math.sqrt(len(logs))
        ratios[key] = [round(math.exp(mean + shift), 3) for shift in (0, -error, error)]
    better = {
        "per_second": sum(a["per_second"] > b["per_second"] for a, b in pairs),
        "p50_ms": sum(a["p50_ms"] < b["p50_ms"] for a, b in pairs),
        "server_cpu_ms_per_request": sum(
            a["server_cpu_ms_per_request"] < b["server_cpu_ms_per_request"] for a, b in pairs
        ),
    }
    outcomes = {name: {} for name in rows}
    for name, runs in rows.items():
        for run in runs:
            for outcome, count in run["outcomes"].items():
                outcomes[name][outcome] = outcomes[name].get(outcome, 0) + count
    return {
        "pairs": len(pairs),
        "ratio_and_interval": ratios,
        "medians": medians,
        "this_better_in": better,
        "outcomes": outcomes,
        "blocks": rows,
    }


# --- The engine alone, and the database ceiling -----------------------------------------------


def engine_alone(market, traders, seconds, warmup, mix="book") -> dict:
    """`order_place` in this process, one thread, the mix's orders (a neutral order is a
    random trader's, a book order the first trader's)."""
    from django.db import connection

    from orders.services import order_place
    from quantumtrades.core.errors import ServiceError

    rng = random.Random(5)
    latencies, outcomes = [], {}
    start = time.perf_counter() + warmup
    stop = start + seconds
    sent = 0
    while (began := time.perf_counter()) < stop:
        order = MIXES[mix]["orders"](rng)
        sent += 1
        try:
            order_place(
                user=rng.choice(traders) if MIXES[mix]["traders"] else traders[0],
                market=market,
                side=order["side"],
                type="limit",
                price=Decimal(order["price"]),
                quantity=Decimal(order["quantity"]),
                client_order_id=f"engine-{sent}-{time.time_ns()}",
            )
            outcome = "ok"
        except ServiceError as exc:
            outcome = exc.code
        finished = time.perf_counter()
        if began >= start:
            outcomes[outcome] = outcomes.get(outcome, 0) + 1
            if outcome == "ok":
                latencies.append(finished - began)
    connection.close()
    return summary(latencies, outcomes, seconds)


def machine() -> dict:
    cpu = next(
        (
            line.split(":", 1)[1].strip()
            for line in Path("/proc/cpuinfo").read_text().splitlines()
            if "model name" in line
        ),
        platform.processor(),
    )
    version = subprocess.run(["psql", "--version"], capture_output=True, text=True).stdout.strip()
    return {
        "nproc": os.cpu_count(),
        "cpu": cpu,
        "postgresql": version,
        "python": platform.python_version(),
        "load_average_before": round(os.getloadavg()[0], 2),
    }


def markdown(result) -> str:
    """The table of docs/BENCHMARKS.md; a batch's row gives orders/s and CPU per order after
    its requests'."""
    lines = [
        "| layout | clients | request | per s | p50 ms | p99 ms | server CPU ms / request | switches / request | answers |",
        "|---|---:|---|---:|---:|---:|---:|---:|---|",
    ]
    for run in result["http"]:
        server = result["server"]
        layout = f"1 {server}" if run["layout"] == 1 else f"nginx + {run['layout']} {server}"
        answers = ", ".join(f"{k}: {v}" for k, v in sorted(run["outcomes"].items()))
        per_second, cpu = run["per_second"], run["server_cpu_ms_per_request"]
        if "orders_per_second" in run:
            per_second = f"{per_second} ({run['orders_per_second']} orders)"
            cpu = f"{cpu} ({run['server_cpu_ms_per_order']} per order)"
        lines.append(
            f"| {layout} | {run['clients']} | `{run['path']}` | {per_second} | {run['p50_ms']} | "
            f"{run['p99_ms']} | {cpu} | {run['server_switches_per_request']} | {answers} |"
        )
    engine = result["engine"]
    lines.append(
        f"| in process | 1 thread | `order_place` | {engine['per_second']} | {engine['p50_ms']} | {engine['p99_ms']} | | | |"
    )
    for clients, tps in result["ceiling"].items():
        lines.append(f"| pgbench | {clients} | `match_ceiling.sql` | {tps} | | | | | |")
    return "\n".join(lines)


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--pg", default="postgresql://postgres@127.0.0.1:5432", help="server URL, no database")
    parser.add_argument("--redis", default="redis://127.0.0.1:6379/8")
    parser.add_argument("--seconds", type=int, default=15)
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--clients", default="1,4,16")
    parser.add_argument("--layouts", default="1,2", help="1: one server process; 2: two behind nginx")
    parser.add_argument("--no-ceiling", action="store_true")
    parser.add_argument("--batch", type=int, default=20, help="orders per batch request (0: no batch runs)")
    parser.add_argument("--server", choices=["daphne", "uvicorn", "granian"], default="uvicorn")
    parser.add_argument(
        "--mix", choices=sorted(MIXES), default="book", help="book: this file's own; neutral: orderload.py's"
    )
    parser.add_argument("--db", default=BENCH_DB, help="the database it builds and drops")
    parser.add_argument(
        "--tree", type=Path, default=ROOT, help="serve the code of another checkout (an earlier commit), same database"
    )
    parser.add_argument(
        "--versus",
        type=Path,
        help="another checkout to pair with this one, block by block, one client or the first of --clients (no other runs)",
    )
    parser.add_argument("--blocks", type=int, default=22, help="with --versus: the pairs of blocks counted")
    parser.add_argument("--block-seconds", type=float, default=3.0, help="with --versus: the length of a block")
    parser.add_argument(
        "--think", type=float, default=0.0, help="ms each client waits after an answer (one-by-one order runs)"
    )
    args = parser.parse_args()

    info = machine()
    env = server_env(args)
    psql(args.pg, f"DROP DATABASE IF EXISTS {args.db} WITH (FORCE)", f"CREATE DATABASE {args.db}")
    try:
        setup_django(env)
        mix = MIXES[args.mix]
        market, traders = build_world(
            mix["traders"] or max(int(value) for value in args.clients.split(",")), book=mix["book"]
        )
        from django.db import connection

        connection.close()
        if args.versus:
            print(json.dumps({"paired": run_paired(args, env, traders), "mix": args.mix, "machine": info}, indent=2))
            return
        http = run_layouts(args, env, traders)
        engine = engine_alone(market, traders, args.seconds, args.warmup, args.mix)
        tps = {} if args.no_ceiling else {n: ceiling(args.pg, n, args.seconds) for n in (1, 16)}
    finally:
        from django.db import connection

        connection.close()
        psql(args.pg, f"DROP DATABASE IF EXISTS {args.db} WITH (FORCE)")
    result = {
        "seconds": args.seconds,
        "server": args.server,
        "mix": args.mix,
        "think_ms": args.think,
        "http": http,
        "engine": engine,
        "ceiling": tps,
        "machine": info,
    }
    print(json.dumps(result, indent=2))
    print(markdown(result))


if __name__ == "__main__":
    main()
