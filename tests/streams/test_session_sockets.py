"""A socket signed in by a web session stops acting for its user once the session is signed
out, from this browser or from the account's Sessions page."""

import asyncio

from channels.db import database_sync_to_async

from accounts import security
from marketdata import consumers

from .stream_support import (  # noqa: F401  (fixtures)
    ORIGIN,
    Socket,
    bob_fixture,
    fast_streams_fixture,
    limit,
    market_fixture,
    of_type,
    run,
    session_cookie,
)

end_sessions = database_sync_to_async(lambda user: security.sessions_end_others(user=user))


def test_an_integrator_socket_signed_in_by_a_session_stops_when_the_session_is_signed_out(bob, market, monkeypatch):
    monkeypatch.setattr(consumers, "SESSION_CHECK_SECONDS", 0.1)
    cookie = session_cookie(bob)

    async def body():
        async with Socket(headers=[ORIGIN, cookie]) as ws:
            await ws.send({"type": "subscribe", "channels": ["orders"]})
            await ws.until(of_type("subscribed"))
            await limit(bob, "buy", "9.00")
            await ws.until(of_type("balance"))

            await end_sessions(bob)

            assert (await ws.until(of_type("error")))["code"] == "SESSION_ENDED"
            ws.seen.clear()
            await limit(bob, "buy", "9.10")
            await ws.quiet(0.5)
            assert not [m for m in ws.seen if m["type"] in ("order", "balance")]
            await ws.send({"type": "order.cancel_all", "req_id": "after"})
            assert (await ws.until(of_type("error")))["code"] == "NOT_AUTHENTICATED"

    run(body)


def test_a_page_socket_closes_when_its_session_is_signed_out(bob, market, monkeypatch):
    monkeypatch.setattr(consumers, "SESSION_CHECK_SECONDS", 0.1)
    cookie = session_cookie(bob)

    async def body():
        async with Socket("/ws/live/me/", headers=[ORIGIN, cookie]) as page:
            await page.settle()
            await end_sessions(bob)
            closed = None
            for _ in range(50):
                output = await page.communicator.receive_output(timeout=5)
                if output["type"] == "websocket.close":
                    closed = output
                    break
            assert closed is not None and closed["code"] == 4001

    run(body)


def test_a_live_session_keeps_its_socket(bob, market, monkeypatch):
    monkeypatch.setattr(consumers, "SESSION_CHECK_SECONDS", 0.05)
    cookie = session_cookie(bob)

    async def body():
        async with Socket(headers=[ORIGIN, cookie]) as ws:
            await asyncio.sleep(0.3)  # several checks
            await ws.send({"type": "subscribe", "channels": ["orders"]})
            await ws.until(of_type("subscribed"))
            assert not [m for m in ws.seen if m["type"] == "error"]

    run(body)
