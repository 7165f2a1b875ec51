"""Soak: the whole venue under a modest mixed load for a long time, watched for what grows.

    .venv/bin/python bench/soak.py [--minutes 30] [--daphnes 2] [--rate 30]

Builds a fresh PostgreSQL database (qt_soak) with bench/api_orders.py's world (QTX-USD, 200
resting orders per side, funded traders) and starts `--daphnes` processes of
`daphne quantumtrades.asgi:application` (DEBUG=0, PostgreSQL, Redis for the cache and the
channel layer, throttles on but never biting). Every client below is spread over them in
turn, so a change committed through one process must reach sockets on the others. Then,
for `--minutes`:

- bots trade at `--rate` commands per second in all, half over REST (`POST`, `PATCH` and
  `DELETE /api/orders`), half over `/ws` order entry (`order.place`, `order.amend`,
  `order.cancel`): limit orders of 1 to 10 QTX around a mid that wanders (a random walk of
  a few ticks a second), about half crossing the spread; each bot re-quotes and cancels its
  own resting orders, so the book keeps its size;
- public subscribers follow every public channel of the market (book, trades, ticker,
  candles 1m, status), each checking its book stream's `prev_seq` chain, that its trades
  come in id order, its tickers and candles in time order; one private `orders` socket per
  bot checks that an order's filled quantity never goes back;
- a logged-in browser session fetches the market page and the account pages now and then;
- every `--sample-seconds`, a sample: each server process's RSS, threads and open files,
  the established connections, the database's connections, the book's open orders, the
  market row's dead versions and the oldest open transaction on the database server,
  commands per second, p50/p99 of each door's answers and of the pages, and errors.

At the end, after the streams have drained, the checks (non-zero exit when one fails):
every stream gap-free and complete (each book stream at the market's last sequence, each
trade stream holding every trade the tape holds since it subscribed, each private stream
ending on every order's state in the database), no 5xx and no transport error, `manage.py
reconcile` clean, no traceback in the servers' logs, every server process alive, and memory
flat: for each server process, the median RSS of the samples in the last fifth of the run is
within `--rss-tolerance` (5 %) of the median of the second fifth (the first fifth is warm-up:
imports, caches and pools filling).

Prints the samples and the checks as Markdown tables (docs/BENCHMARKS.md, "Soak") and writes
every sample as JSON lines to `--out`. Every loop is bounded in time; every server started
here is stopped by pid; only loopback addresses are used.
"""

import argparse
import asyncio
import gc
import json
import os
import random
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

import psutil  # noqa: E402
from api_orders import (  # noqa: E402  (the REST bench: world, server, client, measures)
    QuietDaphne,
    build_world,
    login,
    machine,
    psql,
    server_env,
    setup_django,
)
from websockets.asyncio.client import connect  # noqa: E402
from websockets.exceptions import ConnectionClosed  # noqa: E402

SOAK_DB = "qt_soak"
SYMBOL = "QTX-USD"
TICK = Decimal("0.01")
# Codes of a WebSocket error that the server, not the request, is to blame for.
SERVER_FAULTS = {"INTERNAL_ERROR", "SERVICE_UNAVAILABLE", "UNAVAILABLE", "STREAM_INTERRUPTED", "SLOW_CONSUMER"}
PAGES = ("/markets/QTX-USD/", "/portfolio/", "/accounts/sessions/", "/accounts/api-keys/", "/accounts/password/", "/")
TERMINAL = {"filled", "cancelled", "expired", "rejected"}


async def pause(stop, seconds) -> bool:
    """Sleep `seconds` or until `stop` is set; True when it was."""
    try:
        await asyncio.wait_for(stop.wait(), seconds)
    except TimeoutError:
        return False
    return True


def pct(values, q):
    if not values:
        return None
    values = sorted(values)
    return round(values[min(len(values) - 1, int(q * len(values)))] * 1000, 1)


class Tally:
    """Answers of one kind (REST, /ws, pages): latencies and outcomes, for the current sample
    window and for the whole run."""

    def __init__(self):
        self.window, self.all = [], []
        self.outcomes, self.window_outcomes = {}, {}
        self.errors = 0  # 5xx, server-fault codes, transport errors
        self.window_errors = 0
        self.first_errors = []

    def add(self, seconds, outcome, error=False, detail=""):
        if seconds is not None:
            self.window.append(seconds)
            self.all.append(seconds)
        self.outcomes[outcome] = self.outcomes.get(outcome, 0) + 1
        self.window_outcomes[outcome] = self.window_outcomes.get(outcome, 0) + 1
        if error:
            self.errors += 1
            self.window_errors += 1
            if len(self.first_errors) < 5:
                self.first_errors.append(f"{outcome} {detail}"[:300])

    def take_window(self):
        window, outcomes, errors = self.window, self.window_outcomes, self.window_errors
        self.window, self.window_outcomes, self.window_errors = [], {}, 0
        return window, outcomes, errors


# --- The market and the bots ---------------------------------------------------------------------


class Mid:
    """The price the bots quote around: a random walk of a few ticks a second, kept in a band."""

    def __init__(self, seed):
        self.rng = random.Random(seed)
        self.value = Decimal("100.00")

    async def wander(self, stop):
        while not stop.is_set():
            self.value += TICK * self.rng.randint(-4, 4)
            self.value = min(max(self.value, Decimal("90.00")), Decimal("110.00"))
            await asyncio.sleep(1.0)


class Bot:
    """One trader placing, amending and cancelling its own orders, one command at a time, on a
    fixed schedule; it keeps at most `cap` resting orders so the book keeps its size."""

    cap = 20

    def __init__(self, index, username, mid, tally, interval):
        self.index = index
        self.username = username
        self.mid = mid
        self.tally = tally
        self.interval = interval
        self.rng = random.Random(1000 + index)
        self.open = {}  # order id -> (side, price), oldest first
        self.sent = 0
        self.behind = 0.0

    def order(self):
        side = self.rng.choice(("buy", "sell"))
        sign = -1 if side == "buy" else 1
        mid = self.mid.value
        if self.rng.random() < 0.5:  # crosses: a marketable limit up to half a unit through the mid
            price = mid - sign * TICK * self.rng.randint(5, 50)
        else:  # rests: 1 to 100 ticks away from the mid
            price = mid + sign * TICK * self.rng.randint(1, 100)
        self.sent += 1
        return {
            "symbol": SYMBOL,
            "side": side,
            "price": f"{price}",
            "quantity": f"{self.rng.randint(1, 10)}",
            "client_order_id": f"soak-{self.index}-{self.sent}-{time.time_ns()}",
        }

    def requote(self, side):
        sign = -1 if side == "buy" else 1
        return f"{self.mid.value + sign * TICK * self.rng.randint(1, 100)}"

    def next_command(self):
        """("place", body) | ("amend", id, body) | ("cancel", id)"""
        r = self.rng.random()
        if not self.open or (len(self.open) < self.cap and r < 0.6):
            return ("place", self.order())
        if len(self.open) >= self.cap or r >= 0.8:
            return ("cancel", next(iter(self.open)))
        order_id = self.rng.choice(list(self.open))
        side, _ = self.open[order_id]
        body = {"price": self.requote(side)}
        if self.rng.random() < 0.3:
            body["quantity"] = f"{self.rng.randint(1, 10)}"
        return ("amend", order_id, body)

    def settle(self, command, order):
        """Keep the bot's view of its resting orders after an answer (`order` None: refused)."""
        if command[0] != "place":
            self.open.pop(command[1], None)
        if order is not None and order.get("status") in ("open", "partially_filled"):
            self.open[order["id"]] = (order["side"], order["price"])

    async def run(self, stop):
        loop = asyncio.get_running_loop()
        await self.connect()
        next_at = loop.time() + self.rng.random() * self.interval
        while not stop.is_set():
            delay = next_at - loop.time()
            if delay > 0:
                if await pause(stop, delay):
                    break
            else:
                self.behind = max(self.behind, -delay)
                next_at = loop.time()  # late: no burst to catch up
            next_at += self.interval
            command = self.next_command()
            began = loop.time()
            try:
                outcome, order, error, detail = await self.execute(command)
            except (OSError, ConnectionClosed, asyncio.IncompleteReadError, TimeoutError) as exc:
                self.tally.add(None, f"{command[0]} transport", error=True, detail=repr(exc))
                await asyncio.sleep(0.5)
                try:
                    await self.connect()
                except (OSError, ConnectionClosed, TimeoutError) as again:
                    self.tally.add(None, "reconnect", error=True, detail=repr(again))
                continue
            self.tally.add(loop.time() - began, f"{command[0]} {outcome}", error=error, detail=detail)
            self.settle(command, order)
        await self.close()


class RestBot(Bot):
    def __init__(self, index, username, port, mid, tally, interval):
        super().__init__(index, username, mid, tally, interval)
        self.port = port
        self.connection = None

    async def connect(self):
        if self.connection is not None:
            self.connection.close()
        self.connection, self.token = await login(self.port, self.username)

    async def execute(self, command):
        if command[0] == "place":
            status, body = await self.request("POST", "/api/orders", {**command[1], "type": "limit"})
        elif command[0] == "amend":
            status, body = await self.request("PATCH", f"/api/orders/{command[1]}", command[2])
        else:
            status, body = await self.request("DELETE", f"/api/orders/{command[1]}", None)
        order = None
        if status < 300 and body:
            data = json.loads(body)
            order = data.get("order", data) if isinstance(data, dict) else None
        elif status < 500:
            try:
                code = json.loads(body)["error"]["code"]
            except (ValueError, KeyError, TypeError):
                code = "?"
            return f"{status} {code}", None, False, ""
        return str(status), order, status >= 500, body[:200].decode(errors="replace")

    async def request(self, method, path, body):
        return await asyncio.wait_for(self.connection.request(method, path, body, self.token), 30)

    async def close(self):
        if self.connection is not None:
            self.connection.close()


class WsBot(Bot):
    def __init__(self, index, username, port, mid, tally, interval):
        super().__init__(index, username, mid, tally, interval)
        self.port = port
        self.socket = None

    async def connect(self):
        connection, token = await login(self.port, self.username)
        connection.close()
        if self.socket is not None:
            await self.socket.close()
        self.socket = await connect(f"ws://127.0.0.1:{self.port}/ws", max_size=2**22)
        await self.socket.send(json.dumps({"type": "auth", "token": token}))
        while json.loads(await asyncio.wait_for(self.socket.recv(), 30))["type"] != "authenticated":
            pass

    async def execute(self, command):
        req_id = f"{self.index}-{self.sent}-{time.monotonic_ns()}"
        if command[0] == "place":
            message = {"type": "order.place", "req_id": req_id, "order_type": "limit", **command[1]}
        elif command[0] == "amend":
            message = {"type": "order.amend", "req_id": req_id, "id": command[1], **command[2]}
        else:
            message = {"type": "order.cancel", "req_id": req_id, "id": command[1]}
        await self.socket.send(json.dumps(message))
        while True:
            answer = json.loads(await asyncio.wait_for(self.socket.recv(), 30))
            if answer.get("req_id") == req_id:
                break
        if answer["type"] == "order.result":
            return "result", answer["order"], False, ""
        code = answer.get("code", "?")
        return code, None, code in SERVER_FAULTS, answer.get("message", "")

    async def close(self):
        if self.socket is not None:
            await self.socket.close()


# --- The watchers --------------------------------------------------------------------------------


class PublicStream:
    """One socket on every public channel of the market, checking each channel's order."""

    def __init__(self, port):
        self.port = port
        self.last_seq = None
        self.broken = 0  # book updates whose prev_seq was not the last seq
        self.updates = 0
        self.first_trade = self.last_trade = None
        self.trades = 0
        self.trade_ids = set()
        self.trades_out_of_order = 0
        self.stats_out_of_order = 0  # tickers and candles going back in time
        self.disorder = []  # the first few, for the report
        self.last_time = {}
        self.counts = {}
        self.faults = []
        self.closed = False

    async def run(self):
        try:
            async with connect(f"ws://127.0.0.1:{self.port}/ws", max_size=2**22) as socket:
                channels = ["book", "trades", "ticker", "candles", "status"]
                await socket.send(
                    json.dumps({"type": "subscribe", "channels": channels, "symbols": [SYMBOL], "interval": "1m"})
                )
                async for raw in socket:
                    self.on_message(json.loads(raw))
        except ConnectionClosed as exc:
            self.faults.append(f"closed: {exc!r}"[:200])
        self.closed = True

    def on_message(self, m):
        kind = m.get("type")
        self.counts[kind] = self.counts.get(kind, 0) + 1
        if kind == "book_update":
            if m["prev_seq"] != self.last_seq:
                self.broken += 1
            self.last_seq = m["seq"]
            self.updates += 1
        elif kind == "book_snapshot":
            self.last_seq = m["seq"]
        elif kind == "trade":
            if self.last_trade is not None and m["id"] <= self.last_trade:
                self.trades_out_of_order += 1
                self.note(f"trade {m['id']} after {self.last_trade}")
            self.first_trade = self.first_trade or m["id"]
            self.last_trade = m["id"]
            self.trade_ids.add(m["id"])
            self.trades += 1
        elif kind in ("ticker", "candle"):
            key, stamp = (kind, m.get("time")) if kind == "ticker" else (kind, m.get("open_time"))
            if stamp is not None:
                if self.last_time.get(key) is not None and stamp < self.last_time[key]:
                    self.stats_out_of_order += 1
                    self.note(f"{kind} {stamp} after {self.last_time[key]}")
                self.last_time[key] = stamp
        elif kind == "error":
            self.faults.append(json.dumps(m)[:200])

    def note(self, text):
        if len(self.disorder) < 3:
            self.disorder.append(text)


class PrivateStream:
    """One socket on a bot's private `orders` channel: an order's filled quantity never goes
    back, and nothing follows an order's final state but the same state."""

    def __init__(self, port, username):
        self.port = port
        self.username = username
        self.orders = {}  # id -> (status, filled_quantity) as last seen
        self.out_of_order = 0
        self.disorder = []  # the first few, for the report
        self.messages = 0
        self.faults = []
        self.closed = False
        self.subscribed_at = None

    async def run(self):
        connection, token = await login(self.port, self.username)
        connection.close()
        try:
            async with connect(f"ws://127.0.0.1:{self.port}/ws", max_size=2**22) as socket:
                await socket.send(json.dumps({"type": "auth", "token": token}))
                await socket.send(json.dumps({"type": "subscribe", "channels": ["orders"], "symbols": [SYMBOL]}))
                async for raw in socket:
                    m = json.loads(raw)
                    if m.get("type") == "subscribed":
                        self.subscribed_at = time.time()
                    elif m.get("type") == "order":
                        self.on_order(m)
                    elif m.get("type") == "error":
                        self.faults.append(json.dumps(m)[:200])
        except ConnectionClosed as exc:
            self.faults.append(f"closed: {exc!r}"[:200])
        self.closed = True

    def on_order(self, m):
        self.messages += 1
        filled = Decimal(m["filled_quantity"])
        seen = self.orders.get(m["id"])
        if seen is not None and (filled < seen[1] or (seen[0] in TERMINAL and m["status"] != seen[0])):
            self.out_of_order += 1
            if len(self.disorder) < 3:
                self.disorder.append(f"order {m['id']}: {seen[0]} {seen[1]} then {m['status']} {filled}")
        self.orders[m["id"]] = (m["status"], filled)


class Browser:
    """A logged-in session fetching the pages now and then, one request at a time."""

    def __init__(self, ports, cookie, tally, every):
        self.ports = ports
        self.cookie = cookie
        self.tally = tally
        self.every = every
        self.by_path = {path: [] for path in PAGES}  # the whole run's latencies, page by page

    async def get(self, port, path):
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        try:
            writer.write(
                f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nCookie: {self.cookie}\r\nConnection: close\r\n\r\n".encode()
            )
            status_line = (await reader.readuntil(b"\r\n")).decode("latin-1")
            body = await reader.read()  # Connection: close: the body ends with the stream
            return int(status_line.split()[1]), body
        finally:
            writer.close()

    async def run(self, stop):
        loop = asyncio.get_running_loop()
        k = 0
        while not stop.is_set():
            path, port = PAGES[k % len(PAGES)], self.ports[k % len(self.ports)]
            k += 1
            began = loop.time()
            try:
                status, body = await asyncio.wait_for(self.get(port, path), 30)
                ok = status == 200
                if ok:
                    self.by_path[path].append(loop.time() - began)
                self.tally.add(loop.time() - began if ok else None, str(status), error=not ok, detail=path)
            except (OSError, asyncio.IncompleteReadError, TimeoutError) as exc:
                self.tally.add(None, "transport", error=True, detail=f"{path} {exc!r}")
            await pause(stop, self.every)


# --- Samples ---------------------------------------------------------------------------------------


def db_figures() -> dict:
    """The book's open orders, the database's connections, the dead versions of the market
    row (every command rewrites it: book_seq, last_price) and the age of the oldest open
    transaction on the whole server, in any database: while one is open, no dead version
    newer than its start can be pruned or vacuumed, and every read of the market row walks
    them all. Run in a thread: the ORM is sync."""
    from django.db import connection

    from orders.models import Order

    open_orders = Order.objects.filter(market__symbol=SYMBOL, status__in=("open", "partially_filled")).count()
    with connection.cursor() as cursor:
        cursor.execute("SELECT count(*) FROM pg_stat_activity WHERE datname = current_database()")
        connections = cursor.fetchone()[0]
        cursor.execute("SELECT n_dead_tup FROM pg_stat_user_tables WHERE relname = 'marketdata_market'")
        dead = cursor.fetchone()[0]
        cursor.execute(
            "SELECT coalesce(extract(epoch FROM max(now() - xact_start)), 0) FROM pg_stat_activity "
            "WHERE backend_xid IS NOT NULL OR backend_xmin IS NOT NULL"
        )
        oldest = round(float(cursor.fetchone()[0]))
    return {
        "open_orders": open_orders,
        "db_connections": connections,
        "market_dead_rows": dead,
        "oldest_xact_s": oldest,
    }


def server_figures(pids):
    figures = []
    for pid in pids:
        try:
            process = psutil.Process(pid)
            established = sum(1 for c in process.net_connections(kind="tcp") if c.status == psutil.CONN_ESTABLISHED)
            figures.append(
                {
                    "rss_mb": round(process.memory_info().rss / 2**20, 1),
                    "threads": process.num_threads(),
                    "fds": process.num_fds(),
                    "established": established,
                    "cpu_s": round(sum(process.cpu_times()[:2]), 1),
                }
            )
        except psutil.NoSuchProcess:
            figures.append(None)
    return figures


async def sampler(a, stop, pids, tallies, samples, started, out):
    loop = asyncio.get_running_loop()
    last = loop.time()
    cpu_before = None
    while not stop.is_set():
        await pause(stop, a.sample_seconds)
        now = loop.time()
        span = now - last
        last = now
        sample = {"t_s": round(time.monotonic() - started), "servers": server_figures(pids)}
        cpu = sum(f["cpu_s"] for f in sample["servers"] if f)
        sample["daphne_cpu_pct"] = round(100 * (cpu - cpu_before) / span) if cpu_before is not None else None
        cpu_before = cpu
        sample.update(await asyncio.to_thread(db_figures))
        commands = 0
        for name, tally in tallies.items():
            window, outcomes, errors = tally.take_window()
            sample[name] = {"p50_ms": pct(window, 0.5), "p99_ms": pct(window, 0.99), "n": sum(outcomes.values())}
            sample[name]["errors"] = errors
            if name != "pages":
                commands += sum(outcomes.values())
        sample["commands_per_s"] = round(commands / span, 1)
        sample["loadavg"] = round(os.getloadavg()[0], 2)
        samples.append(sample)
        with open(out, "a") as f:
            f.write(json.dumps(sample) + "\n")
        print(sample_row(sample), flush=True)


SAMPLE_HEADER = (
    "| t (min) | RSS MiB per daphne | threads | open files | established | DB conns | open orders | "
    "market row dead versions | oldest xact s | commands/s | REST p50 / p99 ms | /ws p50 / p99 ms | "
    "pages p50 / p99 ms | errors | daphne CPU % | load avg |\n"
    "|---:|---|---|---|---|---:|---:|---:|---:|---:|---|---|---|---:|---:|---:|"
)


def sample_row(s):
    alive = [f for f in s["servers"] if f]
    joined = lambda key: " / ".join(str(f[key]) for f in alive)  # noqa: E731
    errors = sum(s[name]["errors"] for name in ("rest", "ws", "pages"))
    return (
        f"| {s['t_s'] / 60:.1f} | {joined('rss_mb')} | {joined('threads')} | {joined('fds')} | "
        f"{joined('established')} | {s['db_connections']} | {s['open_orders']} | {s.get('market_dead_rows')} | "
        f"{s.get('oldest_xact_s')} | {s['commands_per_s']} | "
        f"{s['rest']['p50_ms']} / {s['rest']['p99_ms']} | {s['ws']['p50_ms']} / {s['ws']['p99_ms']} | "
        f"{s['pages']['p50_ms']} / {s['pages']['p99_ms']} | {errors} | {s['daphne_cpu_pct']} | {s['loadavg']} |"
    )


# --- The run ---------------------------------------------------------------------------------------


def session_cookie(user) -> str:
    """A browser's session for `user`, logged in the way Django logs anyone in."""
    from django.conf import settings
    from django.test import Client

    client = Client()
    client.force_login(user)
    return f"{settings.SESSION_COOKIE_NAME}={client.cookies[settings.SESSION_COOKIE_NAME].value}"


def final_state():
    """The market's last book sequence and the tape's trade ids (run in a thread)."""
    from marketdata.models import Market, Trade

    market = Market.objects.get(symbol=SYMBOL)
    return market.book_seq, list(Trade.objects.filter(market=market).order_by("id").values_list("id", flat=True))


def orders_of(username):
    from orders.models import Order

    rows = Order.objects.filter(user__username=username, market__symbol=SYMBOL)
    return {o.id: (o.status, o.filled_quantity, o.created_at.timestamp()) for o in rows}


async def drain(publics, privates, timeout):
    """Wait (bounded) until every public stream is at the market's last sequence and trade."""
    end = time.monotonic() + timeout
    while True:
        seq, trades = await asyncio.to_thread(final_state)
        last_trade = trades[-1] if trades else None
        behind = [p for p in publics if p.last_seq != seq or (p.first_trade and p.last_trade != last_trade)]
        if not behind or time.monotonic() > end:
            await asyncio.sleep(2.0)  # private streams: the last orders' events
            return seq, trades
        await asyncio.sleep(0.25)


async def soak(a, ports, pids, traders, cookie, out):
    started = time.monotonic()
    tallies = {"rest": Tally(), "ws": Tally(), "pages": Tally()}
    stop = asyncio.Event()
    mid = Mid(7)
    bots = []
    n = a.rest_bots + a.ws_bots
    interval = n / a.rate
    for i in range(n):
        port = ports[i % len(ports)]
        kind, tally = (RestBot, tallies["rest"]) if i < a.rest_bots else (WsBot, tallies["ws"])
        bots.append(kind(i, traders[i].username, port, mid, tally, interval))
    publics = [PublicStream(ports[i % len(ports)]) for i in range(a.subscribers)]
    # Each bot's private stream on another process than its orders go through.
    privates = [PrivateStream(ports[(i + 1) % len(ports)], bot.username) for i, bot in enumerate(bots)]
    watchers = [asyncio.create_task(w.run()) for w in (*publics, *privates)]
    for _ in range(200):  # every watcher subscribed, bounded
        if all(p.last_seq is not None for p in publics) and all(p.subscribed_at for p in privates):
            break
        await asyncio.sleep(0.1)
    browser = Browser(ports, cookie, tallies["pages"], a.page_seconds)
    samples = []
    gc.collect()
    gc.freeze()  # the world built above is never collected: no full collection walks it
    tasks = [asyncio.create_task(mid.wander(stop)), asyncio.create_task(browser.run(stop))]
    tasks += [asyncio.create_task(bot.run(stop)) for bot in bots]
    tasks.append(asyncio.create_task(sampler(a, stop, pids, tallies, samples, started, out)))
    print("\n" + SAMPLE_HEADER, flush=True)
    await pause(stop, a.minutes * 60)
    stop.set()
    results = await asyncio.gather(*tasks, return_exceptions=True)
    crashed = [repr(r) for r in results if isinstance(r, BaseException)]
    seq, trades = await drain(publics, privates, a.drain)
    for task in watchers:
        task.cancel()
    await asyncio.gather(*watchers, return_exceptions=True)
    in_db = {p.username: await asyncio.to_thread(orders_of, p.username) for p in privates}
    return {
        "tallies": tallies,
        "samples": samples,
        "publics": publics,
        "privates": privates,
        "bots": bots,
        "seq": seq,
        "trades": trades,
        "in_db": in_db,
        "crashed": crashed,
        "pages": browser.by_path,
    }


def checks(a, run, reconciled, tracebacks, alive) -> list[tuple[str, bool, str]]:
    out = []
    seq, trades = run["seq"], run["trades"]
    publics, privates = run["publics"], run["privates"]
    broken = sum(p.broken for p in publics)
    behind = sum(1 for p in publics if p.last_seq != seq)
    out.append(
        (
            "book streams gap-free and complete",
            not broken and not behind,
            f"{len(publics)} streams, {sum(p.updates for p in publics)} updates, {broken} breaks, "
            f"{behind} not at the last seq {seq}",
        )
    )
    # Every subscriber was there before the first trade: each must get every trade, once.
    missing = sum(len(set(trades) - p.trade_ids) for p in publics)
    twice = sum(p.trades - len(p.trade_ids) for p in publics)
    disorder = sum(p.trades_out_of_order for p in publics)
    out.append(
        (
            "trade streams complete and in order",
            not missing and not twice and not disorder and all(p.first_trade for p in publics),
            f"{sum(p.trades for p in publics)} trades received ({len(trades)} on the tape x {len(publics)}), "
            f"{missing} missing, {twice} twice, {disorder} after a later one; "
            f"{[d for p in publics for d in p.disorder if d.startswith('trade')][:3]}",
        )
    )
    disorder = sum(p.stats_out_of_order for p in publics)
    received = sum(p.counts.get("ticker", 0) + p.counts.get("candle", 0) for p in publics)
    out.append(
        (
            "ticker and candle streams in time order",
            not disorder and received > 0,
            f"{received} received, {disorder} going back in time; "
            f"{[d for p in publics for d in p.disorder if not d.startswith('trade')][:3]}",
        )
    )
    stale = unseen = 0
    for p in privates:
        for order_id, (status, filled, created) in run["in_db"][p.username].items():
            seen = p.orders.get(order_id)
            if seen is None:
                unseen += created > p.subscribed_at + 1
            elif seen != (status, filled):
                stale += 1
    disorder = sum(p.out_of_order for p in privates)
    out.append(
        (
            "private streams in order and ending on the database's state",
            not stale and not unseen and not disorder,
            f"{len(privates)} streams, {sum(p.messages for p in privates)} order events, {disorder} out of order, "
            f"{stale} orders whose last event differs from the database, {unseen} orders never seen; "
            f"{[d for p in privates for d in p.disorder][:3]}",
        )
    )
    faults = [f for p in (*publics, *privates) for f in p.faults]
    out.append(("no stream error or closed stream", not faults, f"{len(faults)}: {faults[:2]}"))
    tallies = run["tallies"]
    errors = sum(t.errors for t in tallies.values())
    first = [e for t in tallies.values() for e in t.first_errors][:3]
    out.append(("no 5xx, no server fault, no transport error", not errors, f"{errors}: {first}"))
    out.append(("load generator ran to the end", not run["crashed"], "; ".join(run["crashed"])[:300]))
    out.append(("manage.py reconcile clean", reconciled[0], reconciled[1]))
    out.append(("no traceback in the servers' logs", not tracebacks, "; ".join(tracebacks)[:300]))
    out.append(("every server process alive", all(alive), f"{sum(alive)} of {len(alive)}"))
    out.extend(memory_checks(a, run["samples"]))
    return out


def memory_checks(a, samples):
    """Flat memory: per server process, the median RSS of the last fifth of the samples is within
    the tolerance of the median of the second fifth (the first fifth is warm-up)."""
    k = len(samples) // 5
    if k < 1:
        return [("memory flat", False, f"only {len(samples)} samples: need 5 or more")]
    out = []
    for index in range(len(samples[0]["servers"])):
        rss = [s["servers"][index]["rss_mb"] for s in samples if s["servers"][index]]
        second, last = statistics.median(rss[k : 2 * k]), statistics.median(rss[-k:])
        growth = (last - second) / second
        out.append(
            (
                f"memory flat, daphne {index + 1}",
                growth <= a.rss_tolerance,
                f"RSS median {second:.1f} MiB (second fifth) -> {last:.1f} MiB (last fifth), {growth:+.1%}; "
                f"first {rss[0]:.1f}, max {max(rss):.1f}",
            )
        )
    return out


def summary_table(run) -> str:
    lines = ["| answers | n | p50 ms | p99 ms | outcomes |", "|---|---:|---:|---:|---|"]
    for name, tally in run["tallies"].items():
        outcomes = ", ".join(f"{k}: {v}" for k, v in sorted(tally.outcomes.items()))
        lines.append(
            f"| {name} | {sum(tally.outcomes.values())} | {pct(tally.all, 0.5)} | {pct(tally.all, 0.99)} | {outcomes} |"
        )
    for path, latencies in run["pages"].items():
        lines.append(f"| page `{path}` | {len(latencies)} | {pct(latencies, 0.5)} | {pct(latencies, 0.99)} | |")
    return "\n".join(lines)


def check_table(results) -> str:
    lines = ["| check | result | detail |", "|---|---|---|"]
    for name, ok, detail in results:
        lines.append(f"| {name} | {'pass' if ok else 'FAIL'} | {detail.replace('|', '/')} |")
    return "\n".join(lines)


def reconcile(env) -> tuple[bool, str]:
    done = subprocess.run(
        [sys.executable, "manage.py", "reconcile"], cwd=ROOT, env=env, capture_output=True, text=True, timeout=600
    )
    text = (done.stdout + done.stderr).strip().splitlines()
    return done.returncode == 0, " ".join(text[-3:])[:300]


def tracebacks_in(daphnes) -> list[str]:
    found = []
    for daphne in daphnes:
        lines = daphne.log().splitlines()
        for i, line in enumerate(lines):
            if line.startswith("Traceback"):
                tail = next((x for x in lines[i + 1 :] if x and not x.startswith(" ")), "?")
                found.append(f"{daphne.log_path.name}: {tail}"[:200])
    return found


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--pg", default="postgresql://postgres@127.0.0.1:5432", help="server URL, no database")
    parser.add_argument("--db", default=SOAK_DB, help="the database to drop and build")
    parser.add_argument("--redis", default="redis://127.0.0.1:6379/12", help="a Redis database it may flush")
    parser.add_argument("--minutes", type=float, default=30.0)
    parser.add_argument("--daphnes", type=int, default=2)
    parser.add_argument("--rate", type=float, default=30.0, help="order commands per second, all bots together")
    parser.add_argument("--rest-bots", type=int, default=3)
    parser.add_argument("--ws-bots", type=int, default=3)
    parser.add_argument("--subscribers", type=int, default=4, help="sockets on every public channel")
    parser.add_argument("--page-seconds", type=float, default=2.0, help="between two page views")
    parser.add_argument("--sample-seconds", type=float, default=0, help="0: the run's length / 60, at least 5")
    parser.add_argument("--rss-tolerance", type=float, default=0.05)
    parser.add_argument("--drain", type=float, default=30.0, help="s the streams have to catch up at the end")
    parser.add_argument("--out", default=str(ROOT / "bench" / "results" / "soak-samples.jsonl"))
    a = parser.parse_args()
    a.sample_seconds = a.sample_seconds or max(5.0, a.minutes * 60 / 60)
    bots = a.rest_bots + a.ws_bots

    info = machine()
    print("# machine:", json.dumps(info), flush=True)
    env = server_env(argparse.Namespace(pg=a.pg, redis=a.redis, db=a.db))
    env["DATABASE_URL"] = f"{a.pg}/{a.db}"
    env["CHANNEL_LAYER_PREFIX"] = f"soak.{os.getpid()}."
    env["ACCESS_TOKEN_EXPIRE_MINUTES"] = str(int(a.minutes) + 60)
    env["SESSION_IDLE_MINUTES"] = str(int(a.minutes) + 60)
    import redis

    redis.Redis.from_url(a.redis).flushdb()  # a fresh database: no cache entry of an earlier run
    psql(a.pg, f"DROP DATABASE IF EXISTS {a.db} WITH (FORCE)", f"CREATE DATABASE {a.db}")
    Path(a.out).parent.mkdir(parents=True, exist_ok=True)
    Path(a.out).unlink(missing_ok=True)
    workdir = Path(tempfile.mkdtemp(prefix="qt-soak-"))
    daphnes = []
    failed = True
    try:
        setup_django(env)
        _, traders = build_world(bots)
        cookie = session_cookie(traders[0])
        from django.db import connection

        connection.close()
        # DEBUG off serves the manifest's files, as a deployment does (the Dockerfile's step).
        subprocess.run(
            [sys.executable, "manage.py", "collectstatic", "--noinput", "-v", "0"], cwd=ROOT, env=env, check=True
        )
        for _ in range(a.daphnes):
            daphne = QuietDaphne(workdir, env)
            daphne.cwd = ROOT
            daphnes.append(daphne.start())
        ports, pids = [d.port for d in daphnes], [d.process.pid for d in daphnes]
        print(f"# {a.daphnes} daphne (pids {pids}), {bots} bots at {a.rate}/s, {a.minutes} min", flush=True)
        run = asyncio.run(soak(a, ports, pids, traders, cookie, a.out))
        alive = [d.process.poll() is None for d in daphnes]
        info["load_average_after"] = round(os.getloadavg()[0], 2)
        results = checks(a, run, reconcile(env), tracebacks_in(daphnes), alive)
        failed = not all(ok for _, ok, _ in results)
        print("\n# machine:", json.dumps(info))
        print(f"\n{SAMPLE_HEADER}")
        for sample in run["samples"]:
            print(sample_row(sample))
        print(f"\n{summary_table(run)}\n\n{check_table(results)}", flush=True)
        print(f"\nbots at most {max(b.behind for b in run['bots']) * 1000:.0f} ms behind their schedule")
    finally:
        for daphne in reversed(daphnes):
            daphne.stop()
        from django.db import connections

        connections.close_all()
        if failed:
            print(f"# server logs kept in {workdir}")
        else:
            shutil.rmtree(workdir, ignore_errors=True)
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()
