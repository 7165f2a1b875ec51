#!/usr/bin/env python3
"""Live-stream fan-out benchmark: commit-to-receipt delay at every client, gap-free share,
CPU per delivery; a bare Channels reference in the same run when one is given (--reference).

For each point (daphne processes x subscribers N x orders per second R):
- starts 1..k daphne processes (`quantumtrades.asgi:application`) on PostgreSQL and a
  redis-server of its own, on free loopback ports;
- connects N WebSocket clients over /ws (one or two client processes, round robin over the
  daphnes), each subscribed to book and trades of one market, and checks each client's
  chain of book messages (snapshot seq, then every update's prev_seq = the last seq);
- places orders through the engine (`orders.services.order_place`) at R per second from
  this process; every order changes the book (resting bids and asks, and IOC orders that
  take one resting order each, so the book stays the same size); an after-commit event
  subscriber records each book sequence's commit time;
- delay = receipt time of the book message covering a sequence - that sequence's commit
  time, for every client and sequence (a conflated update covers several);
- CPU per delivery = CPU seconds of the daphne processes / messages the clients received
  (book updates and trades), over the order window.
Every process it starts is stopped by PID; every wait is bounded.

    .venv/bin/python bench/ws_fanout.py run                        # the full grid + reference
    .venv/bin/python bench/ws_fanout.py run --ns 1000 --rates 10 --procs 1
    .venv/bin/python bench/ws_fanout.py report /tmp/ws_fanout/results.jsonl
    .venv/bin/python bench/ws_fanout.py run --ns 1000 --rates 20 --procs 1 --rest

With `--rest` the orders go over HTTP instead (`POST /api/orders`, one at a time, to the first
server process, DEBUG off), as an integrator's do, and each delay runs from the order's answer
at the driver to the book message at the client: the process that fans out also serves the
orders, as one process does under `make run`.

Needs PostgreSQL (--database-url, a database it may drop and create) and a redis-server
binary; psutil, uvloop and orjson for the clients (pip install psutil uvloop orjson).
"""

import argparse
import base64
import contextlib
import json
import os
import platform
import re
import shutil
import signal
import socket
import struct
import subprocess
import sys
import threading
import time
from array import array
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
HOST = "127.0.0.1"
REST_PASSWORD = "bench-pass-2026-long"


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind((HOST, 0))
        return probe.getsockname()[1]


def wait_port(port, timeout=40.0) -> bool:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        try:
            with socket.create_connection((HOST, port), timeout=0.5):
                return True
        except OSError:
            time.sleep(0.05)
    return False


class Proc:
    """A subprocess: stdout lines on a queue, stderr to a file, stopped by PID."""

    def __init__(self, argv, *, env=None, errfile=None, stdin=False):
        import queue

        self.errf = open(errfile, "w") if errfile else subprocess.DEVNULL  # noqa: SIM115
        self.p = subprocess.Popen(
            argv,
            cwd=ROOT,
            env=env,
            text=True,
            stdin=subprocess.PIPE if stdin else subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=self.errf,
        )
        self.q = queue.Queue()
        threading.Thread(target=self._pump, daemon=True).start()

    def _pump(self):
        for line in self.p.stdout:
            self.q.put(line.rstrip("\n"))
        self.q.put(None)

    def wait_line(self, prefix, timeout):
        import queue

        end = time.monotonic() + timeout
        while time.monotonic() < end:
            try:
                line = self.q.get(timeout=max(0.01, end - time.monotonic()))
            except queue.Empty:
                break
            if line is None:
                return None
            if line.startswith(prefix):
                return line[len(prefix) :].strip()
        return None

    def send(self, text):
        try:
            self.p.stdin.write(text)
            self.p.stdin.flush()
        except (BrokenPipeError, OSError):
            pass

    def stop(self, grace=5.0):
        if self.p.poll() is None:
            self.p.send_signal(signal.SIGTERM)
            try:
                self.p.wait(grace)
            except subprocess.TimeoutExpired:
                self.p.kill()
                self.p.wait(5)
        if self.errf is not subprocess.DEVNULL:
            self.errf.close()


# --------------------------------------------------------------------------- clients


def client_main(a):
    import asyncio
    import gc

    gc.disable()  # keep the load generator's own pauses out of the numbers
    try:
        import uvloop

        asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())
    except ImportError:
        pass
    asyncio.run(_client(a))


class LeanClient:
    """A WebSocket client as an asyncio Protocol: HTTP upgrade, unmasked server frames in,
    masked frames out; no per-message task or queue. The load generator shares the two
    cores with the server, so its own cost per message matters to every figure."""

    def __init__(self, i, state, host, port, subscribe):
        self.i = i
        self.state = state
        self.host, self.port = host, port
        self.subscribe = subscribe
        self.buffer = bytearray()
        self.upgraded = False
        self.transport = None

    # asyncio.Protocol
    def connection_made(self, transport):
        self.transport = transport
        key = base64.b64encode(os.urandom(16)).decode()
        transport.write(
            (
                f"GET /ws HTTP/1.1\r\nHost: {self.host}:{self.port}\r\nUpgrade: websocket\r\n"
                f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n"
            ).encode()
        )

    def connection_lost(self, exc):
        self.state.closed += 1

    def send_text(self, text: bytes, opcode=1):
        mask = os.urandom(4)
        n = len(text)
        header = struct.pack("!BB", 0x80 | opcode, 0x80 | n) if n < 126 else struct.pack("!BBH", 0x80 | opcode, 0xFE, n)
        masked = bytes(b ^ mask[k % 4] for k, b in enumerate(text))
        self.transport.write(header + mask + masked)

    def data_received(self, data):
        now = time.time()
        buf = self.buffer
        buf += data
        if not self.upgraded:
            end = buf.find(b"\r\n\r\n")
            if end < 0:
                return
            if not buf.startswith(b"HTTP/1.1 101"):
                self.state.errors.append(bytes(buf[:80]).decode(errors="replace"))
                self.transport.close()
                return
            del buf[: end + 4]
            self.upgraded = True
            self.send_text(self.subscribe)
        state = self.state
        while len(buf) >= 2:
            opcode, n = buf[0] & 0x0F, buf[1] & 0x7F
            start = 2
            if n == 126:
                if len(buf) < 4:
                    return
                n = struct.unpack_from("!H", buf, 2)[0]
                start = 4
            elif n == 127:
                if len(buf) < 10:
                    return
                n = struct.unpack_from("!Q", buf, 2)[0]
                start = 10
            if len(buf) < start + n:
                return
            payload = bytes(buf[start : start + n])
            del buf[: start + n]
            if opcode == 1:
                state.on_text(self.i, payload, now)
            elif opcode == 9:
                self.send_text(payload, opcode=10)


class ClientState:
    def __init__(self, n, loads):
        self.loads = loads
        self.last_seq = [None] * n
        self.broken = [False] * n
        self.resnapshots = [0] * n
        self.counts = [0] * n
        self.trades = [0] * n
        self.receipts = array("q")  # seq, one per (client, covered seq)
        self.times = array("d")  # its receipt time
        self.errors = []
        self.snapshots = 0
        self.closed = 0

    def on_text(self, i, payload, now):
        if payload.startswith(b'{"type":"book_update"'):
            m = self.loads(payload)
            prev, seq = m["prev_seq"], m["seq"]
            if self.last_seq[i] is None or prev != self.last_seq[i]:
                self.broken[i] = True
            else:
                for s in range(prev + 1, seq + 1):
                    self.receipts.append(s)
                    self.times.append(now)
            self.last_seq[i] = seq
            self.counts[i] += 1
        elif payload.startswith(b'{"type":"trade"'):
            self.trades[i] += 1
            self.counts[i] += 1
        elif payload.startswith(b'{"type":"book_snapshot"'):
            if self.last_seq[i] is not None:
                self.resnapshots[i] += 1
            else:
                self.snapshots += 1
            self.last_seq[i] = self.loads(payload)["seq"]
        elif payload.startswith(b'{"type":"error"'):
            self.errors.append(payload[:200].decode(errors="replace"))


async def _client(a):
    import asyncio

    try:
        import orjson

        loads = orjson.loads
    except ImportError:
        loads = json.loads

    loop = asyncio.get_running_loop()
    targets = [(u.split("//")[1].split(":")[0], int(u.rsplit(":", 1)[1])) for u in a.urls.split(",")]
    n = a.n
    state = ClientState(n, loads)
    subscribe = json.dumps({"type": "subscribe", "channels": ["book", "trades"], "symbols": [a.symbol]}).encode()
    sem = asyncio.Semaphore(a.conc)
    live = []

    async def open_one(i):
        host, port = targets[i % len(targets)]
        async with sem:
            for _ in range(3):
                try:
                    await loop.create_connection(lambda: LeanClient(i, state, host, port, subscribe), host, port)
                    live.append(i)
                    return
                except OSError as exc:
                    state.errors.append(f"connect {i}: {exc!r}"[:200])
                    await asyncio.sleep(0.2)

    t0 = time.time()
    await asyncio.gather(*(open_one(i) for i in range(n)))
    deadline = time.time() + 60
    while state.snapshots < len(live) and time.time() < deadline:
        await asyncio.sleep(0.05)
    if state.snapshots < len(live):
        state.errors.append(f"{len(live) - state.snapshots} clients got no snapshot within 60 s")
    print("READY", json.dumps({"connected": len(live), "connect_s": round(time.time() - t0, 2)}), flush=True)

    line = ""
    with contextlib.suppress(TimeoutError):
        line = await asyncio.wait_for(loop.run_in_executor(None, sys.stdin.readline), timeout=max(1.0, a.deadline))
    final_seq = int(line.split()[1]) if line.startswith("DRAIN") else None
    drain = float(line.split()[2]) if line.startswith("DRAIN") else 0.0
    end = time.time() + drain
    while time.time() < end and final_seq is not None and any(state.last_seq[i] != final_seq for i in live):
        await asyncio.sleep(0.05)
    with open(a.out + ".seq", "wb") as f:
        state.receipts.tofile(f)
    with open(a.out + ".t", "wb") as f:
        state.times.tofile(f)
    complete = [i for i in live if state.last_seq[i] == final_seq]
    result = {
        "connected": len(live),
        "gap_free": sum(1 for i in complete if not state.broken[i] and not state.resnapshots[i]),
        "complete": len(complete),
        "broken": sum(1 for i in live if state.broken[i]),
        "resnapshots": sum(state.resnapshots[i] for i in live),
        "messages": sum(state.counts[i] for i in live),
        "trades": sum(state.trades[i] for i in live),
        "closed": state.closed,
        "errors": state.errors[:5],
        "n_errors": len(state.errors),
    }
    print("RESULT", json.dumps(result), flush=True)
    sys.stdout.flush()
    os._exit(0)  # skip closing thousands of sockets one by one


# --------------------------------------------------------------------------- the run


class CpuSampler:
    def __init__(self, groups):
        import psutil

        self.procs = {name: [psutil.Process(pid) for pid in pids if pid] for name, pids in groups.items()}

    def read(self):
        out = {}
        for name, procs in self.procs.items():
            total = 0.0
            for proc in procs:
                try:
                    times = proc.cpu_times()
                    total += times.user + times.system
                except Exception:
                    pass
            out[name] = total
        return out


def machine() -> dict:
    import psutil

    model = platform.processor()
    with contextlib.suppress(OSError), open("/proc/cpuinfo") as cpuinfo:
        for line in cpuinfo:
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    return {
        "nproc": os.cpu_count(),
        "cpu": model,
        "ram_gb": round(psutil.virtual_memory().total / 2**30, 1),
        "python": platform.python_version(),
        "kernel": platform.release(),
    }


def pct(values, q):
    if not values:
        return None
    k = min(len(values) - 1, max(0, int(round(q * (len(values) - 1)))))
    return values[k]


class Bench:
    def __init__(self, a):
        self.a = a
        self.workdir = Path(a.workdir)
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.redis = None
        self.redis_port = free_port()
        self.prefix = f"bench.{os.getpid()}."
        self.commits = {}
        self.env = {
            **os.environ,
            "DJANGO_SETTINGS_MODULE": "quantumtrades.settings",
            "DATABASE_URL": a.database_url,
            "REDIS_URL": f"redis://{HOST}:{self.redis_port}/0",
            "CHANNEL_LAYER_PREFIX": self.prefix,
            "LOG_LEVEL": "WARNING",
            "DEBUG": "1",
            "PYTHONUNBUFFERED": "1",
        }
        if a.rest:
            # Orders over HTTP as in production: DEBUG off (no query log per statement), plain
            # HTTP on loopback, throttles on but never biting.
            self.env.update(
                DEBUG="0",
                DJANGO_SECRET_KEY="bench-" + "x" * 50,
                ALLOWED_HOSTS="127.0.0.1,localhost",
                SECURE_SSL_REDIRECT="0",
                SECURE_COOKIES="0",
                SECURE_HSTS_SECONDS="0",
                THROTTLE_USER="1000000/minute",
                THROTTLE_ORDERS="1000000/minute",
            )

    # Setup -----------------------------------------------------------------------------

    def start_redis(self):
        exe = shutil.which("redis-server")
        if not exe:
            sys.exit("redis-server not found on PATH")
        self.redis = Proc(
            [exe, "--bind", HOST, "--port", str(self.redis_port), "--save", "", "--appendonly", "no"],
            errfile=str(self.workdir / "redis.log"),
        )
        if not wait_port(self.redis_port, 10):
            sys.exit("redis-server did not start")

    def setup_database(self):
        import psycopg

        url = re.sub(r"^(postgres(?:ql)?)\+\w+://", r"\1://", self.a.database_url)
        base, _, name = url.rpartition("/")
        with psycopg.connect(f"{base}/postgres", autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
            conn.execute(f'CREATE DATABASE "{name}"')
        subprocess.run(
            [sys.executable, "manage.py", "migrate", "--noinput", "-v", "0"], cwd=ROOT, env=self.env, check=True
        )
        for key in ("DJANGO_SETTINGS_MODULE", "DATABASE_URL", "REDIS_URL", "CHANNEL_LAYER_PREFIX", "LOG_LEVEL"):
            os.environ[key] = self.env[key]
        sys.path.insert(0, str(ROOT))
        import django

        django.setup()
        from decimal import Decimal

        from accounts.models import Asset, User
        from accounts.services import balance_deposit
        from marketdata.events import BookChanged
        from quantumtrades.core import events

        Asset.objects.get_or_create(code="USD", defaults={"name": "US Dollar"})
        Asset.objects.get_or_create(code="QTX", defaults={"name": "QuantumTrades Token"})
        self.users = {}
        for name in ("maker", "taker"):
            user = User.objects.create_user(username=f"bench-{name}", password=REST_PASSWORD, max_open_orders=1_000_000)
            balance_deposit(user=user, asset="USD", amount=Decimal("1000000000"), reason="bench")
            balance_deposit(user=user, asset="QTX", amount=Decimal("100000000"), reason="bench")
            self.users[name] = user

        def record(batch):
            now = time.time()
            for event in batch:
                if isinstance(event, BookChanged):
                    self.commits[(event.market_id, event.seq)] = now

        # First in line: the commit time, before any other subscriber's work after commit.
        events._subscribers.insert(0, record)

    def new_market(self, symbol):
        from decimal import Decimal

        from marketdata.models import Market

        market = Market.objects.create(
            symbol=symbol,
            base_id="QTX",
            quote_id="USD",
            tick_size=Decimal("0.01"),
            lot_size=Decimal("0.01"),
            min_notional=Decimal("1"),
            maker_fee=Decimal("0.001"),
            taker_fee=Decimal("0.002"),
            # The pattern's takers cross the whole spread (a tenth of the price) on purpose:
            # no price band or circuit breaker to stop them.
            price_band=None,
            circuit_breaker=None,
        )
        for i in range(20):  # a book with some depth before anyone watches
            self.place(market, i)
        return market

    @staticmethod
    def pattern(i) -> tuple[str, dict]:
        """(trader, order) of the i-th order; each changes the book, the book keeps its size."""
        step = i % 4
        rnd = (i * 7919) % 100
        if step == 0 or i < 20 and step == 2:
            return "maker", {"side": "buy", "quantity": "1", "price": f"9.{rnd:02d}"}
        if step == 1 or i < 20 and step == 3:
            return "maker", {"side": "sell", "quantity": "1", "price": f"10.{rnd:02d}"}
        side = "buy" if step == 2 else "sell"
        price = "11.00" if side == "buy" else "9.00"
        return "taker", {"side": side, "quantity": "1", "price": price, "time_in_force": "IOC"}

    def place(self, market, i):
        """The i-th order of the pattern, through the engine in this process."""
        from decimal import Decimal

        from orders.services import order_place

        trader, order = self.pattern(i)
        order = {**order, "quantity": Decimal(order["quantity"]), "price": Decimal(order["price"])}
        return order_place(user=self.users[trader], market=market, **order)

    def rest_session(self, port):
        """A keep-alive HTTP connection to one server process and a JWT per trader (`--rest`)."""
        import http.client

        connection = http.client.HTTPConnection(HOST, port, timeout=10)
        tokens = {}
        for trader in self.users:
            body = json.dumps({"username": f"bench-{trader}", "password": REST_PASSWORD})
            connection.request("POST", "/api/auth/login", body, {"Content-Type": "application/json"})
            answer = connection.getresponse()
            payload = answer.read()
            if answer.status != 200:
                raise RuntimeError(f"login {trader}: {answer.status} {payload[:200]!r}")
            tokens[trader] = json.loads(payload)["access"]
        return connection, tokens

    def place_rest(self, session, symbol, i) -> float:
        """The i-th order of the pattern over REST (POST /api/orders); the time of its answer."""
        connection, tokens = session
        trader, order = self.pattern(i)
        body = json.dumps({"symbol": symbol, "type": "limit", **order})
        headers = {"Content-Type": "application/json", "Authorization": f"Bearer {tokens[trader]}"}
        connection.request("POST", "/api/orders", body, headers)
        answer = connection.getresponse()
        payload = answer.read()
        answered = time.time()
        if answer.status != 201:
            raise RuntimeError(f"order {i}: {answer.status} {payload[:200]!r}")
        return answered

    # One point -------------------------------------------------------------------------

    def daphne_argv(self, port):
        args = ["-e", f"tcp:port={port}:interface={HOST}:backlog=4096", "-v", "0", "quantumtrades.asgi:application"]
        if self.a.profile:
            # cProfile of the whole daphne process, written when it stops (SIGINT-less: atexit).
            out = Path(self.a.workdir) / f"daphne-{port}.prof"
            code = (
                "import atexit,cProfile,signal,sys;p=cProfile.Profile();"
                f"atexit.register(lambda: p.dump_stats({str(out)!r}));"
                "signal.signal(signal.SIGTERM, lambda *a: sys.exit(0));"
                "from daphne.cli import CommandLineInterface as C;"
                f"sys.argv=['daphne']+{args!r};p.enable();C.entrypoint()"
            )
            return [sys.executable, "-c", code]
        if self.a.daphne_uvloop:
            code = (
                "import asyncio,sys,uvloop;asyncio.set_event_loop_policy(uvloop.EventLoopPolicy());"
                "from daphne.cli import CommandLineInterface as C;"
                f"sys.argv=['daphne']+{args!r};C.entrypoint()"
            )
            return [sys.executable, "-c", code]
        return [sys.executable, "-m", "daphne", *args]

    def point(self, procs, n, rate, index):
        a = self.a
        symbol = f"B{index:03d}-USD"
        market = self.new_market(symbol)
        rundir = self.workdir / f"p{index:03d}-d{procs}-n{n}-r{rate}"
        rundir.mkdir(parents=True, exist_ok=True)
        started = []
        result = {
            "procs": procs,
            "n": n,
            "rate": rate,
            "seconds": a.seconds,
            "uvloop": a.daphne_uvloop,
            "driver": "rest" if a.rest else "engine",
        }
        try:
            ports = [free_port() for _ in range(procs)]
            daphnes = []
            for k, port in enumerate(ports):
                d = Proc(self.daphne_argv(port), env=self.env, errfile=str(rundir / f"daphne{k}.err"))
                started.append(d)
                daphnes.append(d)
            for port in ports:
                if not wait_port(port, 40):
                    raise RuntimeError(f"daphne on {port} did not start")
            cprocs = a.client_procs or (2 if n * rate >= a.two_clients else 1)
            result["client_procs"] = cprocs
            urls = ",".join(f"ws://{HOST}:{p}" for p in ports)
            per = [n // cprocs + (1 if k < n % cprocs else 0) for k in range(cprocs)]
            clients = []
            for k in range(cprocs):
                argv = [sys.executable, __file__, "client", "--urls", urls, "--n", str(per[k]), "--symbol", symbol]
                argv += ["--out", str(rundir / f"client{k}"), "--deadline", str(a.seconds + 120)]
                c = Proc(argv, env=self.env, errfile=str(rundir / f"client{k}.err"), stdin=True)
                started.append(c)
                clients.append(c)
            ready = []
            for c in clients:
                line = c.wait_line("READY", 120)
                if line is None:
                    raise RuntimeError("a client process did not get ready")
                ready.append(json.loads(line))
            result["connected"] = sum(r["connected"] for r in ready)
            result["connect_s"] = max(r["connect_s"] for r in ready)
            time.sleep(1.0)
            sampler = CpuSampler(
                {
                    "daphne": [d.p.pid for d in daphnes],
                    "clients": [c.p.pid for c in clients],
                    "redis": [self.redis.p.pid],
                    "driver": [os.getpid()],
                }
            )
            market.refresh_from_db()
            first_seq = market.book_seq + 1
            import psutil

            psutil.cpu_percent()  # starts the machine-wide measurement
            result["loadavg_before"] = round(os.getloadavg()[0], 2)
            cpu0, t0 = sampler.read(), time.time()
            count = int(a.seconds * rate)
            start = time.monotonic() + 0.05
            late = 0.0
            session = self.rest_session(ports[0]) if a.rest else None
            for i in range(count):
                target = start + i / rate
                delay = target - time.monotonic()
                if delay > 0:
                    time.sleep(delay)
                else:
                    late = max(late, -delay)
                if session is None:
                    self.place(market, 20 + i)
                else:
                    # Measured from the answer: every order is one command, one book sequence.
                    self.commits[(market.pk, first_seq + i)] = self.place_rest(session, symbol, 20 + i)
            orders_took = time.time() - t0
            if session is not None:
                session[0].close()
            market.refresh_from_db()
            final_seq = market.book_seq
            if session is not None and final_seq != first_seq + count - 1:
                raise RuntimeError(f"{count} orders moved the book {final_seq - first_seq + 1} sequences")
            for c in clients:
                c.send(f"DRAIN {final_seq} {a.drain}\n")
            results = []
            for c in clients:
                line = c.wait_line("RESULT", a.drain + 30)
                results.append(json.loads(line) if line else None)
            cpu1, t1 = sampler.read(), time.time()
            # What the whole machine did meanwhile (100 = both cores): others' load shows here.
            result["machine_cpu_pct"] = round(psutil.cpu_percent() * (os.cpu_count() or 1), 1)
            result["loadavg_after"] = round(os.getloadavg()[0], 2)
            if any(r is None for r in results):
                raise RuntimeError("a client process gave no result")
            result["driver_late_max_ms"] = round(late * 1000, 1)
            result["achieved_rate"] = round(count / max(1e-6, orders_took), 1)
            delays = array("d")
            for k in range(cprocs):
                seqs, times = array("q"), array("d")
                with open(rundir / f"client{k}.seq", "rb") as f:
                    seqs.frombytes(f.read())
                with open(rundir / f"client{k}.t", "rb") as f:
                    times.frombytes(f.read())
                commits = self.commits
                mid = market.pk
                for s, t in zip(seqs, times, strict=True):
                    c = commits.get((mid, s))
                    if c is not None and s >= first_seq:
                        delays.append(t - c)
            d = sorted(delays)
            ms = lambda v: round(v * 1000, 1) if v is not None else None  # noqa: E731
            result["delay_ms"] = {"p50": ms(pct(d, 0.5)), "p99": ms(pct(d, 0.99)), "max": ms(d[-1] if d else None)}
            result["samples"] = len(d)
            connected = sum(r["connected"] for r in results)
            result["gap_free"] = sum(r["gap_free"] for r in results)
            result["gap_free_share"] = round(result["gap_free"] / connected, 4) if connected else 0.0
            result["broken"] = sum(r["broken"] for r in results)
            result["resnapshots"] = sum(r["resnapshots"] for r in results)
            result["deliveries"] = sum(r["messages"] for r in results)
            result["client_errors"] = sum(r["n_errors"] for r in results)
            result["errors"] = [e for r in results for e in r["errors"]][:5]
            window = t1 - t0
            cpu = {name: cpu1[name] - cpu0[name] for name in cpu0}
            result["cpu_pct"] = {name: round(100 * v / window, 1) for name, v in cpu.items()}
            result["us_per_delivery"] = (
                round(cpu["daphne"] / result["deliveries"] * 1e6, 1) if result["deliveries"] else None
            )
            result["book_seqs"] = final_seq - first_seq + 1
            result["ok"] = True
        except Exception as exc:
            result["ok"] = False
            result["error"] = repr(exc)
        finally:
            for p in reversed(started):
                p.stop()
        return result

    def run(self):
        a = self.a
        out = Path(a.out)
        out.parent.mkdir(parents=True, exist_ok=True)
        info = {"machine": machine(), "started": time.strftime("%Y-%m-%d %H:%M:%S"), "argv": sys.argv}
        print("# machine:", json.dumps(info["machine"]), flush=True)
        results = []
        try:
            self.start_redis()
            self.setup_database()
            index = 0
            deadline = time.monotonic() + a.budget
            for procs in [int(x) for x in a.procs.split(",")]:
                for n in [int(x) for x in a.ns.split(",")]:
                    for rate in [int(x) for x in a.rates.split(",")]:
                        if time.monotonic() > deadline:
                            print("# time budget spent", flush=True)
                            break
                        index += 1
                        r = self.point(procs, n, rate, index)
                        r["kind"] = "streams"
                        results.append(r)
                        with open(out, "a") as f:
                            f.write(json.dumps({**r, "info": info}) + "\n")
                        print(fmt(r), flush=True)
        finally:
            if self.redis is not None:
                self.redis.stop()
        if a.reference:
            self.reference()
        print("\n" + HEADER)
        for r in results:
            print(fmt(r))

    def reference(self):
        a = self.a
        reference = Path(a.reference)
        if not reference.exists():
            print(f"# reference not found at {reference}", flush=True)
            return
        ref_out = Path(a.workdir) / "reference.jsonl"
        argv = [
            sys.executable,
            str(reference),
            "run",
            "--layers",
            "pubsub",
            "--modes",
            "stock",
            "--ns",
            a.ns,
            "--rates",
            a.rates,
            "--daphne-procs",
            "1",
            "--count",
            str(a.reference_count),
            "--drain",
            "10",
            "--run-deadline",
            "120",
            "--total-budget",
            str(a.reference_budget),
            "--workdir",
            str(Path(a.workdir) / "reference"),
            "--out",
            str(ref_out),
            "--redis-port",
            str(free_port()),
            "--base-port",
            str(free_port()),
        ]
        print("# reference:", " ".join(argv), flush=True)
        subprocess.run(argv, cwd=reference.parent, timeout=a.reference_budget + 600)


HEADER = (
    "| daphne procs | N | R/s | connected | p50 ms | p99 ms | max ms | gap-free | resnapshots | "
    "deliveries | us CPU/delivery | daphne CPU% | clients CPU% (procs) | redis CPU% | driver CPU% | "
    "machine CPU% | load avg |\n"
    "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|"
)


def fmt(r):
    if not r.get("ok"):
        return f"| {r['procs']} | {r['n']} | {r['rate']} | FAILED: {r.get('error', '')[:80]} |"
    c = r["cpu_pct"]
    return (
        f"| {r['procs']} | {r['n']} | {r['rate']} | {r['connected']} | {r['delay_ms']['p50']} | "
        f"{r['delay_ms']['p99']} | {r['delay_ms']['max']} | {r['gap_free_share']:.3f} | {r['resnapshots']} | "
        f"{r['deliveries']} | {r['us_per_delivery']} | {c['daphne']} | {c['clients']} ({r['client_procs']}) | "
        f"{c['redis']} | {c['driver']} | {r.get('machine_cpu_pct')} | {r.get('loadavg_before')} |"
    )


def report_main(a):
    print(HEADER)
    for name in a.files:
        with open(name) as f:
            for line in f:
                if line.strip():
                    print(fmt(json.loads(line)))


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="cmd")
    r = sub.add_parser("run")
    r.add_argument("--database-url", default="postgresql://postgres@127.0.0.1:5432/qt_ws_bench")
    r.add_argument("--workdir", default="/tmp/ws_fanout")
    r.add_argument("--out", default="/tmp/ws_fanout/results.jsonl")
    r.add_argument("--procs", default="1,2")
    r.add_argument("--ns", default="100,500,1000,2000")
    r.add_argument("--rates", default="10,20")
    r.add_argument("--seconds", type=float, default=20.0, help="order window per point")
    r.add_argument("--drain", type=float, default=3.0, help="s to wait for stragglers after the last order")
    r.add_argument("--client-procs", type=int, default=0, help="0 = two when N x R >= --two-clients")
    r.add_argument("--two-clients", type=int, default=10000)
    r.add_argument("--daphne-uvloop", action="store_true")
    r.add_argument(
        "--rest",
        action="store_true",
        help="place the orders over REST on the first process, each delay measured from the order's answer",
    )
    r.add_argument("--profile", action="store_true", help="cProfile each daphne into --workdir")
    r.add_argument("--budget", type=float, default=1500.0, help="s for all points of the streams")
    r.add_argument(
        "--reference",
        help="a bare Channels fan-out benchmark (run, --layers, --modes, --ns ...) to run after the streams",
    )
    r.add_argument("--reference-count", type=int, default=200)
    r.add_argument("--reference-budget", type=float, default=600.0)
    c = sub.add_parser("client")
    c.add_argument("--urls", required=True)
    c.add_argument("--n", type=int, required=True)
    c.add_argument("--symbol", required=True)
    c.add_argument("--out", required=True)
    c.add_argument("--deadline", type=float, default=180.0)
    c.add_argument("--conc", type=int, default=100)
    p = sub.add_parser("report")
    p.add_argument("files", nargs="+")
    a = ap.parse_args()
    if a.cmd == "client":
        for url in a.urls.split(","):
            if not url.startswith("ws://127."):
                sys.exit("loopback only")
        client_main(a)
    elif a.cmd == "report":
        report_main(a)
    elif a.cmd == "run":
        Bench(a).run()
    else:
        ap.print_help()


if __name__ == "__main__":
    main()
