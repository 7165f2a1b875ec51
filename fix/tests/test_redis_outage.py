"""A Redis outage under a live session: orders go on, and what the streams lost while Redis
was away is reported from the database once the gateway's subscription is back. PostgreSQL
and Redis only (the in-memory layer of the SQLite runs has no outage to survive)."""

import os
import tempfile
from pathlib import Path

import pytest
from django.db import connection

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
