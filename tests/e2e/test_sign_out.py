"""Signing out means it, across processes: real daphne servers on PostgreSQL and Redis, real
sockets. Logins are ended through one server (or this test process, as another server
would), and every other server refuses their tokens within seconds: REST answers 401, a
new /ws cannot authenticate, and an open /ws loses its rights (accounts.tokens)."""

import asyncio

from django.db import connections
from django.test import Client as Browser

from accounts.authentication import USER_CACHE_SECONDS
from accounts.keys import api_key_create
from accounts.tokens import api_login_start
from marketdata.consumers import KEY_CHECK_SECONDS, TOKEN_CHECK_SECONDS
from tests.streams.stream_support import of_type

from .conftest import NEEDS_SERVERS, api_async
from .test_live_streams import Client, run

pytestmark = [*NEEDS_SERVERS]

# Another process forgets what it knew of the user within USER_CACHE_SECONDS, and an open
# socket looks again every TOKEN_CHECK_SECONDS; the rest is slack for a loaded machine.
WITHIN = USER_CACHE_SECONDS + TOKEN_CHECK_SECONDS + 3
BUY = {"symbol": "QTX-USD", "side": "buy", "order_type": "limit", "price": "9.00", "quantity": "1"}


def api_login(user) -> dict:
    """A login as POST /api/auth/login makes one (the servers' password hashers differ from
    the test's fast one)."""
    refresh = api_login_start(user=user)
    return {"access": str(refresh.access_token), "refresh": str(refresh)}


async def signed_in_socket(server, tokens) -> Client:
    ws = await Client(f"{server.ws_url}/ws").__aenter__()
    await ws.send({"type": "auth", "token": tokens["access"]})
    assert (await ws.until(lambda m: m["type"] in ("authenticated", "error")))["type"] == "authenticated"
    await ws.send({"type": "subscribe", "channels": ["orders"]})
    await ws.until(of_type("subscribed"))
    return ws


async def in_thread(call, *args, **kwargs):
    """A call of this process's Django (a page, a service) from the test's event loop; the
    thread's database connection is closed after it."""

    def run_and_close():
        try:
            return call(*args, **kwargs)
        finally:
            connections.close_all()

    return await asyncio.to_thread(run_and_close)


async def until_refused(server, token, timeout=WITHIN) -> int:
    """Seconds until `server` answers 401 to `token` on GET /api/auth/me."""
    loop = asyncio.get_running_loop()
    start = loop.time()
    while True:
        status, body = await api_async("GET", f"{server.url}/api/auth/me", token=token)
        if status == 401:
            assert body["error"]["code"] == "TOKEN_INVALID", body
            return loop.time() - start
        assert status == 200, body
        assert loop.time() - start < timeout, f"still accepted after {timeout} s"
        await asyncio.sleep(0.2)


async def rights_lost(ws, timeout=WITHIN):
    """The socket says its token's login ended, then acts for nobody."""
    error = await ws.until(of_type("error"), timeout=timeout)
    assert error["code"] == "TOKEN_REVOKED", error
    await ws.send({"type": "order.place", "req_id": "after", **BUY})
    refused = await ws.until(lambda m: m.get("req_id") == "after")
    assert refused["type"] == "error" and refused["code"] == "NOT_AUTHENTICATED", refused


def test_logout_through_one_server_ends_the_token_on_another_within_seconds(servers, alice):
    here, there = servers.daphne(), servers.daphne()
    tokens, other_login = api_login(alice), api_login(alice)

    async def body():
        # The other server knows alice and her live login: it has answered for this token.
        status, _ = await api_async("GET", f"{there.url}/api/auth/me", token=tokens["access"])
        assert status == 200
        ws = await signed_in_socket(there, tokens)
        try:
            status, _ = await api_async("POST", f"{here.url}/api/auth/logout", body={"refresh": tokens["refresh"]})
            assert status == 204

            await until_refused(there, tokens["access"])
            await rights_lost(ws)
            async with Client(f"{there.ws_url}/ws") as fresh:
                await fresh.send({"type": "auth", "token": tokens["access"]})
                refused = await fresh.until(of_type("error"))
                assert refused["code"] == "AUTH_FAILED" and "login has ended" in refused["message"]
        finally:
            await ws.__aexit__(None, None, None)
        # Alice's other login goes on.
        status, _ = await api_async("GET", f"{there.url}/api/auth/me", token=other_login["access"])
        assert status == 200

    run(body)


def test_signing_out_everywhere_takes_the_rights_of_open_sockets_on_every_server(servers, alice):
    first, second = servers.daphne(), servers.daphne()
    tokens = api_login(alice)
    browser = Browser()
    browser.force_login(alice)

    async def body():
        sockets = [await signed_in_socket(server, tokens) for server in (first, second)]
        try:
            page = await in_thread(browser.post, "/accounts/sessions/", {"all": "1"})
            assert page.status_code == 302

            for ws in sockets:
                await rights_lost(ws)
            for server in (first, second):
                await until_refused(server, tokens["access"], timeout=1)  # already refused
        finally:
            for ws in sockets:
                await ws.__aexit__(None, None, None)

    run(body)


def test_a_password_change_takes_the_rights_of_token_and_key_sockets(servers, alice):
    server = servers.daphne()
    tokens = api_login(alice)
    _, key = api_key_create(user=alice, name="bot", scopes=["read", "trade"])
    browser = Browser()
    browser.force_login(alice)
    new_password = "a-brand-new-passphrase-2026"

    async def body():
        token_socket = await signed_in_socket(server, tokens)
        async with Client(f"{server.ws_url}/ws") as key_socket:
            await key_socket.send({"type": "auth", "api_key": key})
            await key_socket.until(of_type("authenticated"))
            try:
                page = await in_thread(
                    browser.post,
                    "/accounts/password/",
                    {"old_password": "alice-pass-2026", "new_password1": new_password, "new_password2": new_password},
                )
                assert page.status_code == 302

                await rights_lost(token_socket)
                revoked = await key_socket.until(of_type("error"), timeout=KEY_CHECK_SECONDS + 5)
                assert revoked["code"] == "API_KEY_INVALID"
                status, _ = await api_async(
                    "GET", f"{server.url}/api/user/balances", headers={"Authorization": f"Api-Key {key}"}
                )
                assert status == 401
            finally:
                await token_socket.__aexit__(None, None, None)

    run(body)
