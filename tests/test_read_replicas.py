"""Read replicas against a real streaming standby (docs/ARCHITECTURE.md, "Read replicas").

The test runs the site on a private primary and its hot standby (tests/replication.py): the
database `default` points at the primary for the test's length, and the standby is the alias
`replica_1`, as DATABASE_REPLICA_URLS would make it. With the standby's replay paused, a trade
exists on the primary only: what reads the standby cannot see it, what reads the primary can.
PostgreSQL only (on SQLite there is nothing to replicate); never skipped on PostgreSQL.
"""

import contextlib
import copy

import pytest
from django.conf import settings as django_settings
from django.db import connection, connections
from rest_framework.test import APIClient

from quantumtrades.core import process_caches, replicas
from tests.api_support import client_for
from tests.replication import PrivateCluster, wait_until
from tests.streams.stream_support import (  # noqa: F401  (fixtures)
    alice_fixture,
    bob_fixture,
    fast_streams_fixture,
    market_fixture,
)

pytestmark = [
    pytest.mark.timeout(120),
    pytest.mark.skipif(
        not django_settings.DATABASES["default"]["ENGINE"].endswith("postgresql"),
        reason="read replicas are PostgreSQL hot standbys",
    ),
]

REPLICA = "replica_1"
TRADES = "/api/markets/QTX-USD/trades"


def _point(alias: str, port: int, name: str) -> None:
    """Send `alias`'s next connection to the private cluster's server on `port`."""
    connections[alias].close()
    connections[alias].close_pool()
    connections[alias].settings_dict.update(HOST="127.0.0.1", PORT=str(port), NAME=name, USER="postgres", PASSWORD="")


def _connect_freely(wrapper) -> None:
    """Django's test case refuses connections to an alias the test did not declare, and an
    alias that did not exist when the test started cannot be declared: the standby's
    connection connects as BaseDatabaseWrapper.ensure_connection does, unpatched."""

    def ensure_connection():
        if wrapper.connection is None:
            with wrapper.wrap_database_errors:
                wrapper.connect()

    wrapper.ensure_connection = ensure_connection


@pytest.fixture
def standby(alice, bob, market):
    """The primary (as `default`) and its standby (as `replica_1`), holding alice, bob and
    QTX-USD; the machine's test database comes back at the end."""
    name = connection.settings_dict["NAME"]
    saved = {key: connection.settings_dict[key] for key in ("HOST", "PORT", "NAME", "USER", "PASSWORD")}
    connection.close()
    cluster = PrivateCluster().start(copy_of=dict(connection.settings_dict), name=name)
    try:
        _point("default", cluster.primary_port, name)
        # What settings.replica_config makes of a URL in DATABASE_REPLICA_URLS.
        replica = copy.deepcopy(connection.settings_dict)
        replica["OPTIONS"]["pool"] = {**replica["OPTIONS"]["pool"], "min_size": 1, "timeout": 2}
        django_settings.DATABASES[REPLICA] = {**replica, "TEST": {"MIRROR": "default"}}
        _point(REPLICA, cluster.standby_port, name)
        _connect_freely(connections[REPLICA])
        process_caches.forget_all()
        replicas.health.forget()
        yield cluster
    finally:
        for alias in ("default", REPLICA):
            if alias in django_settings.DATABASES:
                connections[alias].close()
                connections[alias].close_pool()
        if django_settings.DATABASES.pop(REPLICA, None) is not None:
            with contextlib.suppress(AttributeError):  # never connected in this thread
                del connections[REPLICA]
        connection.settings_dict.update(saved)
        replicas.health.forget()
        process_caches.forget_all()
        cluster.stop()


def standby_sql(sql):
    with connections[REPLICA].cursor() as cursor:
        cursor.execute(sql)
        return cursor.fetchone()[0]


def caught_up() -> bool:
    """The standby has replayed everything the primary has written so far."""
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_current_wal_lsn()")
        written = cursor.fetchone()[0]
    return standby_sql(f"SELECT pg_last_wal_replay_lsn() >= '{written}'::pg_lsn") and replicas.replica_lag(REPLICA) == 0


def order(client, side, price="10.00", quantity="1.00"):
    body = {"symbol": "QTX-USD", "side": side, "type": "limit", "price": price, "quantity": quantity}
    response = client.post("/api/orders", body, format="json")
    assert response.status_code == 201, response.content
    return response.json()["order"]


def test_public_reads_come_from_the_standby_own_writes_from_the_primary_and_a_lagging_standby_is_skipped(
    standby, alice, bob, settings
):
    settings.REPLICA_MAX_LAG_SECONDS = 60
    as_alice, as_bob, anyone = client_for(alice), client_for(bob), APIClient()
    resting = order(as_bob, "sell")
    wait_until(caught_up, what="the standby to replay bob's order")
    assert replicas.public_reads() == REPLICA and standby_sql("SELECT pg_is_in_recovery()") is True

    # The standby stops replaying: from here the trade below is on the primary only.
    standby_sql("SELECT pg_wal_replay_pause()")
    wait_until(lambda: standby_sql("SELECT pg_get_wal_replay_pause_state()") == "paused", what="replay to pause")
    taker = order(as_alice, "buy")
    assert taker["status"] == "filled"

    # Anyone's public reads are the standby's: no trade, bob's order still in the book.
    assert anyone.get(TRADES).json() == []
    book = anyone.get("/api/book/snapshot", {"symbol": "QTX-USD"}).json()
    assert book["asks"] == [["10.00000000", "1.00000000"]] and book["trades"] == []
    # The traders' own data is the primary's, and so are their public reads right after
    # their writes: alice sees her fill on the tape, bob his order gone from the book.
    assert as_alice.get(f"/api/orders/{taker['id']}").json()["status"] == "filled"
    assert as_bob.get(f"/api/orders/{resting['id']}").json()["status"] == "filled"
    [trade] = as_alice.get(TRADES).json()
    assert (trade["price"], trade["taker_side"]) == ("10.00000000", "buy")
    assert as_bob.get("/api/book/snapshot", {"symbol": "QTX-USD"}).json()["asks"] == []

    # A standby that lags past REPLICA_MAX_LAG_SECONDS is skipped: everyone reads the primary.
    settings.REPLICA_MAX_LAG_SECONDS = 0.5
    wait_until(lambda: replicas.replica_lag(REPLICA) > 0.5, what="the standby to lag")
    replicas.health.forget()  # rather than wait out HEALTH_CHECK_SECONDS
    assert replicas.public_reads() == replicas.PRIMARY
    assert [t["id"] for t in anyone.get(TRADES).json()] == [trade["id"]]

    # Caught up again, it serves the public reads again.
    standby_sql("SELECT pg_wal_replay_resume()")
    wait_until(caught_up, what="the standby to catch up")
    replicas.health.forget()
    assert replicas.public_reads() == REPLICA
    assert [t["id"] for t in anyone.get(TRADES).json()] == [trade["id"]]

    # A standby that does not answer is skipped too, at the cost of one short wait.
    connections[REPLICA].close()
    standby.stop_standby()
    replicas.health.forget()
    assert replicas.public_reads() == replicas.PRIMARY
    assert [t["id"] for t in anyone.get(TRADES).json()] == [trade["id"]]
