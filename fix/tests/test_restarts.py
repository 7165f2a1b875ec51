"""A session outlives its connection and the gateway: sequence numbers, sent messages and
missed reports come back from PostgreSQL. In a thread of the test process on both
backends, and as a real `manage.py fix_gateway` process (stopped, killed, restarted, its
database taken away) on PostgreSQL."""

import contextlib
import os
import signal
import sys
import tempfile
import time
from pathlib import Path

import psycopg
import pytest
from django.conf import settings
from django.db import connection

from fix.models import FixMessage, FixSession
from orders.models import Order
from tests.e2e.servers import Process

from .client import Client, utc_now
from .conftest import GatewayThread

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.timeout(180)]

ON_POSTGRES = connection.vendor == "postgresql" and bool(os.environ.get("REDIS_URL"))
APPLICATION_NAME = f"qt-fix-gateway-{os.getpid()}"


def rest_order(rest, **order):
    response = rest.post("/api/orders", {"symbol": "QTX-USD", "type": "limit", **order}, format="json")
    assert response.status_code == 201, response.json()
    return response.json()


def test_a_restarted_gateway_resumes_the_session_resends_and_reports_what_was_missed(market, alice, trade_key, rest):
    first = GatewayThread().start()
    try:
        client = Client(first.port, "ALICE")
        client.logon(trade_key)
        client.new_order("resting", "sell", "2", "100")
        new = client.expect("8")
    finally:
        first.stop()
    goodbye = client.expect("5")
    assert "shutting down" in goodbye[58] and client.closed()
    client.close()
    rest_order(rest, side="buy", price="100", quantity="1")  # fills alice while no gateway runs

    second = GatewayThread().start()
    try:
        again = Client(second.port, "ALICE", seq=client.seq)
        answer = again.logon(trade_key)
        missed = again.expect("8")
        again.send("2", [(7, 1), (16, 3)])
        resent = [again.read() for _ in range(3)]
        again.logout()
    finally:
        second.stop()

    assert answer[34] == "4"  # 1 Logon, 2 the new order's report, 3 Logout
    assert (missed[150], missed[11], missed[32], missed[39], missed[34]) == ("F", "resting", "1", "1", "5")
    assert [m.type for m in resent] == ["4", "8", "4"]
    assert (resent[1][34], resent[1][43], resent[1][17], resent[1][122]) == ("2", "Y", new[17], new[52])
    assert (resent[2][34], resent[2][36]) == ("3", "4")


class FixGatewayProcess(Process):
    name = "fix_gateway"

    def __init__(self, workdir, env, port=None):
        super().__init__(workdir, port)
        self.env = env

    def argv(self):
        return [sys.executable, "manage.py", "fix_gateway", "--host", "127.0.0.1", "--port", str(self.port)]

    def environment(self):
        return self.env

    def kill(self):
        process, self.process = self.process, None
        os.kill(process.pid, signal.SIGKILL)
        process.wait(timeout=10)


def gateway_env() -> dict:
    database = connection.settings_dict
    url = f"postgresql://{database['USER']}@{database['HOST'] or '127.0.0.1'}:{database['PORT'] or 5432}/{database['NAME']}"
    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "quantumtrades.settings",
        "DATABASE_URL": url,
        "CHANNEL_LAYER_PREFIX": settings.CHANNEL_LAYERS["default"]["CONFIG"]["prefix"],
        "PGAPPNAME": APPLICATION_NAME,
        "PYTHONUNBUFFERED": "1",
        "DB_POOL_MIN": "1",
        # The lost database's story waits this long for each refusal, not production's 10 s.
        "DB_POOL_TIMEOUT": "2",
    }
    env.pop("QT_FAIL_ON_SKIP", None)
    return env


@pytest.fixture
def workdir():
    path = Path(tempfile.mkdtemp(prefix="qt-fix-"))
    yield path
    for child in path.iterdir():
        child.unlink()
    path.rmdir()


# The same story as the thread's above, with a real process and a real crash; PostgreSQL
# only (the process shares the test's database and Redis).
needs_servers = pytest.mark.skipif(not ON_POSTGRES, reason="a gateway process needs PostgreSQL and Redis")


@needs_servers
def test_a_gateway_process_stopped_then_killed_mid_session_loses_no_report(market, alice, trade_key, rest, workdir):
    gateway = FixGatewayProcess(workdir, gateway_env()).start()
    try:
        client = Client(gateway.port, "ALICE")
        client.logon(trade_key)
        client.new_order("p-1", "sell", "3", "100")
        first = client.expect("8")
        gateway.stop()  # SIGTERM: every session is told
        assert "shutting down" in client.expect("5")[58] and client.closed()

        gateway = FixGatewayProcess(workdir, gateway_env(), port=gateway.port).start()
        again = Client(gateway.port, "ALICE", seq=client.seq)
        assert again.logon(trade_key)[34] == "4"
        rest_order(rest, side="buy", price="100", quantity="1")
        fill = again.expect("8")
        gateway.kill()  # SIGKILL: no goodbye, nothing flushed but what was written before sending
        assert again.closed()

        rest_order(rest, side="buy", price="100", quantity="1")  # while no gateway runs
        gateway = FixGatewayProcess(workdir, gateway_env(), port=gateway.port).start()
        answer = None
        for _ in range(40):  # the killed process's hold lapses within LEASE_SECONDS
            third = Client(gateway.port, "ALICE", seq=again.seq)
            third.logon(trade_key, expect=False)
            answer = third.read()
            if answer is not None and answer.type == "A":
                break
            assert "another gateway" in answer[58]
            third.close()
            time.sleep(0.25)
        missed = third.expect("8")
        third.send("2", [(7, 2), (16, 5)])
        resent = [third.read() for _ in range(3)]
        third.logout()
    finally:
        gateway.stop()

    assert (fill[150], fill[34], fill[14]) == ("F", "5", "1")
    assert answer[34] == "6"  # the numbers written before each send survive the kill
    assert (missed[150], missed[14], missed[151]) == ("F", "2", "1")
    assert [(m.type, m[34]) for m in resent] == [("8", "2"), ("4", "3"), ("8", "5")]
    assert resent[0][17] == first[17] and resent[2][17] == fill[17] and resent[2][43] == "Y"
    assert resent[1][36] == "5"  # the Logout and the Logon gap-filled


def connect(**options):
    """A psycopg connection of the test's own, beside Django's, to the test's server."""
    params = connection.get_connection_params()
    for name in ("cursor_factory", "context", "prepare_threshold"):
        params.pop(name, None)
    return psycopg.connect(**{**params, **options})


def maintenance():
    """A connection to the server's maintenance database: the test database itself can not
    refuse connections while one of its own is open."""
    return connect(dbname="postgres", autocommit=True)


@contextlib.contextmanager
def database_away():
    """The test database refuses the gateway process's connections, and ends those it has."""
    database = connection.settings_dict["NAME"]
    with maintenance() as admin:
        admin.execute(f'ALTER DATABASE "{database}" ALLOW_CONNECTIONS false')
        admin.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = %s AND application_name = %s",
            [database, APPLICATION_NAME],
        )
    try:
        yield
    finally:
        with maintenance() as admin:
            admin.execute(f'ALTER DATABASE "{database}" ALLOW_CONNECTIONS true')


def heartbeat_for(client, test_id: str, timeout: float):
    """Send a TestRequest; the Heartbeat that answers it (earlier heartbeats passed over)."""
    client.send("1", [(112, test_id)])
    answer = client.expect("0", timeout=timeout)
    while answer.get(112) != test_id:
        answer = client.expect("0", timeout=timeout)
    return answer


def placed_once_the_database_is_back(client, cl_ord_id: str):
    """Send the order again, with the same ClOrdID, until the database takes it: the pool
    reconnects within moments. Each refusal meanwhile says why."""
    for _ in range(30):
        client.new_order(cl_ord_id, "buy", "1", "90")
        answer = client.expect("8", timeout=30)
        if answer[150] == "0":
            break
        assert answer[58].startswith("SERVICE_UNAVAILABLE: ")
        time.sleep(1)
    return answer


@needs_servers
def test_a_lost_database_gives_refusals_and_the_session_stays_up(market, alice, trade_key, workdir):
    gateway = FixGatewayProcess(workdir, gateway_env()).start()
    client = Client(gateway.port, "ALICE")
    try:
        client.logon(trade_key)
        with database_away():
            client.send("D", [(11, "no-db"), (55, "QTX-USD"), (54, 1), (38, 1), (40, 2), (44, 90), (60, utc_now())])
            refused = client.expect("8", timeout=40)
            alive = heartbeat_for(client, "still-there", timeout=30)
        # The database is back: a refused order, sent again with the same ClOrdID, is placed once.
        accepted = placed_once_the_database_is_back(client, "with-db")
        client.logout()
    finally:
        gateway.stop()

    assert (refused[150], refused[39]) == ("8", "8") and refused[58].startswith("SERVICE_UNAVAILABLE: ")
    assert alive[112] == "still-there"
    assert (accepted[150], accepted[11]) == ("0", "with-db")
    assert FixSession.objects.get(sender_comp_id="ALICE").next_in_seq >= 4
    assert Order.objects.filter(client_order_id="with-db").count() == 1
    assert not Order.objects.filter(client_order_id="no-db").exists()


@needs_servers
def test_while_the_database_is_away_test_requests_are_answered_at_once(market, alice, trade_key, workdir):
    # Production's wait for a pooled connection: every write to the message store waits
    # this long for a database that refuses connections.
    gateway = FixGatewayProcess(workdir, {**gateway_env(), "DB_POOL_TIMEOUT": "10"}).start()
    client = Client(gateway.port, "ALICE")
    waits = []
    try:
        client.logon(trade_key)
        with database_away():
            for n in range(3):
                asked = time.monotonic()
                heartbeat_for(client, f"ping-{n}", timeout=30)
                waits.append(time.monotonic() - asked)
            # A ResendRequest needs the message store: it is refused, and the TestRequest
            # behind it does not wait for the pool either.
            asked = time.monotonic()
            client.send("2", [(7, 1), (16, 0)])
            refused = client.expect("3", timeout=30)
            refused_after = time.monotonic() - asked
            heartbeat_for(client, "after-the-resend", timeout=30)
            waits.append(time.monotonic() - asked)
        # The database is back: the session goes on, in sequence, and orders are placed.
        accepted = placed_once_the_database_is_back(client, "after-the-outage")
        client.logout()
    finally:
        gateway.stop()

    # Each answer went out within the store's wait (1 s), not the pool's ten seconds.
    assert max(waits) < 5, waits
    assert refused_after < 5, refused_after
    assert refused[58].startswith("SERVICE_UNAVAILABLE: ")
    assert accepted[150] == "0"
    assert Order.objects.filter(client_order_id="after-the-outage").count() == 1


@pytest.mark.skipif(connection.vendor != "postgresql", reason="the test holds one row locked: PostgreSQL's locks")
def test_messages_sent_while_the_store_is_held_up_are_written_after_it(market, alice, trade_key):
    gateway = GatewayThread().start()
    waits = []
    try:
        client = Client(gateway.port, "ALICE")
        client.logon(trade_key)
        session = FixSession.objects.get(sender_comp_id="ALICE")
        # Another transaction holds the session's row: every write to the store waits for it.
        with connect() as other:
            other.execute(f"SELECT 1 FROM {FixSession._meta.db_table} WHERE id = %s FOR UPDATE", [session.pk])
            for n in range(3):
                asked = time.monotonic()
                answer = heartbeat_for(client, f"held-{n}", timeout=10)
                waits.append(time.monotonic() - asked)
            last = answer.seq
            time.sleep(0.5)
            other.rollback()
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            stored = set(FixMessage.objects.filter(session=session, seq__lte=last).values_list("seq", flat=True))
            if stored == set(range(1, last + 1)):
                break
            time.sleep(0.1)
        client.logout()
    finally:
        gateway.stop()

    # The first answer waited for the store a second, not for the lock; the next ones not at all.
    assert max(waits) < 3, waits
    assert min(waits) < 0.5, waits
    # Once the lock went, what was sent meanwhile was written too: a resend finds every one.
    assert stored == set(range(1, last + 1))
