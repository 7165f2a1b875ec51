"""Order entry over FIX beside the same over REST and /ws, one venue, one run.

    .venv/bin/python bench/fix_orders.py [--seconds 15] [--clients 1,16]

Builds a fresh PostgreSQL database (qt_bench_fix) with bench/api_orders.py's world: one market
(QTX-USD) with a book on both sides and one funded trader per client, each with an API key
that may trade. Starts one `daphne quantumtrades.asgi:application` and one `manage.py
fix_gateway` (DEBUG=0, Redis for the cache and the channel layer, throttles on but never
biting) and, for each client count, drives the venue three times with the same order mix
(two thirds rest, one third trade, each with a client order id):

- REST: each client on one keep-alive HTTP connection, `POST /api/orders` with its JWT;
- /ws: each client on one socket, `order.place` messages, one at a time;
- FIX: each client on one session (its own SenderCompID, logged on with its key), one
  NewOrderSingle at a time, timed from sending it to the first ExecutionReport with its
  ClOrdID (the order's acceptance: new, or rejected).

Reported for each: orders/s, p50 and p99 latency, the answers, and the CPU per order of the
process serving that door (daphne for REST and /ws, the gateway for FIX). Prints a JSON
document and a Markdown table. Every loop is bounded in time; the servers started here are
stopped by pid; only loopback addresses are used.
"""

import argparse
import asyncio
import datetime
import json
import os
import random
import shutil
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from api_orders import (  # noqa: E402  (the REST bench: world, clients, measures)
    QuietDaphne,
    build_world,
    cpu_seconds,
    load,
    machine,
    order_mix,
    psql,
    server_env,
    setup_django,
    summary,
)
from ws_orders import markdown, ws_load  # noqa: E402

from tests.e2e.servers import Process, free_port  # noqa: E402

BENCH_DB = "qt_bench_fix"
SOH = b"\x01"


class FixGateway(Process):
    name = "fix_gateway"
    cwd = ROOT

    def __init__(self, workdir, env):
        super().__init__(workdir, free_port())
        self.env = env

    def argv(self):
        return [sys.executable, "manage.py", "fix_gateway", "--host", "127.0.0.1", "--port", str(self.port)]

    def environment(self):
        return self.env


def _utc() -> str:
    now = datetime.datetime.now(datetime.UTC)
    return now.strftime("%Y%m%d-%H:%M:%S.") + f"{now.microsecond // 1000:03d}"


class Initiator:
    """A minimal FIX initiator: frames by hand, reads whole messages, nothing more."""

    def __init__(self, reader, writer, sender):
        self.reader, self.writer, self.sender, self.seq = reader, writer, sender, 1
        self.buffer = b""

    def send(self, msg_type, fields):
        header = [(35, msg_type), (49, self.sender), (56, "QTRADES"), (34, self.seq), (52, _utc())]
        self.seq += 1
        body = b"".join(f"{tag}={value}".encode() + SOH for tag, value in header + fields)
        head = b"8=FIX.4.4" + SOH + f"9={len(body)}".encode() + SOH
        self.writer.write(head + body + f"10={sum(head + body) % 256:03d}".encode() + SOH)

    async def read(self) -> dict:
        while True:
            end = self.buffer.find(SOH + b"10=")
            if end >= 0 and len(self.buffer) >= end + 8:
                raw, self.buffer = self.buffer[: end + 8], self.buffer[end + 8 :]
                return dict(pair.split(b"=", 1) for pair in raw.split(SOH) if pair)
            data = await self.reader.read(65536)
            if not data:
                raise ConnectionError("the gateway closed the session")
            self.buffer += data


async def fix_load(port, keys, *, seconds, warmup, pids, seed=0) -> dict:
    sessions = []
    for index, key in enumerate(keys):
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        session = Initiator(reader, writer, f"BENCH{seed}-{index}-{os.getpid()}")
        session.send("A", [(98, 0), (108, 30), (141, "Y"), (553, key.split(".")[0]), (554, key)])
        while (await session.read())[b"35"] != b"A":
            pass
        sessions.append(session)
    latencies, outcomes = [], {}
    loop = asyncio.get_running_loop()
    start = loop.time() + warmup
    stop = start + seconds
    cpu = {}

    async def client(index, session):
        rng = random.Random(seed * 1000 + index)
        sent = 0
        while (now := loop.time()) < stop:
            order = order_mix(rng)
            cl_ord_id = f"f{seed}-{index}-{sent}-{time.time_ns()}"
            session.send(
                "D",
                [
                    (11, cl_ord_id),
                    (55, order["symbol"]),
                    (54, 1 if order["side"] == "buy" else 2),
                    (60, _utc()),
                    (38, order["quantity"]),
                    (40, 2),
                    (44, order["price"]),
                ],
            )
            while True:
                message = await session.read()
                if message[b"35"] == b"8" and message.get(b"11") == cl_ord_id.encode():
                    break
            sent += 1
            finished = loop.time()
            if start <= now and finished <= stop:
                outcome = {b"0": "new", b"8": "rejected"}.get(message[b"150"], message[b"150"].decode())
                outcomes[outcome] = outcomes.get(outcome, 0) + 1
                if outcome == "new":
                    latencies.append(finished - now)

    async def meter():
        await asyncio.sleep(max(0, start - loop.time()))
        cpu["start"] = cpu_seconds(pids)
        await asyncio.sleep(max(0, stop - loop.time()))
        cpu["stop"] = cpu_seconds(pids)

    await asyncio.gather(meter(), *(client(i, s) for i, s in enumerate(sessions)))
    for session in sessions:
        session.send("5", [])
        session.writer.close()
    result = summary(latencies, outcomes, seconds)
    result["server_cpu_ms_per_request"] = (
        round((cpu["stop"] - cpu["start"]) * 1000 / len(latencies), 2) if latencies else None
    )
    return result


def run(args, env, traders, keys) -> list[dict]:
    runs = []
    workdir = Path(tempfile.mkdtemp(prefix="qt-bench-fix-"))
    daphne = QuietDaphne(workdir, env)
    daphne.cwd = ROOT
    gateway = FixGateway(workdir, env)
    daphne.start()
    gateway.start()
    try:
        for clients in (int(value) for value in args.clients.split(",")):
            names = [user.username for user in traders[:clients]]
            for door in ("REST", "/ws", "FIX"):
                options = {"seconds": args.seconds, "warmup": args.warmup, "seed": clients}
                if door == "REST":
                    result = asyncio.run(load(daphne.port, names, pids=[daphne.process.pid], **options))
                elif door == "/ws":
                    result = asyncio.run(ws_load(daphne.port, names, pids=[daphne.process.pid], **options))
                else:
                    result = asyncio.run(fix_load(gateway.port, keys[:clients], pids=[gateway.process.pid], **options))
                runs.append({"door": door, "clients": clients, **result})
                print(json.dumps(runs[-1]), file=sys.stderr)
    finally:
        gateway.stop()
        daphne.stop()
        shutil.rmtree(workdir, ignore_errors=True)
    return runs


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--pg", default="postgresql://postgres@127.0.0.1:5432", help="server URL, no database")
    parser.add_argument("--redis", default="redis://127.0.0.1:6379/7")
    parser.add_argument("--seconds", type=int, default=15)
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--clients", default="1,16")
    args = parser.parse_args()

    info = machine()
    env = server_env(args)
    env["DATABASE_URL"] = f"{args.pg}/{BENCH_DB}"
    psql(args.pg, f"DROP DATABASE IF EXISTS {BENCH_DB} WITH (FORCE)", f"CREATE DATABASE {BENCH_DB}")
    try:
        setup_django(env)
        _, traders = build_world(max(int(value) for value in args.clients.split(",")))
        from accounts.keys import api_key_create

        keys = [api_key_create(user=user, name="bench", scopes=["read", "trade"])[1] for user in traders]
        from django.db import connection

        connection.close()
        runs = run(args, env, traders, keys)
    finally:
        from django.db import connection

        connection.close()
        psql(args.pg, f"DROP DATABASE IF EXISTS {BENCH_DB} WITH (FORCE)")
    info["load_average_after"] = round(os.getloadavg()[0], 2)
    result = {"seconds": args.seconds, "runs": runs, "machine": info}
    print(json.dumps(result, indent=2))
    print(markdown(result))


if __name__ == "__main__":
    main()
