"""Fixtures and helpers for the live-stream tests (imported by test_consumers/test_streams).

Fixtures are defined as `<name>_fixture` and registered under `<name>`, so that a test
module imports them without shadowing its test arguments.

The async parts of a test run through `run(body)`: one event loop per test, under
`async_to_sync`, so database calls made with database_sync_to_async run in the test's own
thread and connection. Every wait is bounded; every communicator is disconnected; the
loop's hub is stopped at the end.
"""

import asyncio
import json
import uuid
from decimal import Decimal

import pytest
from asgiref.sync import async_to_sync
from channels.db import database_sync_to_async
from channels.testing import WebsocketCommunicator
from django.conf import settings
from django.test import Client

from accounts.models import User
from accounts.services import balance_deposit
from marketdata import streams
from marketdata.selectors import book_snapshot
from orders.services import order_place
from quantumtrades.asgi import application
from quantumtrades.core import streams as transport
from tests.factories import fee_account, qtx_usd_market

ORIGIN = (b"origin", b"http://testserver")


@pytest.fixture(name="fast_streams", autouse=True)
def fast_streams_fixture(settings):
    """Short timers, and on Redis a channel-layer prefix of this test's own."""
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
    transport.publisher.flush(2.0)


@pytest.fixture(name="market")
def market_fixture(transactional_db):
    fee_account()
    return qtx_usd_market()


def trader(username, market):
    user = User.objects.create_user(username=username, password=f"{username}-pass-2026")
    balance_deposit(user=user, asset="USD", amount=Decimal("100000"), reason="test funding")
    balance_deposit(user=user, asset="QTX", amount=Decimal("1000"), reason="test funding")
    return user


@pytest.fixture(name="alice")
def alice_fixture(market):
    return trader("alice", market)


@pytest.fixture(name="bob")
def bob_fixture(market):
    return trader("bob", market)


def session_cookie(user) -> tuple[bytes, bytes]:
    client = Client()
    client.force_login(user)
    return (b"cookie", f"{settings.SESSION_COOKIE_NAME}={client.cookies[settings.SESSION_COOKIE_NAME].value}".encode())


def run(body, timeout=30.0):
    """Run `body()` in a fresh loop, bounded, and stop that loop's hub afterwards."""

    async def main():
        try:
            await asyncio.wait_for(body(), timeout)
        finally:
            await streams.stop_hub()

    async_to_sync(main)()


place = database_sync_to_async(order_place)
snapshot_of = database_sync_to_async(lambda market, depth=500: book_snapshot(market=market, depth=depth))


async def limit(user, side, price, quantity="1", **extra):
    return await place(
        user=user, market="QTX-USD", side=side, type="limit", price=Decimal(price), quantity=Decimal(quantity), **extra
    )


class Socket:
    """A WebsocketCommunicator that keeps what it skipped over and always disconnects."""

    def __init__(self, path="/ws", headers=()):
        self.communicator = WebsocketCommunicator(application, path, headers=list(headers))
        self.seen = []

    async def __aenter__(self):
        connected, _ = await self.communicator.connect(timeout=5)
        assert connected, "the socket was refused"
        return self

    async def __aexit__(self, *exc):
        await self.communicator.disconnect(timeout=2)

    async def send(self, message):
        await self.communicator.send_json_to(message)

    async def receive(self, timeout=5.0):
        message = await self.communicator.receive_json_from(timeout)
        self.seen.append(message)
        return message

    async def receive_text(self, timeout=5.0):
        return await self.communicator.receive_from(timeout)

    async def until(self, predicate, timeout=5.0):
        """The first message matching `predicate`; the others stay in `seen`."""
        loop = asyncio.get_running_loop()
        end = loop.time() + timeout
        while True:
            left = end - loop.time()
            if left <= 0:
                raise AssertionError(f"nothing matched within {timeout}s; seen: {self.seen[-5:]}")
            try:
                message = await self.receive(timeout=left)
            except TimeoutError:
                raise AssertionError(f"nothing matched within {timeout}s; seen: {self.seen[-5:]}") from None
            if predicate(message):
                return message

    async def settle(self, quiet=0.3, timeout=5.0) -> str:
        """Every text frame until the socket is quiet for `quiet` seconds, joined."""
        frames = []
        loop = asyncio.get_running_loop()
        end = loop.time() + timeout
        while loop.time() < end and not await self.communicator.receive_nothing(quiet):
            frame = await self.receive_text()
            frames.append(frame)
            if frame.startswith("{"):
                self.seen.append(json.loads(frame))
        return "".join(frames)

    async def quiet(self, timeout=0.3) -> bool:
        return await self.communicator.receive_nothing(timeout)


def of_type(kind, **fields):
    return lambda m: m.get("type") == kind and all(m.get(k) == v for k, v in fields.items())


class Book:
    """An integrator's book: a snapshot, then updates whose prev_seq must chain."""

    def __init__(self, snapshot):
        assert snapshot["type"] == "book_snapshot"
        self.seq = snapshot["seq"]
        self.sides = {side: {Decimal(p): Decimal(q) for p, q in snapshot[side]} for side in ("bids", "asks")}

    def apply(self, update):
        assert update["type"] == "book_update"
        assert update["prev_seq"] == self.seq, f"gap: have {self.seq}, update from {update['prev_seq']}"
        for side in ("bids", "asks"):
            for price, quantity in update[side]:
                if Decimal(quantity):
                    self.sides[side][Decimal(price)] = Decimal(quantity)
                else:
                    self.sides[side].pop(Decimal(price), None)
        self.seq = update["seq"]

    def matches(self, snapshot) -> bool:
        return (
            self.seq == snapshot.seq
            and self.sides["bids"] == dict(snapshot.bids)
            and self.sides["asks"] == dict(snapshot.asks)
        )

    async def follow(self, socket, until_seq, timeout=5.0):
        """Apply updates from `socket` until the book reaches `until_seq`."""
        while self.seq < until_seq:
            self.apply(await socket.until(of_type("book_update"), timeout))
