"""Order entry over /ws beside the same over REST, one server, one run.

    .venv/bin/python bench/ws_orders.py [--seconds 15] [--clients 1,16]

Builds a fresh PostgreSQL database (qt_bench_ws) with bench/api_orders.py's world: one market
(QTX-USD) with a book on both sides and one funded trader per client. Starts one
`daphne quantumtrades.asgi:application` (DEBUG=0, Redis for the cache and the channel layer,
throttles on but never biting) and, for each client count, drives it twice with the same
order mix (two thirds rest, one third trade, each with a client_order_id):

- REST: each client on one keep-alive HTTP connection, `POST /api/orders` with its JWT;
- /ws: each client on one socket, `{"type": "auth", "token"}` once, then `order.place`
  messages, one at a time, timed from sending to the `order.result` with its req_id.

Reported for both: orders/s, p50 and p99 latency, every answer that was not a result, and the
server's CPU per order (the daphne process's CPU time over the window, divided by the orders).
Prints a JSON document and the Markdown table of docs/BENCHMARKS.md. Every loop is bounded in
time; the server started here is stopped by pid; only loopback addresses are used.
"""

import argparse
import asyncio
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
    login,
    machine,
    order_mix,
    psql,
    server_env,
    setup_django,
    summary,
)
from websockets.asyncio.client import connect  # noqa: E402

BENCH_DB = "qt_bench_ws"


async def ws_load(port, usernames, *, seconds, warmup, pids, seed=0) -> dict:
    """`len(usernames)` sockets, each placing one order at a time, for `seconds` after `warmup`."""
    tokens = []
    for username in usernames:
        connection, token = await login(port, username)
        connection.close()
        tokens.append(token)
    sockets = [await connect(f"ws://127.0.0.1:{port}/ws", max_size=2**20) for _ in tokens]
    for socket, token in zip(sockets, tokens, strict=True):
        await socket.send(json.dumps({"type": "auth", "token": token}))
        while json.loads(await socket.recv())["type"] != "authenticated":
            pass
    latencies, outcomes = [], {}
    loop = asyncio.get_running_loop()
    start = loop.time() + warmup
    stop = start + seconds
    cpu = {}

    async def client(index, socket):
        rng = random.Random(seed * 1000 + index)
        sent = 0
        while (now := loop.time()) < stop:
            req_id = f"{index}-{sent}"
            order = order_mix(rng)
            order["order_type"] = order.pop("type")
            message = {
                "type": "order.place",
                "req_id": req_id,
                **order,
                "client_order_id": f"w{seed}-{req_id}-{time.time_ns()}",
            }
            await socket.send(json.dumps(message))
            while True:
                answer = json.loads(await socket.recv())
                if answer.get("req_id") == req_id:
                    break
            sent += 1
            finished = loop.time()
            if start <= now and finished <= stop:
                outcome = answer["type"] if answer["type"] == "order.result" else answer.get("code", "error")
                outcomes[outcome] = outcomes.get(outcome, 0) + 1
                if outcome == "order.result":
                    latencies.append(finished - now)

    async def meter():
        await asyncio.sleep(max(0, start - loop.time()))
        cpu["start"] = cpu_seconds(pids)
        await asyncio.sleep(max(0, stop - loop.time()))
        cpu["stop"] = cpu_seconds(pids)

    await asyncio.gather(meter(), *(client(i, s) for i, s in enumerate(sockets)))
    for socket in sockets:
        await socket.close()
    result = summary(latencies, outcomes, seconds)
    result["server_cpu_ms_per_request"] = (
        round((cpu["stop"] - cpu["start"]) * 1000 / len(latencies), 2) if latencies else None
    )
    return result


def run(args, env, traders) -> list[dict]:
    runs = []
    workdir = Path(tempfile.mkdtemp(prefix="qt-bench-ws-"))
    daphne = QuietDaphne(workdir, env)
    daphne.cwd = ROOT
    daphne.start()
    pids = [daphne.process.pid]
    try:
        for clients in (int(value) for value in args.clients.split(",")):
            names = [user.username for user in traders[:clients]]
            for door in ("REST", "/ws"):
                options = {"seconds": args.seconds, "warmup": args.warmup, "pids": pids, "seed": clients}
                if door == "REST":
                    result = asyncio.run(load(daphne.port, names, **options))
                else:
                    result = asyncio.run(ws_load(daphne.port, names, **options))
                runs.append({"door": door, "clients": clients, **result})
                print(json.dumps(runs[-1]), file=sys.stderr)
    finally:
        daphne.stop()
        shutil.rmtree(workdir, ignore_errors=True)
    return runs


# How each door is named in the table (bench/fix_orders.py adds FIX to the same table).
DOORS = {"REST": "`POST /api/orders`", "/ws": "`/ws` `order.place`", "FIX": "FIX NewOrderSingle"}


def markdown(result) -> str:
    lines = [
        "| door | clients | orders/s | p50 ms | p99 ms | server CPU ms / order | answers |",
        "|---|---:|---:|---:|---:|---:|---|",
    ]
    for run in result["runs"]:
        door = DOORS[run["door"]]
        answers = ", ".join(f"{k}: {v}" for k, v in sorted(run["outcomes"].items()))
        lines.append(
            f"| {door} | {run['clients']} | {run['per_second']} | {run['p50_ms']} | {run['p99_ms']} | "
            f"{run['server_cpu_ms_per_request']} | {answers} |"
        )
    return "\n".join(lines)


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
        from django.db import connection

        connection.close()
        runs = run(args, env, traders)
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
