"""A socket authenticated with an access token stops acting for its user once the token's
login ends: logged out, signed out everywhere, or a password changed (accounts.tokens).
tests/e2e/test_sign_out.py does the same against real servers."""

import asyncio

from channels.db import database_sync_to_async
from rest_framework.test import APIClient

from marketdata import consumers

from .stream_support import (  # noqa: F401  (fixtures)
    Socket,
    alice_fixture,
    fast_streams_fixture,
    limit,
    market_fixture,
    of_type,
    run,
)

BUY = {"symbol": "QTX-USD", "side": "buy", "order_type": "limit", "price": "9.00", "quantity": "1"}


@database_sync_to_async
def api_login(user) -> dict:
    body = {"username": user.username, "password": f"{user.username}-pass-2026"}
    return APIClient().post("/api/auth/login", body, format="json").json()


@database_sync_to_async
def api_logout(tokens) -> int:
    return APIClient().post("/api/auth/logout", {"refresh": tokens["refresh"]}, format="json").status_code


async def authenticate(ws, tokens):
    await ws.send({"type": "auth", "token": tokens["access"]})
    return await ws.until(lambda m: m["type"] in ("authenticated", "error"))


def test_a_token_socket_stops_acting_for_its_user_once_the_login_is_logged_out(alice, market, monkeypatch):
    monkeypatch.setattr(consumers, "TOKEN_CHECK_SECONDS", 0.1, raising=False)

    async def body():
        tokens = await api_login(alice)
        async with Socket() as ws:
            assert (await authenticate(ws, tokens))["type"] == "authenticated"
            await ws.send({"type": "subscribe", "channels": ["orders"]})
            await ws.until(of_type("subscribed"))
            await limit(alice, "buy", "9.00")
            await ws.until(of_type("balance"))

            assert await api_logout(tokens) == 204

            error = await ws.until(of_type("error"), timeout=3)
            assert error["code"] == "TOKEN_REVOKED" and "no longer authenticated" in error["message"]
            ws.seen.clear()
            await limit(alice, "buy", "9.10")
            await ws.quiet(0.5)
            assert not [m for m in ws.seen if m["type"] in ("order", "balance")]  # the private stream ended
            await ws.send({"type": "order.place", "req_id": "after", **BUY})
            assert (await ws.until(of_type("error")))["code"] == "NOT_AUTHENTICATED"

    run(body)


def test_an_order_command_is_refused_as_soon_as_the_login_has_ended(alice, market, monkeypatch):
    """Before the socket's own check comes round, the command itself finds the login ended."""
    monkeypatch.setattr(consumers, "TOKEN_CHECK_SECONDS", 60.0, raising=False)

    async def body():
        tokens = await api_login(alice)
        async with Socket() as ws:
            await authenticate(ws, tokens)
            await ws.send({"type": "order.place", "req_id": "before", **BUY})
            assert (await ws.until(lambda m: m.get("req_id") == "before"))["type"] == "order.result"

            await api_logout(tokens)
            await ws.send({"type": "order.place", "req_id": "after", **BUY})

            refused = await ws.until(lambda m: m.get("req_id") == "after")
            assert refused["type"] == "error" and refused["code"] == "TOKEN_REVOKED"

    run(body)


def test_a_token_whose_login_ended_cannot_authenticate_a_new_socket(alice, market):
    async def body():
        tokens = await api_login(alice)
        await api_logout(tokens)
        async with Socket() as ws:
            refused = await authenticate(ws, tokens)
            assert refused["code"] == "AUTH_FAILED" and "login has ended" in refused["message"]
            await ws.send({"type": "subscribe", "channels": ["orders"]})
            assert (await ws.until(of_type("error")))["code"] == "AUTH_REQUIRED"

    run(body)


def test_a_live_login_keeps_its_socket(alice, market, monkeypatch):
    monkeypatch.setattr(consumers, "TOKEN_CHECK_SECONDS", 0.05, raising=False)

    async def body():
        tokens = await api_login(alice)
        async with Socket() as ws:
            await authenticate(ws, tokens)
            await asyncio.sleep(0.3)  # several checks
            await ws.send({"type": "order.place", "req_id": "still", **BUY})
            assert (await ws.until(lambda m: m.get("req_id") == "still"))["type"] == "order.result"
            assert not [m for m in ws.seen if m["type"] == "error"]

    run(body)
