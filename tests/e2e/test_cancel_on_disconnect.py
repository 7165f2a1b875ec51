"""Cancel on disconnect and the dead man's switch across real server processes: two daphnes
on PostgreSQL and Redis, as docker compose runs them, a real WebSocket client, and a process
killed with SIGKILL (nothing of it runs any more: no close, no clean-up). The other process
must cancel what the dead one can no longer: within CANCEL_ON_DISCONNECT_SECONDS (10 s) of
the death for a socket's orders, within a second of its time for a switch.
Every wait is bounded; every process is stopped by PID."""

import asyncio
import contextlib
import os
import signal
import time
from datetime import datetime

from channels.db import database_sync_to_async
from django.utils import timezone

from orders.models import LiveSocket, Order, OrderStatus
from orders.selectors import reconcile
from tests.streams.stream_support import of_type

from .conftest import NEEDS_SERVERS, api_async
from .test_live_streams import Client, order, run, token

pytestmark = [*NEEDS_SERVERS]

DEADLINE_SECONDS = 10.0


def kill(server) -> float:
    """SIGKILL the server's process; the monotonic time it was dead."""
    os.kill(server.process.pid, signal.SIGKILL)
    server.process.wait(10)
    server.process = None
    return time.monotonic()


@database_sync_to_async
def statuses(ids) -> set[str]:
    return set(Order.objects.filter(pk__in=ids).values_list("status", flat=True))


async def cancelled_within(ids, seconds) -> float:
    """Poll the database until every order of `ids` is cancelled; the seconds it took."""
    start = time.monotonic()
    while await statuses(ids) != {OrderStatus.CANCELLED}:
        if time.monotonic() - start > seconds:
            raise AssertionError(f"not cancelled within {seconds}s: {await statuses(ids)}")
        await asyncio.sleep(0.1)
    return time.monotonic() - start


async def logged(server, text, seconds=5.0) -> bool:
    """Whether the server logs `text` within `seconds` (it logs after its commit)."""
    start = time.monotonic()
    while text not in server.log():
        if time.monotonic() - start > seconds:
            return False
        await asyncio.sleep(0.05)
    return True


async def place_on(ws, req_id, **fields):
    body = {"symbol": "QTX-USD", "side": "buy", "order_type": "limit", "quantity": "1", **fields}
    await ws.send({"type": "order.place", "req_id": req_id, **body})
    answer = await ws.until(lambda m: m.get("req_id") == req_id)
    assert answer["type"] == "order.result", answer
    return answer["order"]["id"]


async def close_quietly(client):
    with contextlib.suppress(Exception):
        await client.ws.close()


def test_the_orders_of_a_socket_whose_process_was_killed_are_cancelled_by_the_other(servers, alice, bob):
    first, second = servers.daphne(), servers.daphne()
    alice_token, bob_token = token(alice), token(bob)

    async def body():
        ws = await Client(f"{first.ws_url}/ws").__aenter__()
        try:
            await ws.send({"type": "auth", "token": alice_token, "cancel_on_disconnect": True})
            assert (await ws.until(of_type("authenticated")))["cancel_on_disconnect"] is True
            protected = [
                await place_on(ws, "p1", price="9.00"),
                await place_on(ws, "p2", price="9.10"),
                await place_on(ws, "p3", side="sell", order_type="stop_market", stop_price="8.00"),
            ]
            row = await database_sync_to_async(LiveSocket.objects.get)()
            assert row.process.endswith(f":{first.process.pid}")
            # Orders that were not placed through the socket stay, wherever they came from.
            unprotected = [
                (await order(first, alice_token, "buy", "9.20"))["id"],
                (await order(second, bob_token, "sell", "11.00"))["id"],
            ]
            dead_at = kill(first)
            took = await cancelled_within(protected, DEADLINE_SECONDS + 5)
            print(f"\ncancelled {time.monotonic() - dead_at:.1f}s after the death ({took:.1f}s of polling)")
            assert time.monotonic() - dead_at <= DEADLINE_SECONDS + 0.5
        finally:
            await close_quietly(ws)
        assert await statuses(unprotected) == {OrderStatus.OPEN}
        assert not await database_sync_to_async(LiveSocket.objects.exists)()
        assert await logged(second, f"socket {row.pk} went silent; 3 orders cancelled")
        assert await database_sync_to_async(reconcile)() == []

    run(body)


def test_a_socket_the_client_closes_has_its_orders_cancelled_at_once(servers, alice):
    server = servers.daphne()
    alice_token = token(alice)

    async def body():
        async with Client(f"{server.ws_url}/ws") as ws:
            await ws.send({"type": "auth", "token": alice_token, "cancel_on_disconnect": True})
            await ws.until(of_type("authenticated"))
            placed = [await place_on(ws, "p1", price="9.00"), await place_on(ws, "p2", price="9.10")]
        took = await cancelled_within(placed, 5)
        assert took < 2, took  # the close, not a sweeper
        assert not await database_sync_to_async(LiveSocket.objects.exists)()

    run(body)


def test_a_dead_mans_switch_armed_on_a_killed_process_fires_on_the_other(servers, alice):
    first, second = servers.daphne(), servers.daphne()
    alice_token = token(alice)

    async def body():
        placed = [(await order(first, alice_token, "buy", price))["id"] for price in ("9.00", "9.10")]
        status, armed = await api_async(
            "POST", f"{first.url}/api/orders/cancel-after", token=alice_token, body={"seconds": 5}
        )
        assert status == 200, armed
        armed_until = datetime.fromisoformat(armed["armed_until"])
        kill(first)
        await cancelled_within(placed, 10)
        cancelled_at = max(
            await database_sync_to_async(
                lambda: list(Order.objects.filter(pk__in=placed).values_list("updated_at", flat=True))
            )()
        )
        late = (cancelled_at - armed_until).total_seconds()
        print(f"\nthe switch fired {late:.2f}s after its time")
        assert 0 <= late <= 1.0, late
        assert await logged(second, f"dead man's switch of user {alice.pk} fired: 2 orders cancelled")
        assert timezone.now() >= armed_until

    run(body)
