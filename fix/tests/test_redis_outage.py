"""A Redis outage under a live session: orders go on, and what the streams lost while Redis
was away is reported from the database once the gateway's subscription is back. PostgreSQL
and Redis only (the in-memory layer of the SQLite runs has no outage to survive)."""

import datetime
import os
import tempfile
import time
from decimal import Decimal
from pathlib import Path

import pytest
from django.db import connection

from fix import gateway as fix_gateway
from orders.services import order_place
from tests.e2e.servers import RedisServer

from .client import Client
from .conftest import GatewayThread

pytestmark = [
    pytest.mark.django_db(transaction=True),
    pytest.mark.timeout(120),
    pytest.mark.skipif(
        not (connection.vendor == "postgresql" and os.environ.get("REDIS_URL")),
        reason="a Redis outage needs the Redis channel layer (PostgreSQL and Redis runs)",
    ),
]


@pytest.fixture
def private_redis(settings):
    """A redis-server of this test's own carries the channel layer: the test stops it."""
    workdir = Path(tempfile.mkdtemp(prefix="qt-fix-redis-"))
    server = RedisServer(workdir).start()
    layer = dict(settings.CHANNEL_LAYERS["default"])
    layer["CONFIG"] = {**layer["CONFIG"], "hosts": [server.url]}
    settings.CHANNEL_LAYERS = {"default": layer}
    yield server
    server.stop()
    for child in workdir.iterdir():
        child.unlink()
    workdir.rmdir()


def test_a_fill_made_while_redis_was_away_is_reported_once_it_is_back(private_redis, market, alice, trade_key, rest):
    gateway = GatewayThread().start()
    try:
        client = Client(gateway.port, "ALICE")
        client.logon(trade_key)
        client.new_order("during-outage", "sell", "2", "100")
        assert client.expect("8")[150] == "0"

        private_redis.stop()
        response = rest.post(
            "/api/orders",
            {"symbol": "QTX-USD", "side": "buy", "type": "limit", "price": "100", "quantity": "1"},
            format="json",
        )
        assert response.status_code == 201  # orders go on without Redis
        client.send("1", [(112, "during")])
        assert client.expect("0")[112] == "during"  # so does the session
        private_redis.start()

        fill = client.expect("8", timeout=30)
        client.new_order("after", "buy", "1", "90")
        after = client.expect("8")
        assert client.quiet(1.0) == []  # the fill once, not again from the stream
        client.logout()
    finally:
        gateway.stop()

    assert (fill[150], fill[11], fill[32], fill[14], fill[151]) == ("F", "during-outage", "1", "1", "1")
    assert (after[150], after[11]) == ("0", "after")


def test_a_drop_copy_that_logs_on_before_the_gateway_is_subscribed_hears_what_it_missed(
    private_redis, market, alice, read_key, settings, monkeypatch
):
    """The hub heartbeats its sockets whether or not its subscription stands: they are no
    sign that the session heard every event, so once the subscription stands, the catch-up
    reads from the logon, however long the session waited for it."""
    settings.STREAMS = {**settings.STREAMS, "READY_TIMEOUT": 0.5, "HEARTBEAT_INTERVAL": 0.1}
    # A margin of a second rather than ten keeps the wait below short.
    monkeypatch.setattr(fix_gateway, "CATCH_UP_MARGIN", datetime.timedelta(seconds=1))
    private_redis.stop()
    gateway = GatewayThread().start()  # without a subscription, after READY_TIMEOUT
    try:
        copy = Client(gateway.port, "ALICE-COPY")
        copy.logon(read_key)
        placed = order_place(user=alice, market="QTX-USD", side="buy", quantity=Decimal("1"), price=Decimal("90"))
        time.sleep(2.0)  # heartbeats meanwhile, for longer than the catch-up's margin
        private_redis.start()

        new = copy.expect("8", timeout=10)
        assert copy.quiet(1.0) == []  # once, though the publisher's resync says it again
        copy.logout()
    finally:
        gateway.stop()

    assert (new[150], new[39], new[37]) == ("0", "0", str(placed.order.pk))
