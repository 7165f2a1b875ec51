"""The dead man's switch and cancel on disconnect over /ws (docs/API.md, sections 7 and 8):
`order.cancel_after`, and `"cancel_on_disconnect": true` in the auth message, through the
whole ASGI stack with a communicator, on whichever layer and database are set.

A socket's close is the communicator's disconnect, as daphne reports any close (the
client's, the server's, a lost connection) to the application; a handler that fails ends
the application with an error instead, and is covered too. The death of a process is
tests/e2e/test_cancel_on_disconnect.py."""

import asyncio
import contextlib
import time

import pytest
from channels.db import database_sync_to_async
from django.utils import timezone

from accounts.models import User
from marketdata.consumers import MarketDataConsumer
from orders import consumers, protection
from orders.models import LiveSocket, Order, OrderStatus
from orders.selectors import reconcile
from quantumtrades.core import scheduler
from tests.streams.stream_support import (  # noqa: F401  (fixtures)
    alice_fixture,
    bob_fixture,
    fast_streams_fixture,
    market_fixture,
    run,
)
from tests.streams.test_ws_orders import BUY, Trader, async_token, make_key, on_socket, place

pytestmark = [pytest.mark.timeout(60)]


async def cancel_after(ws, seconds, **extra):
    ws.count += 1
    req_id = f"dms-{ws.count}"
    await ws.send({"type": "order.cancel_after", "req_id": req_id, "seconds": seconds, **extra})
    return await ws.until(lambda m: m.get("req_id") == req_id and m["type"] in ("order.cancel_after", "error"))


@database_sync_to_async
def armed_at(user):
    return User.objects.get(pk=user.pk).cancel_orders_at


@database_sync_to_async
def statuses(*answers) -> list[str]:
    return [Order.objects.get(pk=answer["order"]["id"]).status for answer in answers]


@database_sync_to_async
def socket_of(answer):
    return Order.objects.get(pk=answer["order"]["id"]).socket_id


@pytest.fixture(autouse=True)
def no_sockets_left():
    protection._sockets.clear()
    yield
    assert protection.live_sockets_mine() == {}, "a socket was not closed"


# --- order.cancel_after ------------------------------------------------------------------------


def test_cancel_after_arms_and_disarms_the_switch(alice, market):
    async def body():
        async with Trader() as ws:
            await ws.auth(token=await async_token(alice))
            answer = await cancel_after(ws, 30)
            assert (
                set(answer) == {"type", "req_id", "armed_until", "rate_limit"}
                and answer["type"] == "order.cancel_after"
            )
            armed = await armed_at(alice)
            assert answer["armed_until"] == armed.isoformat() and armed > timezone.now()
            assert (await cancel_after(ws, 0))["armed_until"] is None
            assert await armed_at(alice) is None
            await ws.still_usable()

    run(body)


@pytest.mark.parametrize("seconds", [4, 601, -1, "30", 2.5, None, True, [30]])
def test_cancel_after_refuses_other_values_on_the_seconds_field(alice, market, seconds):
    async def body():
        async with Trader() as ws:
            await ws.auth(token=await async_token(alice))
            error = await cancel_after(ws, seconds)
            assert error["type"] == "error" and error["code"] == "INVALID" and error["field"] == "seconds", error
            assert await armed_at(alice) is None
            await ws.still_usable()

    run(body)


def test_cancel_after_refuses_unknown_fields_and_needs_a_socket_that_trades(alice, market):
    _, read_only = make_key(alice, scopes=["read"])

    async def body():
        async with Trader() as ws:
            error = await cancel_after(ws, 30)
            assert error["code"] == "NOT_AUTHENTICATED", error
            await ws.auth(api_key=read_only)
            assert (await cancel_after(ws, 30))["code"] == "PERMISSION_DENIED"
            await ws.auth(token=await async_token(alice))
            error = await cancel_after(ws, 30, symbol="QTX-USD")
            assert error["code"] == "INVALID" and error["field"] == "symbol", error
            assert await armed_at(alice) is None

    run(body)


def test_the_switch_armed_over_the_socket_fires(alice, market):
    async def body():
        async with Trader() as ws:
            await ws.auth(token=await async_token(alice))
            placed = await place(ws)
            await cancel_after(ws, 5)
            await database_sync_to_async(User.objects.filter(pk=alice.pk).update)(cancel_orders_at=timezone.now())
            await database_sync_to_async(scheduler.run_due)()
            assert await statuses(placed) == [OrderStatus.CANCELLED]
            assert (await cancel_after(ws, 0))["armed_until"] is None

    run(body)


# --- Cancel on disconnect ----------------------------------------------------------------------


def test_the_flag_is_answered_and_must_be_a_boolean(alice, market):
    async def body():
        async with Trader() as ws:
            token = await async_token(alice)
            assert (await ws.auth(token=token))["cancel_on_disconnect"] is False
            error = await ws.auth(token=token, cancel_on_disconnect="yes")
            assert error["type"] == "error" and error["code"] == "BAD_REQUEST", error
            assert (await ws.auth(token=token, cancel_on_disconnect=True))["cancel_on_disconnect"] is True
            # A later auth that does not say leaves it on (a bot re-authenticating with a
            # fresh token keeps its protection).
            assert (await ws.auth(token=token))["cancel_on_disconnect"] is True
            error = await ws.auth(token="not a token", cancel_on_disconnect=False)
            assert error["code"] == "AUTH_FAILED"  # a failed auth changes nothing
            assert (await ws.auth(token=token))["cancel_on_disconnect"] is True

    run(body)


def test_closing_the_socket_cancels_the_orders_it_placed_with_the_flag(alice, bob, market):
    async def body():
        async with Trader() as ws:
            await ws.auth(token=await async_token(alice))
            before = await place(ws)  # before the flag: not protected
            await ws.auth(token=await async_token(alice), cancel_on_disconnect=True)
            assert await database_sync_to_async(LiveSocket.objects.count)() == 0  # made at the first order
            protected = await place(ws, price="9.00")
            stop = await place(ws, side="sell", type="stop_market", stop_price="8.00", price=None)
            filled = await place(ws, side="sell", price="12.00")
            assert await socket_of(protected) == await socket_of(stop) == await socket_of(filled) is not None
            socket_id = await socket_of(protected)
            row = await database_sync_to_async(LiveSocket.objects.get)(pk=socket_id)
            assert row.user_id == alice.pk and row.process == protection.process_name()
            async with Trader() as other:
                await other.auth(token=await async_token(bob))
                assert (await place(other, side="buy", price="12.00"))["fills"]
                bobs = await place(other, price="9.50")
            await ws.auth(token=await async_token(alice), cancel_on_disconnect=False)
            after = await place(ws, price="9.10")  # the flag off: not protected
            assert await socket_of(after) is None
        assert await statuses(protected, stop) == [OrderStatus.CANCELLED] * 2
        assert await statuses(filled) == [OrderStatus.FILLED]
        assert await statuses(before, after, bobs) == [OrderStatus.OPEN] * 3
        assert not await database_sync_to_async(LiveSocket.objects.exists)()
        assert await database_sync_to_async(reconcile)() == []

    run(body)


def test_a_socket_that_authenticates_as_someone_else_cancels_both_users_orders(alice, bob, market):
    async def body():
        async with Trader() as ws:
            await ws.auth(token=await async_token(alice), cancel_on_disconnect=True)
            alices = await place(ws)
            await ws.auth(token=await async_token(bob))
            bobs = await place(ws, price="9.00")
            assert await socket_of(alices) != await socket_of(bobs)
        assert await statuses(alices, bobs) == [OrderStatus.CANCELLED] * 2
        assert not await database_sync_to_async(LiveSocket.objects.exists)()

    run(body)


def test_a_socket_without_the_flag_leaves_its_orders(alice, market):
    async def body():
        async with Trader() as ws:
            await ws.auth(token=await async_token(alice))
            placed = await place(ws)
        assert await statuses(placed) == [OrderStatus.OPEN]

    run(body)


def test_a_socket_whose_handler_failed_still_cancels_its_orders(alice, market, monkeypatch):
    async def broken_ping(self, message):
        raise RuntimeError("a bug in a handler")

    _, secret = make_key(alice)

    async def body():
        ws = Trader()
        await ws.__aenter__()
        await ws.auth(api_key=secret, cancel_on_disconnect=True)
        placed = await place(ws)
        monkeypatch.setattr(MarketDataConsumer, "on_ping", broken_ping)
        await ws.send({"type": "ping"})
        with pytest.raises(RuntimeError):
            await ws.communicator.wait(timeout=5)  # the application ended with the error
        assert await statuses(placed) == [OrderStatus.CANCELLED]

    run(body)


def test_orders_refused_over_the_socket_leave_nothing_to_cancel(alice, market):
    async def body():
        async with Trader() as ws:
            await ws.auth(token=await async_token(alice), cancel_on_disconnect=True)
            error = await ws.command("order.place", **on_socket({**BUY, "price": "10.001"}))
            assert error["type"] == "error" and error["field"] == "price"
            placed = await place(ws)
        assert await statuses(placed) == [OrderStatus.CANCELLED]

    run(body)


def test_an_application_cancelled_mid_command_cancels_the_order_that_command_places(alice, market, monkeypatch):
    """Daphne cancels an application that outlives its close; a command may still be running
    in its worker thread then. The order it places is cancelled after it, not missed."""
    place_now = consumers.order_place

    def slow_place(**arguments):
        time.sleep(0.5)
        return place_now(**arguments)

    monkeypatch.setattr(consumers, "order_place", slow_place)

    async def body():
        ws = Trader()
        await ws.__aenter__()
        await ws.auth(token=await async_token(alice), cancel_on_disconnect=True)
        await ws.send({"type": "order.place", "req_id": "slow", **on_socket(BUY)})
        await asyncio.sleep(0.2)  # in its worker thread now
        ws.communicator.future.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await ws.communicator.future
        orders = database_sync_to_async(lambda: list(Order.objects.filter(user=alice).values_list("status", flat=True)))
        for _ in range(50):
            if await orders() == [OrderStatus.CANCELLED]:
                break
            await asyncio.sleep(0.1)
        assert await orders() == [OrderStatus.CANCELLED]
        assert not await database_sync_to_async(LiveSocket.objects.exists)()

    run(body)
