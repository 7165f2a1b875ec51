"""PostgreSQL connections killed under a live daphne during a burst of orders (README, "When Redis or PostgreSQL goes away").

Only the server's own connections are touched: daphne runs with an application name of
its own (libpq's PGAPPNAME), and the killer terminates the backends with that name on
that database only; never this test process's connections, never another database's.
"""

import io
import os
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import psycopg
from django.core.management import call_command
from django.db import connection

from orders.models import Order

from .conftest import NEEDS_SERVERS, api
from .test_live_streams import token

pytestmark = [
    *NEEDS_SERVERS,
]

TRADERS = 4
ORDERS_EACH = 25


# What the daphne under test calls its PostgreSQL connections (and nothing else does).
APPLICATION_NAME = f"qt-fault-daphne-{os.getpid()}"


class Killer:
    """Terminates the daphne's PostgreSQL backends, on its database only, `times` times,
    `every` seconds apart: a few drops, as a restart or a failover makes, not a siege
    that keeps the pool from ever connecting."""

    def __init__(self, every=0.4, times=3):
        self.every = every
        self.times = times
        self.killed = 0
        self.rounds = 0
        self.stop = threading.Event()
        self.database = connection.settings_dict["NAME"]
        params = connection.get_connection_params()
        for name in ("cursor_factory", "context"):
            params.pop(name, None)
        self.params = params

    def kill_once(self, sql_connection) -> int:
        rows = sql_connection.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
            " WHERE datname = %s AND application_name = %s AND pid <> pg_backend_pid()",
            [self.database, APPLICATION_NAME],
        ).fetchall()
        return sum(1 for (done,) in rows if done)

    def run(self):
        with psycopg.connect(**self.params, autocommit=True) as sql_connection:
            while self.rounds < self.times and not self.stop.wait(self.every):
                self.killed += self.kill_once(sql_connection)
                self.rounds += 1


def place(server, user_token, n, side, price):
    return api(
        "POST",
        f"{server.url}/api/orders",
        token=user_token,
        body={
            "symbol": "QTX-USD",
            "side": side,
            "type": "limit",
            "price": price,
            "quantity": "1",
            "client_order_id": f"burst-{side}-{n}",
        },
    )


def test_killed_connections_during_a_burst_cost_503s_only_and_leave_the_books_whole(servers, alice, bob):
    server = servers.daphne(PGAPPNAME=APPLICATION_NAME)
    tokens = {"buy": token(alice), "sell": token(bob)}
    # Buys and sells around 10.00 that cross often: fills, holds and releases all happen.
    work = [(n, "buy" if n % 2 else "sell", f"{9.90 + (n * 7 % 21) / 100:.2f}") for n in range(TRADERS * ORDERS_EACH)]
    assert api("GET", f"{server.url}/api/orders", token=tokens["buy"])[0] == 200  # warm: pool and caches

    killer = Killer()
    thread = threading.Thread(target=killer.run, daemon=True)
    started = time.monotonic()
    thread.start()
    try:
        with ThreadPoolExecutor(TRADERS) as pool:
            answers = list(pool.map(lambda job: (job, place(server, tokens[job[1]], *job)), work))
    finally:
        killer.stop.set()
        thread.join(5)
    burst_seconds = time.monotonic() - started

    statuses = [status for _, (status, _) in answers]
    assert set(statuses) <= {200, 201, 503}, statuses
    for _, (status, body) in answers:
        if status == 503:
            assert body["error"]["code"] == "SERVICE_UNAVAILABLE", body
    assert killer.killed, "the killer terminated the server's connections"

    # The next request succeeds, and so does every refused order tried again: a repeated
    # client_order_id finds the original if its commit got through after all.
    assert api("GET", f"{server.url}/api/orders/open", token=tokens["buy"])[0] == 200
    for job, (status, _) in answers:
        if status == 503:
            again, body = place(server, tokens[job[1]], *job)
            assert again in (200, 201), body

    # Nothing half-written: one order per client_order_id, and the books reconcile.
    ids = list(Order.objects.values_list("client_order_id", flat=True))
    assert len(ids) == len(set(ids)) == len(work)
    out = io.StringIO()
    call_command("reconcile", stdout=out)
    assert "Reconciled" in out.getvalue()
    log = servers.started[0].log()
    assert "Internal Server Error" not in log, log[-3000:]
    print(
        f"{statuses.count(503)} of {len(work)} orders answered 503 while {killer.killed} connections were killed;"
        f" burst {burst_seconds:.1f}s"
    )
