"""The gateway in a thread of the test process, and a trading cast with API keys.

The gateway runs on its own event loop and worker threads, over the test's database
(`transaction=True`: its threads have connections of their own) and channel layer, so
a REST order placed by the test reaches its sessions as it would in production.
"""

import asyncio
import threading
import uuid
from decimal import Decimal

import pytest
from rest_framework.test import APIClient

from accounts.keys import api_key_create
from accounts.models import User
from accounts.services import balance_deposit
from fix.gateway import Gateway
from tests.factories import fee_account, qtx_usd_market

from .client import Client

pytestmark = pytest.mark.timeout(120)


@pytest.fixture(autouse=True)
def fast_streams(settings):
    """Short stream timers, and on Redis a channel-layer prefix of this test's own."""
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
    settings.STREAMS = {
        **getattr(settings, "STREAMS", {}),
        "BOOK_INTERVAL": 0.0,
        "PAGE_INTERVAL": 0.0,
        "STATS_INTERVAL": 0.05,
        "GAP_TIMEOUT": 0.3,
        "AUDIT_INTERVAL": 0.5,
        "PING_INTERVAL": 0.2,
        "PING_TIMEOUT": 2.0,
        "READY_TIMEOUT": 5.0,
    }
    if "Redis" in settings.CHANNEL_LAYERS["default"]["BACKEND"]:
        layer = dict(settings.CHANNEL_LAYERS["default"])
        layer["CONFIG"] = {**layer["CONFIG"], "prefix": f"qt.test.{uuid.uuid4().hex[:8]}."}
        settings.CHANNEL_LAYERS = {"default": layer}
    yield
    from quantumtrades.core import streams

    streams.publisher.flush(2.0)


@pytest.fixture
def market(transactional_db):
    fee_account()
    return qtx_usd_market()


def trader(username):
    user = User.objects.create_user(username=username, password=f"{username}-pass-2026")
    balance_deposit(user=user, asset="USD", amount=Decimal("100000"), reason="test funding")
    balance_deposit(user=user, asset="QTX", amount=Decimal("1000"), reason="test funding")
    return user


@pytest.fixture
def alice(market):
    return trader("alice")


@pytest.fixture
def bob(market):
    return trader("bob")


class GatewayThread:
    """`Gateway` on an event loop in a thread of its own; stop() says Logout to every session."""

    def __init__(self, port=0):
        self.loop = asyncio.new_event_loop()
        self.gateway = Gateway(host="127.0.0.1", port=port, threads=4)
        self.thread = threading.Thread(target=self._run, daemon=True, name="fix-gateway")
        self.started = threading.Event()
        self.error = None

    def _run(self):
        asyncio.set_event_loop(self.loop)
        try:
            self.loop.run_until_complete(self.gateway.start())
        except Exception as exc:
            self.error = exc
            return
        finally:
            self.started.set()
        try:
            self.loop.run_forever()
        finally:
            from marketdata.streams import stop_hub

            self.loop.run_until_complete(stop_hub())
            pending = [task for task in asyncio.all_tasks(self.loop) if not task.done()]
            for task in pending:
                task.cancel()
            self.loop.run_until_complete(asyncio.gather(*pending, return_exceptions=True))
            self.loop.close()

    def start(self):
        self.thread.start()
        assert self.started.wait(15), "the gateway did not start"
        if self.error:
            raise self.error
        return self

    @property
    def port(self) -> int:
        return self.gateway.port

    def call(self, function, timeout=10):
        """Run `function()` on the gateway's loop and return what it returned."""

        async def run():
            return function()

        return asyncio.run_coroutine_threadsafe(run(), self.loop).result(timeout)

    def stop(self):
        if not self.thread.is_alive():
            return
        asyncio.run_coroutine_threadsafe(self.gateway.stop(), self.loop).result(15)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(15)


@pytest.fixture
def gateway(market):
    running = GatewayThread().start()
    yield running
    running.stop()


@pytest.fixture
def trade_key(alice):
    return api_key_create(user=alice, name="fix", scopes=["read", "trade"])[1]


@pytest.fixture
def read_key(alice):
    return api_key_create(user=alice, name="drop copy", scopes=["read"])[1]


@pytest.fixture
def connect(gateway):
    """connect(sender="ALICE") -> a Client; every one is closed at the end."""
    clients = []

    def make(sender="ALICE", **options):
        client = Client(gateway.port, sender, **options)
        clients.append(client)
        return client

    yield make
    for client in clients:
        client.close()


@pytest.fixture
def rest(bob):
    """Bob at the REST API (signed in as a session user)."""
    client = APIClient()
    client.force_authenticate(bob)
    return client
