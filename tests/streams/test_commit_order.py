"""Two server processes publish their own commands' events, so a hub may receive a later
command's batch before an earlier one's. Sockets still get a market's trades in commit
order, and an order's or a balance's last private message is its last committed state."""

from decimal import Decimal

import pytest
from channels.db import database_sync_to_async

from accounts.models import Balance
from marketdata.models import Trade
from quantumtrades.core import streams as transport
from quantumtrades.core.streams.messages import Versions

from .stream_support import (  # noqa: F401  (fixtures)
    ORIGIN,
    Socket,
    alice_fixture,
    bob_fixture,
    fast_streams_fixture,
    limit,
    market_fixture,
    of_type,
    run,
    session_cookie,
)

pytestmark = [pytest.mark.timeout(60)]


@pytest.fixture
def held_back(monkeypatch):
    """While `held_back["on"]`, the commands' event batches stop short of the channel layer
    and wait in `held_back["items"]`: the batches of a process that is slow to publish."""
    state = {"on": False, "items": [], "put": transport.publisher.put}

    def put(item):
        if state["on"] and item[0] == "events":
            state["items"].append(item)
        else:
            state["put"](item)

    monkeypatch.setattr(transport.publisher, "put", put)
    return state


def test_batches_that_arrive_out_of_commit_order_reach_sockets_in_commit_order(alice, bob, market, held_back):
    cookie = session_cookie(alice)

    async def body():
        async with Socket(headers=[ORIGIN, cookie]) as ws:
            await ws.send({"type": "subscribe", "channels": ["trades"], "symbols": ["QTX-USD"]})
            await ws.until(of_type("subscribed"))
            await ws.send({"type": "subscribe", "channels": ["orders"]})
            await ws.until(of_type("subscribed"))
            resting = (await limit(alice, "sell", "10.00", "2")).order
            await ws.until(of_type("order", id=resting.pk, status="open"))

            held_back["on"] = True
            await limit(bob, "buy", "10.00", "1")  # the first trade: alice's order partially filled
            await limit(bob, "buy", "10.00", "1")  # the second: alice's order filled
            held_back["on"] = False
            first, second = held_back["items"]
            # The second command's process publishes first, the first command's after it.
            held_back["put"](second)
            held_back["put"](first)
            # Published after both, so everything of theirs is on the socket before it.
            after = (await limit(alice, "buy", "9.00", "1")).order
            await ws.until(of_type("order", id=after.pk))
            await ws.until(of_type("balance", asset="USD"))  # the last event of its batch
            trades = [m["id"] for m in ws.seen if m["type"] == "trade"]
            while len(trades) < 2:
                trades.append((await ws.until(of_type("trade")))["id"])

            committed = await database_sync_to_async(
                lambda: list(Trade.objects.filter(market=market).order_by("pk").values_list("pk", flat=True))
            )()
            assert trades == committed, "trades in commit (id) order"
            statuses = [m["status"] for m in ws.seen if m["type"] == "order" and m["id"] == resting.pk]
            # The partial fill, older than the fill already sent, is dropped: the last word is the last state.
            assert statuses == ["open", "filled"]
            balances = {m["asset"]: m for m in ws.seen if m["type"] == "balance"}
            for row in await database_sync_to_async(lambda: list(Balance.objects.filter(user=alice)))():
                assert Decimal(balances[row.asset_id]["available"]) == row.available
                assert Decimal(balances[row.asset_id]["held"]) == row.held
            assert len([m for m in ws.seen if m["type"] == "fill"]) == 2, "fills are news: each is sent"

    run(body)


def test_a_done_order_keeps_stale_states_out_then_is_forgotten():
    versions = Versions()
    assert versions.admit("order:1", 5, final=False)
    assert versions.admit("order:1", 7, final=True)
    assert not versions.admit("order:1", 6, final=False), "a state older than the final one"
    assert "order:1" not in versions.live
    for n in range(versions.DONE_KEPT):
        versions.admit(f"order:{n + 2}", 1, final=True)
    assert "order:1" not in versions.done and len(versions.done) == versions.DONE_KEPT
