"""POST /api/orders over HTTP against the running server on PostgreSQL, next to the engine.

    .venv/bin/python bench/api_orders.py [--seconds 20] [--clients 16] [--servers 1,2] [--write]

Builds a fresh database (qt_bench_api), one market (QTX-USD) with a book on both sides
and one funded trader per client, then starts daphne (`quantumtrades.asgi:application`,
DEBUG=0, Redis for cache and channel layer when it answers) on a loopback port. Each of
`--clients` threads logs in through /api/auth/login and posts a realistic mix of limit
orders on one keep-alive connection for `--seconds` (after a warm-up): about two thirds
rest away from the middle of the book, one third cross the spread and trade, every one
with a client_order_id, as a careful integrator sends them.

Then, in the same run, on the same database and book, the same number of threads send
the same mix straight to `orders.services.order_place` in this process: the engine's
own figure, so the difference is what HTTP costs (parsing, JWT, throttles, rendering,
daphne). Prints JSON; `--write` puts the figures in docs/BENCHMARKS.md, section
"REST API". Every loop is bounded in time; every process started here is stopped by pid.
"""

import argparse
import http.client
import json
import os
import platform
import random
import re
import secrets
import signal
import socket
import subprocess
import sys
import threading
import time
from decimal import Decimal
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
BIN = ROOT / ".venv" / "bin"
DOC = ROOT / "docs" / "BENCHMARKS.md"
BENCH_DB = "qt_bench_api"
PASSWORD = "bench-pass-2026-long"
MID = Decimal("100.00")
TICK = Decimal("0.01")
RESTING_PER_SIDE = 200


# --- Setup ------------------------------------------------------------------------------------


def redis_answers(url: str) -> bool:
    match = re.match(r"redis://([^:/]+):(\d+)", url)
    if not match:
        return False
    try:
        with socket.create_connection((match[1], int(match[2])), timeout=1) as sock:
            sock.sendall(b"PING\r\n")
            return sock.recv(16).startswith(b"+PONG")
    except OSError:
        return False


def server_env(args) -> dict:
    env = {
        **os.environ,
        "DATABASE_URL": f"{args.pg}/{BENCH_DB}",
        "DEBUG": "0",
        "DJANGO_SECRET_KEY": "bench-" + secrets.token_urlsafe(40),
        "ALLOWED_HOSTS": "127.0.0.1,localhost",
        # Plain HTTP on loopback: no redirect to HTTPS, no HSTS.
        "SECURE_SSL_REDIRECT": "0",
        "SECURE_COOKIES": "0",
        "SECURE_HSTS_SECONDS": "0",
        # Throttles stay on (they cost two counters per request) but never bite.
        "THROTTLE_USER": "1000000/minute",
        "THROTTLE_ORDERS": "1000000/minute",
        "THROTTLE_AUTH": "1000/minute",
        "LOG_LEVEL": "WARNING",
    }
    env.pop("REDIS_URL", None)
    if args.redis and redis_answers(args.redis):
        env["REDIS_URL"] = args.redis
    return env


def psql(server: str, *commands: str) -> None:
    for command in commands:
        subprocess.run(["psql", f"{server}/postgres", "-qc", command], check=True, capture_output=True)


def setup_django(env: dict) -> None:
    os.environ.update(env)
    if "REDIS_URL" not in env:
        os.environ.pop("REDIS_URL", None)
    os.environ["DJANGO_SETTINGS_MODULE"] = "quantumtrades.settings"
    sys.path.insert(0, str(ROOT))
    import django

    django.setup()


def build_world(clients: int):
    """Migrate, one market with a book on both sides, one funded trader per client."""
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
        tick_size=TICK,
        lot_size=Decimal("0.01"),
        min_notional=Decimal("1"),
        maker_fee=Decimal("0.001"),
        taker_fee=Decimal("0.002"),
    )
    users = []
    for index in range(clients + 1):
        user = User.objects.create_user(username=f"bench{index}", password=PASSWORD)
        balance_deposit(user=user, asset="USD", amount=Decimal("1000000000"))
        balance_deposit(user=user, asset="QTX", amount=Decimal("10000000"))
        users.append(user)
    maker, traders = users[0], users[1:]
    rng = random.Random(1)
    for _ in range(RESTING_PER_SIDE):
        for side, sign in (("buy", -1), ("sell", 1)):
            price = MID + sign * TICK * rng.randint(1, 200)
            order_place(user=maker, market=market, side=side, price=price, quantity=Decimal("5.00"))
    return market, traders


def order_mix(rng: random.Random) -> dict:
    """Two thirds rest away from the middle, one third cross the spread and trade."""
    side = rng.choice(("buy", "sell"))
    sign = -1 if side == "buy" else 1
    rests = rng.random() < 2 / 3
    price = MID + sign * TICK * rng.randint(1, 100) if rests else MID - sign * Decimal("0.50")
    quantity = Decimal(rng.randint(10, 100)) / 100
    return {"symbol": "QTX-USD", "side": side, "type": "limit", "price": f"{price}", "quantity": f"{quantity}"}


# --- The server -----------------------------------------------------------------------------------


def start_daphne(port: int, env: dict) -> subprocess.Popen:
    process = subprocess.Popen(
        [str(BIN / "daphne"), "-b", "127.0.0.1", "-p", str(port), "quantumtrades.asgi:application"],
        cwd=ROOT,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        start_new_session=True,
    )
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            connection = http.client.HTTPConnection("127.0.0.1", port, timeout=2)
            connection.request("GET", "/api/markets")
            if connection.getresponse().status == 200:
                return process
        except OSError:
            time.sleep(0.2)
    stop(process)
    raise RuntimeError(f"daphne did not answer on port {port}: {process.stderr.read().decode()[-2000:]}")


def stop(process: subprocess.Popen) -> None:
    if process.poll() is None:
        os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()


def call(connection, method, path, body=None, token=None):
    headers = {"Content-Type": "application/json"}
    if token:
        headers["Authorization"] = f"Bearer {token}"
    connection.request(method, path, body=json.dumps(body) if body is not None else None, headers=headers)
    response = connection.getresponse()
    return response.status, response.read()


# --- Load -------------------------------------------------------------------------------------------


class Recorder:
    """Latencies of the commands that finished inside the measured window (after the warm-up)."""

    def __init__(self, warmup: float, seconds: float):
        self.warmup, self.seconds = warmup, seconds
        self.latencies: list[float] = []
        self.outcomes: dict[str, int] = {}
        self.lock = threading.Lock()

    def open(self) -> None:
        """Run by the barrier as it releases the clients."""
        now = time.perf_counter()
        self.start = now + self.warmup
        self.stop_at = self.start + self.seconds

    def record(self, began: float, finished: float, outcome: str) -> None:
        if self.start <= finished <= self.stop_at:
            with self.lock:
                self.outcomes[outcome] = self.outcomes.get(outcome, 0) + 1
                if outcome in ("200", "201", "ok"):
                    self.latencies.append(finished - began)

    def summary(self) -> dict:
        latencies = sorted(self.latencies)

        def ms(q):
            return round(latencies[min(len(latencies) - 1, int(q * len(latencies)))] * 1000, 1) if latencies else None

        return {
            "orders_per_second": round(len(latencies) / self.seconds, 1),
            "p50_ms": ms(0.50),
            "p99_ms": ms(0.99),
            "outcomes": self.outcomes,
        }


def http_client(port, username, seed, recorder, ready):
    rng = random.Random(seed)
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    status, body = call(connection, "POST", "/api/auth/login", {"username": username, "password": PASSWORD})
    assert status == 200, body
    token = json.loads(body)["access"]
    ready.wait()
    sent = 0
    while time.perf_counter() < recorder.stop_at:
        order = {**order_mix(rng), "client_order_id": f"{username}-{seed}-{sent}"}
        sent += 1
        began = time.perf_counter()
        try:
            status, _ = call(connection, "POST", "/api/orders", order, token)
            outcome = str(status)
        except (OSError, http.client.HTTPException) as exc:
            outcome = type(exc).__name__
            connection.close()
            connection = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
        recorder.record(began, time.perf_counter(), outcome)
    connection.close()


def engine_client(market, user, seed, recorder, ready):
    from django.db import connection

    from orders.services import order_place
    from quantumtrades.errors import ServiceError

    rng = random.Random(seed)
    ready.wait()
    sent = 0
    while time.perf_counter() < recorder.stop_at:
        order = order_mix(rng)
        sent += 1
        began = time.perf_counter()
        try:
            order_place(
                user=user,
                market=market,
                side=order["side"],
                type="limit",
                price=Decimal(order["price"]),
                quantity=Decimal(order["quantity"]),
                client_order_id=f"engine-{user.username}-{seed}-{sent}",
            )
            outcome = "ok"
        except ServiceError as exc:
            outcome = exc.code
        recorder.record(began, time.perf_counter(), outcome)
    connection.close()


def run_load(target, argument_lists, warmup, seconds) -> dict:
    """Start one thread per argument list, release them together, wait for the window to end."""
    recorder = Recorder(warmup, seconds)
    # The window opens when the last client is ready (logged in), not before.
    ready = threading.Barrier(len(argument_lists) + 1, action=recorder.open)
    threads = [threading.Thread(target=target, args=(*arguments, recorder, ready)) for arguments in argument_lists]
    for thread in threads:
        thread.start()
    ready.wait(timeout=300)
    for thread in threads:
        thread.join(timeout=warmup + seconds + 60)
    return recorder.summary()


# --- Report ---------------------------------------------------------------------------------------


def machine(env: dict) -> dict:
    cpu = next(
        (
            line.split(":", 1)[1].strip()
            for line in Path("/proc/cpuinfo").read_text().splitlines()
            if "model name" in line
        ),
        platform.processor(),
    )
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute("SHOW server_version")
        postgres = cursor.fetchone()[0]
    return {
        "nproc": os.cpu_count(),
        "cpu": cpu,
        "postgresql": postgres,
        "python": platform.python_version(),
        "redis": "REDIS_URL" in env,
        # The cores are shared: a busy machine lowers both rows alike, but say how busy it was.
        "load_average": round(os.getloadavg()[0], 2),
    }


def write_doc(result: dict) -> None:
    engines, info = result["engine"], result["machine"]
    engine = engines[0]
    clients, seconds = result["clients"], result["seconds"]
    rows = "\n".join(
        f"| HTTP: `POST /api/orders`, {clients} keep-alive clients, {run['servers']} daphne "
        f"process{'es' if run['servers'] > 1 else ''} | {run['orders_per_second']} | {run['p50_ms']} ms | {run['p99_ms']} ms |"
        for run in result["http"]
    )
    engine_rows = "\n".join(
        f"| Engine: `order_place` in process, {run['threads']} thread{'s' if run['threads'] > 1 else ''} "
        f"| {run['orders_per_second']} | {run['p50_ms']} ms | {run['p99_ms']} ms |"
        for run in engines
    )
    one = result["http"][0]
    server_ms = 1000 / one["orders_per_second"] - 1000 / engine["orders_per_second"]

    def counted(outcomes):
        return ", ".join(f"{outcome}={count}" for outcome, count in sorted(outcomes.items()))

    outcomes = "; ".join(f"HTTP x{run['servers']} {counted(run['outcomes'])}" for run in result["http"])
    redis = (
        "Redis holds the cache (the throttle counters) and the channel layer"
        if info["redis"]
        else "Redis did not answer: local-memory cache and in-memory channel layer"
    )
    busy = (
        f" The cores were busy with other work during this run (load {info['load_average']} on {info['nproc']} cores),"
        " which lowers every row alike: read the ratio, and run it again on a quiet machine for absolute figures."
        if info["load_average"] > 1
        else ""
    )
    servers = ",".join(str(run["servers"]) for run in result["http"])
    section = f"""## REST API

`POST /api/orders` over HTTP, measured by `bench/api_orders.py` (this run:
`.venv/bin/python bench/api_orders.py --seconds {seconds} --clients {clients} --servers {servers} --write`).
A fresh PostgreSQL database, QTX-USD with {RESTING_PER_SIDE} resting orders per side, one funded trader per
client. {clients} client threads, each on one keep-alive connection with its own JWT, post limit orders
for {seconds} s after a {result["warmup"]} s warm-up: two thirds rest away from the middle of the book,
one third cross the spread and trade; each carries a client_order_id. The server is
`daphne quantumtrades.asgi:application` with DEBUG=0; {redis}. The engine row sends the same mix from the same number of threads to the
same database straight into `orders.services.order_place`, in one Python process, in the same run: the
difference is the cost of HTTP. The single-thread engine row is the time one order takes with no queue.

| Path | orders/s | p50 | p99 |
|---|---:|---:|---:|
{rows}
{engine_rows}

With one daphne process, each order costs about {server_ms:.1f} ms more over HTTP than in process
(1000/{one["orders_per_second"]} against 1000/{engine["orders_per_second"]} ms per order at saturation;
the load generator's own CPU shares the two cores in the HTTP rows only). What that buys, per request:
daphne and Django's ASGI handler, the middleware, JWT verification and a read of the user's row, two
throttle counters in Redis (user and orders, one round trip each), strict JSON parsing into Decimals, the input serializer,
the client_order_id lookup, and the JSON rendering. Django runs the sync views of one process on one
thread, so one daphne process serves one request at a time and the clients queue (p50 is close to
clients / throughput); more processes behind the load balancer overlap their HTTP work, while commands
on one market still take its book lock one at a time. The engine's own benchmark, with its database
ceiling, is the section "Matching engine". Outcomes counted in the window: {outcomes};
engine x{engine["threads"]} {counted(engine["outcomes"])}.

Machine: {info["nproc"]} cores ({info["cpu"]}), PostgreSQL {info["postgresql"]}, Python {info["python"]};
the load generator runs on the same cores; 1-minute load average before the run: {info["load_average"]}.{busy}
"""
    text = DOC.read_text() if DOC.exists() else "# Benchmarks\n"
    pattern = re.compile(r"^## REST API\n.*?(?=^## |\Z)", re.S | re.M)
    text = pattern.sub(lambda _: section + "\n", text) if pattern.search(text) else text.rstrip() + "\n\n" + section
    DOC.write_text(text)


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--pg", default="postgresql://postgres@127.0.0.1:5432", help="server URL, no database")
    parser.add_argument("--redis", default="redis://127.0.0.1:6379/8", help="Redis URL; unused if it does not answer")
    parser.add_argument("--seconds", type=int, default=20)
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--clients", type=int, default=16)
    parser.add_argument(
        "--servers", default="1,2", help="daphne processes per run, e.g. 1,2; clients are spread over them"
    )
    parser.add_argument("--port", type=int, default=8765)
    parser.add_argument("--write", action="store_true", help="write the figures to docs/BENCHMARKS.md")
    parser.add_argument("--keep-db", action="store_true")
    args = parser.parse_args()

    env = server_env(args)
    psql(args.pg, f"DROP DATABASE IF EXISTS {BENCH_DB} WITH (FORCE)", f"CREATE DATABASE {BENCH_DB}")
    setup_django(env)
    market, traders = build_world(args.clients)
    from django.db import connection

    info = machine(env)
    connection.close()

    http_runs = []
    for count in (int(value) for value in args.servers.split(",")):
        servers = [start_daphne(args.port + index, env) for index in range(count)]
        try:
            run = run_load(
                http_client,
                [(args.port + index % count, user.username, index + 100 * count) for index, user in enumerate(traders)],
                args.warmup,
                args.seconds,
            )
        finally:
            for server in servers:
                stop(server)
        http_runs.append({"servers": count, **run})
    engine = []
    for threads in (args.clients, 1):
        run = run_load(
            engine_client,
            [(market, user, 1000 * threads + index) for index, user in enumerate(traders[:threads])],
            args.warmup,
            args.seconds,
        )
        engine.append({"threads": threads, **run})
    result = {
        "clients": args.clients,
        "seconds": args.seconds,
        "warmup": args.warmup,
        "http": http_runs,
        "engine": engine,
        "machine": info,
    }
    print(json.dumps(result, indent=2))
    if args.write:
        write_doc(result)
    connection.close()
    if not args.keep_db:
        psql(args.pg, f"DROP DATABASE IF EXISTS {BENCH_DB} WITH (FORCE)")


if __name__ == "__main__":
    main()
