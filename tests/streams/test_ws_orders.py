"""Order entry over /ws (docs/API.md, "Order entry"): every command, every refusal, and the socket
still answering after each; the same validation, engine, idempotency, codes and throttles
as REST. Through the whole ASGI stack (Origin check, auth, routing) with a communicator,
on whichever layer and database are set."""

import asyncio
import time

import pytest
from channels.db import database_sync_to_async
from rest_framework.test import APIClient

from accounts.keys import api_key_create, api_key_revoke
from accounts.models import Balance
from accounts.tokens import api_login_start
from marketdata.models import Market
from marketdata.services import market_halt
from orders.models import Order
from orders.selectors import reconcile
from tests.streams.stream_support import (  # noqa: F401  (fixtures)
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

ORDER_FIELDS = {
    "id", "client_order_id", "symbol", "side", "type", "time_in_force", "post_only", "stp", "source", "price", "quantity",
    "filled_quantity", "remaining_quantity", "average_price", "stop_price", "status", "triggered_at", "created_at",
    "updated_at", "display_quantity", "expire_at", "trailing_delta", "trailing_percent", "limit_offset", "list_id", "leg",
}  # fmt: skip
BUY = {"symbol": "QTX-USD", "side": "buy", "type": "limit", "price": "10.00", "quantity": "1.00"}


def token(user) -> str:
    return str(api_login_start(user=user).access_token)


async_token = database_sync_to_async(token)


class Trader(Socket):
    """A /ws socket that sends order commands and reads their answers."""

    def __init__(self, path="/ws", headers=(), client=("127.0.0.1", 50000)):
        super().__init__(path, headers)
        # The peer's address, as daphne would put it in the scope (before the app starts).
        self.communicator.scope["client"] = client
        self.count = 0

    async def auth(self, **credentials):
        await self.send({"type": "auth", **credentials})
        return await self.until(lambda m: m["type"] in ("authenticated", "error"))

    async def command(self, kind, **fields):
        self.count += 1
        req_id = fields.pop("req_id", f"r{self.count}")
        await self.send({"type": kind, "req_id": req_id, **fields})
        return await self.answer(req_id)

    async def answer(self, req_id):
        return await self.until(lambda m: m.get("req_id") == req_id and m["type"] in ("order.result", "error"))

    async def refused(self, kind, code, field=None, **fields):
        """Sends a command that must be refused with `code`; the socket then still answers."""
        error = await self.command(kind, **fields)
        assert error["type"] == "error", error
        assert set(error) >= {"type", "req_id", "code", "message", "field"}, error
        assert error["code"] == code, error
        assert error["message"], error
        if field is not None:
            assert error["field"] == field, error
        await self.still_usable()
        return error

    async def still_usable(self):
        await self.send({"type": "ping", "id": "alive"})
        await self.until(of_type("pong", id="alive"))


def on_socket(order) -> dict:
    """A REST order body as order.place carries it: the order's type is order_type."""
    order = dict(order)
    if "type" in order:
        order["order_type"] = order.pop("type")
    return order


async def place(ws, **fields):
    return await ws.command("order.place", **on_socket({**BUY, **fields}))


def rest_error(user, body) -> dict:
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {token(user)}")
    return client.post("/api/orders", body, format="json").json()["error"]


def make_key(user, scopes=("read", "trade"), **extra):
    return api_key_create(user=user, name="bot", scopes=list(scopes), **extra)


# --- Commands ------------------------------------------------------------------------------------


def test_place_answers_the_order_with_the_req_id_as_rest_shapes_it(alice, market):
    async def body():
        async with Trader() as ws:
            await ws.auth(token=await async_token(alice))
            result = await place(ws, req_id="my-first", client_order_id="c-1")
            assert result["type"] == "order.result" and result["req_id"] == "my-first"
            assert set(result["order"]) == ORDER_FIELDS
            assert result["order"]["status"] == "open" and result["order"]["price"] == "10.00000000"
            assert result["fills"] == [] and result["created"] is True
            assert await database_sync_to_async(Order.objects.filter(user=alice, client_order_id="c-1").count)() == 1

    run(body)


def test_a_repeated_client_order_id_answers_the_original_and_places_nothing(alice, market):
    async def body():
        async with Trader() as ws:
            await ws.auth(token=await async_token(alice))
            first = await place(ws, client_order_id="same")
            again = await place(ws, client_order_id="same", price="11.00")
            assert again["order"] == first["order"] and again["created"] is False
            assert await database_sync_to_async(Order.objects.filter(user=alice).count)() == 1

    run(body)


def test_a_crossing_order_answers_its_fills(alice, bob, market):
    async def body():
        await limit(bob, "sell", "10.00", "2")
        async with Trader() as ws:
            await ws.auth(token=await async_token(alice))
            result = await place(ws, quantity="1.50")
            assert result["order"]["status"] == "filled"
            [fill] = result["fills"]
            assert (fill["price"], fill["quantity"], fill["role"]) == ("10.00000000", "1.50000000", "taker")

    run(body)


def test_amend_cancel_and_cancel_all(alice, market):
    async def body():
        async with Trader() as ws:
            await ws.auth(token=await async_token(alice))
            order = (await place(ws))["order"]
            amended = await ws.command("order.amend", id=order["id"], price="9.50", quantity="0.50")
            assert amended["type"] == "order.result"
            assert (amended["order"]["price"], amended["order"]["quantity"]) == ("9.50000000", "0.50000000")
            assert amended["fills"] == []
            cancelled = await ws.command("order.cancel", id=order["id"])
            assert cancelled["order"]["status"] == "cancelled" and cancelled["fills"] == []

            ids = {(await place(ws, price=p))["order"]["id"] for p in ("9.00", "9.10")}
            on_market = await ws.command("order.cancel_all", symbol="QTX-USD")
            assert {o["id"] for o in on_market["orders"]} == ids
            assert all(o["status"] == "cancelled" for o in on_market["orders"])
            await place(ws, price="9.20")
            everywhere = await ws.command("order.cancel_all")
            assert len(everywhere["orders"]) == 1
            assert (await ws.command("order.cancel_all"))["orders"] == []
        usd = await database_sync_to_async(Balance.objects.get)(user=alice, asset_id="USD")
        assert usd.held == 0

    run(body)


def test_commands_from_one_socket_are_answered_in_the_order_sent_past_the_message_rate(alice, market):
    async def body():
        async with Trader() as ws:
            await ws.auth(token=await async_token(alice))
            # More than the socket's burst of messages: order commands are throttled by the
            # API's counters, not by the subscribe/ping bucket.
            sent = [f"burst-{n}" for n in range(30)]
            for n, req_id in enumerate(sent):
                await ws.send(
                    {"type": "order.place", "req_id": req_id, **on_socket(BUY), "price": f"{9 + n / 100:.2f}"}
                )
            answers = [await ws.until(lambda m: m.get("type") == "order.result") for _ in sent]
            assert [a["req_id"] for a in answers] == sent
            assert [a["order"]["id"] for a in answers] == sorted(a["order"]["id"] for a in answers)

    run(body)


def test_a_session_socket_trades_and_its_private_stream_sees_it(alice, market):
    cookie = session_cookie(alice)

    async def body():
        async with Trader(headers=[ORIGIN, cookie]) as ws:
            await ws.send({"type": "subscribe", "channels": ["orders"]})
            await ws.until(of_type("subscribed"))
            result = await place(ws)
            # The private stream spells the order's type order_type too.
            if not any(m["type"] == "order" for m in ws.seen):
                await ws.until(of_type("order"))
            pushed = next(m for m in ws.seen if m["type"] == "order")
            assert (pushed["id"], pushed["order_type"]) == (result["order"]["id"], "limit")

    run(body)


def test_many_sockets_trading_at_once_keep_the_books_balanced(alice, bob, market):
    """Eight sockets, two traders, crossing orders sent all at once: the commands run on
    the order-entry threads concurrently; every one is answered once, and the money
    invariants hold after."""

    async def trader(user, side, n):
        async with Trader() as ws:
            await ws.auth(token=await async_token(user))
            answers = []
            for i in range(8):
                price = f"{10 + (i % 3 - 1) / 100:.2f}"
                answers.append(
                    await place(ws, side=side, price=price, quantity="0.50", client_order_id=f"{side}-{n}-{i}")
                )
            return answers

    async def body():
        results = await asyncio.gather(
            *(trader(user, side, n) for n in range(4) for user, side in ((alice, "buy"), (bob, "sell")))
        )
        answers = [a for answers in results for a in answers]
        assert all(a["type"] == "order.result" for a in answers), [a for a in answers if a["type"] != "order.result"]
        assert len({a["order"]["id"] for a in answers}) == 64
        assert any(a["fills"] for a in answers)

    run(body, timeout=60)
    assert Order.objects.count() == 64
    assert reconcile() == []


# --- API keys on the socket --------------------------------------------------------------------


def test_a_trade_key_authenticates_and_trades(alice, market):
    key, secret = make_key(alice)

    async def body():
        async with Trader() as ws:
            authenticated = await ws.auth(api_key=secret)
            assert authenticated["user"] == {"id": alice.pk, "username": "alice"}
            assert authenticated["api_key"] == {"id": key.pk, "name": "bot", "scopes": ["read", "trade"]}
            assert (await place(ws))["type"] == "order.result"

    run(body)


def test_a_read_key_reads_the_private_stream_but_may_not_trade(alice, market):
    _, secret = make_key(alice, scopes=["read"])

    async def body():
        async with Trader() as ws:
            await ws.auth(api_key=secret)
            await ws.send({"type": "subscribe", "channels": ["orders"]})
            await ws.until(of_type("subscribed"))
            for kind, fields in [
                ("order.place", on_socket(BUY)),
                ("order.cancel", {"id": 1}),
                ("order.cancel_all", {}),
            ]:
                error = await ws.refused(kind, "PERMISSION_DENIED", **fields)
                assert "trade" in error["message"]
            assert await database_sync_to_async(Order.objects.count)() == 0

    run(body)


def test_a_key_revoked_while_the_socket_is_open_stops_trading_at_once(alice, market):
    key, secret = make_key(alice)

    async def body():
        async with Trader() as ws:
            await ws.auth(api_key=secret)
            assert (await place(ws))["type"] == "order.result"
            await database_sync_to_async(api_key_revoke)(user=alice, key_id=key.pk)
            await ws.refused("order.place", "API_KEY_INVALID", **on_socket(BUY))
            # The socket is no longer anyone's.
            await ws.refused("order.place", "NOT_AUTHENTICATED", **on_socket(BUY))
            assert (await ws.auth(api_key=secret))["code"] == "AUTH_FAILED"

    run(body)


def test_a_revoked_key_stops_reaching_the_private_channel(alice, market, monkeypatch):
    from marketdata import consumers as marketdata_consumers

    monkeypatch.setattr(marketdata_consumers, "KEY_CHECK_SECONDS", 0.1)
    key, secret = make_key(alice, scopes=["read"])

    async def body():
        async with Trader() as ws:
            await ws.auth(api_key=secret)
            await ws.send({"type": "subscribe", "channels": ["orders"]})
            await ws.until(of_type("subscribed"))
            await limit(alice, "buy", "9.00")
            await ws.until(of_type("order"))
            await database_sync_to_async(api_key_revoke)(user=alice, key_id=key.pk)
            error = await ws.until(of_type("error"))
            assert error["code"] == "API_KEY_INVALID"
            ws.seen.clear()
            await limit(alice, "buy", "9.10")
            await ws.quiet(0.5)
            assert not [m for m in ws.seen if m["type"] in ("order", "balance")]
            await ws.send({"type": "subscribe", "channels": ["orders"]})
            assert (await ws.until(of_type("error")))["code"] == "AUTH_REQUIRED"

    run(body)


def test_a_key_is_refused_from_outside_its_networks_honouring_num_proxies(alice, market, settings):
    _, secret = make_key(alice, allowed_ips=["203.0.113.0/24"])

    async def body():
        async with Trader(client=("198.51.100.1", 4000)) as ws:
            error = await ws.auth(api_key=secret)
            assert error["code"] == "ADDRESS_NOT_ALLOWED"
            await ws.refused("order.place", "NOT_AUTHENTICATED", **on_socket(BUY))
        async with Trader(client=("203.0.113.9", 4000)) as ws:
            assert (await ws.auth(api_key=secret))["type"] == "authenticated"
        settings.REST_FRAMEWORK = {**settings.REST_FRAMEWORK, "NUM_PROXIES": 1}
        proxied = [(b"x-forwarded-for", b"203.0.113.9")]
        async with Trader(headers=proxied, client=("10.0.0.2", 4000)) as ws:
            assert (await ws.auth(api_key=secret))["type"] == "authenticated"
        spoofed = [(b"x-forwarded-for", b"203.0.113.9, 198.51.100.1")]
        async with Trader(headers=spoofed, client=("10.0.0.2", 4000)) as ws:
            assert (await ws.auth(api_key=secret))["code"] == "ADDRESS_NOT_ALLOWED"

    run(body)


def test_an_unknown_key_is_refused(market):
    async def body():
        async with Trader() as ws:
            for bad in ["nope", "abcdefgh." + "x" * 32, "x" * 500, 12]:
                error = await ws.auth(api_key=bad)
                assert error["type"] == "error" and error["code"] in ("AUTH_FAILED", "BAD_REQUEST"), error
            await ws.still_usable()

    run(body)


# --- Refusals ----------------------------------------------------------------------------------


def test_an_unauthenticated_socket_may_not_trade(alice, market):
    async def body():
        async with Trader() as ws:
            for kind, fields in [
                ("order.place", on_socket(BUY)),
                ("order.amend", {"id": 1, "price": "9.00"}),
                ("order.cancel", {"id": 1}),
                ("order.cancel_all", {}),
            ]:
                await ws.refused(kind, "NOT_AUTHENTICATED", **fields)
            assert (await ws.auth(token="not-a-token"))["code"] == "AUTH_FAILED"
            await ws.refused("order.place", "NOT_AUTHENTICATED", **on_socket(BUY))

    run(body)


def test_a_command_without_a_req_id_is_refused_by_name(alice, market):
    async def body():
        async with Trader() as ws:
            await ws.auth(token=await async_token(alice))
            for req_id in [None, "", 7, "x" * 65, "tab\there"]:
                message = {"type": "order.place", **on_socket(BUY)}
                if req_id is not None:
                    message["req_id"] = req_id
                await ws.send(message)
                error = await ws.until(of_type("error"))
                assert (error["code"], error["field"], error["req_id"]) == ("INVALID", "req_id", None)
            await ws.still_usable()
            assert await database_sync_to_async(Order.objects.count)() == 0

    run(body)


BAD_ORDERS = [
    ({"price": "10.001"}, "price"),
    ({"price": "abc"}, "price"),
    ({"price": -1}, "price"),
    ({"quantity": "0"}, "quantity"),
    ({"quantity": "0.001"}, "quantity"),
    ({"quantity": "0.05"}, None),  # below the minimum notional
    ({"side": "long"}, "side"),
    ({"type": "iceberg"}, "type"),
    ({"time_in_force": "DAY"}, "time_in_force"),
    ({"post_only": "yes"}, "post_only"),
    ({"symbol": "NOPE-USD"}, "symbol"),
    ({"symbol": 5}, "symbol"),
    ({"client_order_id": ""}, "client_order_id"),
    ({"leverage": "10"}, "leverage"),
    ({"type": "market", "price": None, "time_in_force": "GTC"}, None),
]


@pytest.mark.parametrize("change, field", BAD_ORDERS, ids=[str(c) for c, _ in BAD_ORDERS])
def test_bad_orders_are_refused_exactly_as_rest_refuses_them(alice, market, change, field):
    order = {**BUY, **change}
    expected = rest_error(alice, order)

    async def body():
        async with Trader() as ws:
            await ws.auth(token=await async_token(alice))
            error = await ws.refused("order.place", expected["code"], **on_socket(order))
            assert {k: error[k] for k in ("code", "message", "field")} == expected
            if field is not None:
                assert error["field"] == field

    run(body)
    assert not Order.objects.filter(user=alice).exists()


def test_numbers_are_read_as_exact_decimals_and_odd_ones_refused_by_name(alice, market):
    async def body():
        async with Trader() as ws:
            await ws.auth(token=await async_token(alice))
            for raw, code in [
                ('"price": 1e1', "INVALID"),
                ('"price": NaN', "INVALID"),
                ('"price": Infinity', "INVALID"),
            ]:
                await ws.communicator.send_to(
                    text_data='{"type": "order.place", "req_id": "odd", "symbol": "QTX-USD", "side": "buy", '
                    f'"quantity": "1.00", {raw}}}'
                )
                error = await ws.answer("odd")
                assert (error["code"], error["field"]) == (code, "price"), error
            await ws.communicator.send_to(text_data='{"type": "order.place", "req_id": "x", "req_id": "y"}')
            assert (await ws.until(of_type("error")))["code"] == "BAD_JSON"
            # A plain JSON number is the decimal it spells (0.1 + 0.2 would not be 0.3 as a float).
            await ws.communicator.send_to(
                text_data='{"type": "order.place", "req_id": "n", "symbol": "QTX-USD", "side": "buy", '
                '"price": 10.30, "quantity": 0.30}'
            )
            result = await ws.answer("n")
            assert (result["order"]["price"], result["order"]["quantity"]) == ("10.30000000", "0.30000000")
            await ws.still_usable()

    run(body)


def test_insufficient_funds(alice, market):
    async def body():
        async with Trader() as ws:
            await ws.auth(token=await async_token(alice))
            error = await ws.refused("order.place", "INSUFFICIENT_FUNDS", **on_socket({**BUY, "quantity": "100000.00"}))
            assert error["field"] == "quantity"

    run(body)


def test_unknown_and_someone_elses_orders_are_not_found(alice, bob, market):
    async def body():
        bobs = (await limit(bob, "buy", "9.00")).order
        async with Trader() as ws:
            await ws.auth(token=await async_token(alice))
            for order_id in [999_999, bobs.pk, 2**63]:
                await ws.refused("order.cancel", "NOT_FOUND", id=order_id)
                await ws.refused("order.amend", "NOT_FOUND", id=order_id, price="9.10")
            for bad_id in ["5", True, -1, 0, 1.5, None]:
                await ws.refused("order.cancel", "INVALID", "id", id=bad_id)
            await ws.refused("order.cancel", "INVALID", "id")
            await ws.refused("order.cancel", "INVALID", "price", id=bobs.pk, price="1")
            await ws.refused("order.amend", "INVALID", "leverage", id=bobs.pk, leverage=2)
            await ws.refused("order.cancel_all", "INVALID", "symbol", symbol="NOPE-USD")
            await ws.refused("order.cancel_all", "INVALID", "symbol", symbol=["QTX-USD"])
        assert (await database_sync_to_async(Order.objects.get)(pk=bobs.pk)).status == "open"

    run(body)


def test_an_order_no_longer_open_is_a_conflict(alice, market):
    async def body():
        async with Trader() as ws:
            await ws.auth(token=await async_token(alice))
            order = (await place(ws))["order"]
            await ws.command("order.cancel", id=order["id"])
            await ws.refused("order.cancel", "ORDER_NOT_OPEN", id=order["id"])
            await ws.refused("order.amend", "ORDER_NOT_OPEN", id=order["id"], price="9.00")
            await ws.refused("order.amend", "INVALID", "price", id=order["id"])

    run(body)


def test_a_halted_market_refuses_new_orders_and_still_cancels(alice, market):
    async def body():
        async with Trader() as ws:
            await ws.auth(token=await async_token(alice))
            order = (await place(ws))["order"]
            await database_sync_to_async(market_halt)(market=await database_sync_to_async(Market.objects.get)())
            await ws.refused("order.place", "MARKET_HALTED", **on_socket(BUY))
            await ws.refused("order.amend", "MARKET_HALTED", id=order["id"], price="9.00")
            assert (await ws.command("order.cancel", id=order["id"]))["order"]["status"] == "cancelled"

    run(body)


def test_order_commands_are_throttled_like_rest_per_user_and_per_key(alice, market, settings):
    settings.REST_FRAMEWORK = {
        **settings.REST_FRAMEWORK,
        "DEFAULT_THROTTLE_RATES": {**settings.REST_FRAMEWORK["DEFAULT_THROTTLE_RATES"], "orders": "3/minute"},
    }
    _, secret = make_key(alice)

    async def body():
        async with Trader() as ws:
            await ws.auth(token=await async_token(alice))
            for n in range(3):
                assert (await place(ws, price=f"9.0{n}"))["type"] == "order.result"
            error = await ws.refused("order.place", "THROTTLED", **on_socket(BUY))
            assert error["retry_after"] >= 1
            await ws.refused("order.cancel_all", "THROTTLED")
        # The key has a budget of its own, as over REST.
        async with Trader() as ws:
            await ws.auth(api_key=secret)
            assert (await place(ws))["type"] == "order.result"

    run(body)
    # REST and the socket spend the same per-user budget.
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {token(alice)}")
    assert client.post("/api/orders", BUY, format="json").status_code == 429


def test_an_expired_token_stops_trading(alice, market, monkeypatch):
    async def body():
        async with Trader() as ws:
            await ws.auth(token=await async_token(alice))
            assert (await place(ws))["type"] == "order.result"
            real = time.time
            monkeypatch.setattr(time, "time", lambda: real() + 7 * 24 * 3600)
            try:
                await ws.refused("order.place", "AUTH_EXPIRED", **on_socket(BUY))
            finally:
                monkeypatch.setattr(time, "time", real)

    run(body)


def test_a_deactivated_user_stops_trading(alice, market, monkeypatch):
    from orders import consumers

    monkeypatch.setattr(consumers, "USER_CACHE_SECONDS", 0.0)

    async def body():
        async with Trader() as ws:
            await ws.auth(token=await async_token(alice))
            assert (await place(ws))["type"] == "order.result"
            alice.is_active = False
            await database_sync_to_async(alice.save)()
            await ws.refused("order.place", "NOT_AUTHENTICATED", **on_socket(BUY))

    run(body)


def test_the_orders_type_travels_as_order_type(alice, bob, market):
    async def body():
        await limit(bob, "buy", "9.00", "0.50")
        async with Trader() as ws:
            await ws.auth(token=await async_token(alice))
            sold = await ws.command("order.place", symbol="QTX-USD", side="sell", order_type="market", quantity="1.00")
            assert (sold["order"]["type"], sold["order"]["status"]) == ("market", "expired")
            assert sold["order"]["filled_quantity"] == "0.50000000"
            # Without order_type, a limit order (as REST's default).
            assert (await ws.command("order.place", **BUY_WITHOUT_TYPE))["order"]["type"] == "limit"

    run(body)


BUY_WITHOUT_TYPE = {k: v for k, v in BUY.items() if k != "type"}


# --- Stop orders: the same serializers and engine, nothing of their own here -------------------


def test_a_stop_waits_pending_is_amended_triggers_and_is_refused_when_already_crossed(alice, bob, market):
    async def body():
        await limit(bob, "sell", "10.00", "1")
        await limit(alice, "buy", "10.00", "1")  # the last trade: 10.00
        async with Trader() as ws:
            await ws.auth(token=await async_token(alice))
            stop = await place(ws, type="stop_limit", stop_price="10.50", price="10.60", quantity="1.00")
            assert stop["type"] == "order.result", stop
            order = stop["order"]
            assert (order["type"], order["status"], order["stop_price"]) == ("stop_limit", "pending", "10.50000000")
            assert stop["fills"] == []
            amended = await ws.command("order.amend", id=order["id"], stop_price="10.40")
            assert amended["order"]["stop_price"] == "10.40000000"
            # A buy stop at or below the last trade is already crossed: refused by name.
            await ws.refused(
                "order.place",
                "INVALID",
                "stop_price",
                **on_socket({**BUY, "type": "stop_market", "price": None, "stop_price": "9.90"}),
            )
            await ws.refused(
                "order.place", "INVALID", None, **on_socket({**BUY, "type": "stop_limit", "price": "10.60"})
            )
            # A trade at 10.40 triggers it; it then rests as a limit order at 10.60 or trades.
            await limit(bob, "sell", "10.40", "1")
            await limit(alice, "buy", "10.40", "1")
            cancelled = await ws.command("order.cancel_all", symbol="QTX-USD")
            assert order["id"] in {o["id"] for o in cancelled["orders"]}
            triggered = next(o for o in cancelled["orders"] if o["id"] == order["id"])
            assert triggered["triggered_at"] is not None

    run(body)


def test_cancelling_a_pending_stop_releases_its_hold(alice, bob, market):
    async def body():
        await limit(bob, "sell", "10.00", "1")
        await limit(alice, "buy", "10.00", "1")
        async with Trader() as ws:
            await ws.auth(token=await async_token(alice))
            before = await database_sync_to_async(Balance.objects.get)(user=alice, asset_id="QTX")
            stop = await place(ws, side="sell", type="stop_market", price=None, stop_price="9.50", quantity="2.00")
            assert stop["order"]["status"] == "pending"
            held = await database_sync_to_async(Balance.objects.get)(user=alice, asset_id="QTX")
            assert held.held == before.held + 2
            cancelled = await ws.command("order.cancel", id=stop["order"]["id"])
            assert cancelled["order"]["status"] == "cancelled"
            after = await database_sync_to_async(Balance.objects.get)(user=alice, asset_id="QTX")
            assert after.held == before.held

    run(body)


def test_an_unexpected_failure_is_answered_in_the_error_shape_and_the_socket_stays(alice, market, monkeypatch):
    from orders import consumers

    def broken(user, body):
        raise RuntimeError("boom")

    monkeypatch.setitem(consumers.COMMANDS, "order.cancel_all", broken)

    async def body():
        async with Trader() as ws:
            await ws.auth(token=await async_token(alice))
            await ws.refused("order.cancel_all", "INTERNAL_ERROR")
            assert (await place(ws))["type"] == "order.result"

    run(body)


def test_the_market_data_socket_still_refuses_unknown_types_by_listing_the_known(market):
    async def body():
        async with Trader() as ws:
            await ws.send({"type": "order.teleport", "req_id": "x"})
            error = await ws.until(of_type("error"))
            assert error["code"] == "UNKNOWN_TYPE" and "order.place" in error["message"]

    run(body)
