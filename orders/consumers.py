"""Order entry over /ws: the market-data socket, plus the order commands of docs/API.md ("Order entry").

`TradingConsumer` is `marketdata.consumers.MarketDataConsumer` (subscribe, auth, the
streams) with ten more message types. Each is a door onto the same engine as the REST
API, checked by the same serializers, throttled by the same counters, and answered with
the same payloads and error codes:

    {"type": "order.place", "req_id", ...the body of POST /api/orders, "order_type"}
    {"type": "order.amend", "req_id", "id", "price"?, "quantity"?, "stop_price"?}
    {"type": "order.cancel", "req_id", "id"}
    {"type": "order.cancel_all", "req_id", "symbol"?}
    -> {"type": "order.result", "req_id", "order", "fills"[, "created"]}  (cancel_all: "orders")
    {"type": "order.cancel_after", "req_id", "seconds"}  (the dead man's switch)
    -> {"type": "order.cancel_after", "req_id", "armed_until"}
    {"type": "order.batch", "req_id", "orders": [...1 to 20 bodies of order.place, one market]}
    {"type": "order.cancel_batch", "req_id", "ids": [...1 to 20 order ids]}
    -> {"type": "order.batch_result", "req_id", "results": [...]}  (each as POST /api/orders/batch)
    {"type": "order.oco", "req_id", ...the body of POST /api/orders/oco}
    {"type": "order.bracket", "req_id", ...the body of POST /api/orders/bracket}
    {"type": "order.cancel_list", "req_id", "id"}
    -> {"type": "order.result", "req_id", "list", "orders", "fills"[, "created"]}  (cancel_list: no fills)
    -> {"type": "error", "req_id", "code", "message", "field"}
Every answer but an error also carries `"rate_limit": {"limit", "remaining", "reset"}`, the
figures of REST's X-RateLimit-* headers.

`type` names the message on every /ws message, so the order's own type (limit, market, ...),
`type` in the REST body, is `order_type` here; every other field is spelt as in REST.

Rules of the socket:
- Only a socket that may trade: a web session or an access token (auth with "token"), or
  an API key with the `trade` scope. A key is checked again on every command, so a
  revoked key stops trading at once, as over REST; a token's login as REST checks it
  (accounts.authentication), so a token whose login ended stops trading within
  USER_CACHE_SECONDS (TOKEN_REVOKED).
- Commands from one socket run one after the other, in the order they were sent; to have
  several in flight, open several sockets.
- A command's whole synchronous part (throttle counters, parsing, the engine, the
  payload) is one trip to one of ORDER_THREADS worker threads: the event loop never waits
  on the database, and commands from many sockets can queue on one market together, as
  REST requests do (the engine groups them).
- Cancel on disconnect: `{"type": "auth", ..., "cancel_on_disconnect": true}` makes every
  order the socket places from then on carry the socket's `orders.LiveSocket` (made at its
  first order), and they are cancelled when the socket closes, however it closes, or when
  this process dies (`orders.protection`). `false` stops it for the orders placed after;
  an auth without the flag leaves it as it was.
- Order commands count against the API's throttles ("user" and "orders", per user or
  per key), not against the socket's message rate (that bucket is for subscriptions and
  pings): an integrator gets the same budget on either door.
"""

import asyncio
import contextvars
import logging
import time
from concurrent.futures import ThreadPoolExecutor
from types import SimpleNamespace

from django.conf import settings
from django.db import close_old_connections
from rest_framework import exceptions

from accounts.authentication import JWTAuthentication, LoginEnded
from accounts.keys import api_key_reread
from accounts.models import User
from accounts.selectors import active_user
from marketdata.api import market_by_symbol
from marketdata.consumers import MarketDataConsumer, RequestError
from orders import protection
from orders.api import (
    BracketPlaceInput,
    CancelAfterInput,
    OcoPlaceInput,
    OrderAmendInput,
    OrderBatchCancelInput,
    OrderBatchPlaceInput,
    OrderPlaceInput,
    armed_until_payload,
    batch_cancel,
    batch_place,
    bracket_place_arguments,
    oco_place_arguments,
    order_amend_arguments,
    order_place_arguments,
)
from orders.models import MAX_ID, OrderSource
from orders.payloads import list_result_payload, order_list_payload, order_payload, result_payload
from orders.selectors import orders_of_list
from orders.services import (
    BATCH_MAX,
    bracket_place,
    oco_place,
    order_amend,
    order_cancel,
    order_list_cancel,
    order_place,
    orders_cancel_all,
)
from quantumtrades.core import replicas, unavailable
from quantumtrades.core.api import input_error, loads_strict
from quantumtrades.core.errors import ErrorCode, InvalidInput, NotFound, ServiceError
from quantumtrades.core.throttles import ApiRateThrottle

log = logging.getLogger(__name__)

REQ_ID_MAX = 64
# A socket's user is read again at most this often (an operator's deactivation reaches an
# open socket within it), as the REST API's token authentication does.
USER_CACHE_SECONDS = 5.0
ORDER_COMMANDS = (
    "order.place",
    "order.amend",
    "order.cancel",
    "order.cancel_all",
    "order.cancel_after",
    "order.batch",
    "order.cancel_batch",
    "order.oco",
    "order.bracket",
    "order.cancel_list",
)
# What a batch counts against the "orders" rate: one per order, as over REST.
BATCH_ITEMS = {"order.batch": "orders", "order.cancel_batch": "ids"}
# As the REST API's throttle sees an order command: an unsafe method on a trading view.
ORDER_VIEW = SimpleNamespace(order_commands=True)

_executor = None


def executor() -> ThreadPoolExecutor:
    """The order-entry worker threads of this process (as many as HTTP's REQUEST_THREADS)."""
    global _executor
    if _executor is None:
        _executor = ThreadPoolExecutor(settings.REQUEST_THREADS, thread_name_prefix="ws-orders")
    return _executor


class CommandRefused(Exception):
    """A refusal of the socket's own (not a service's): code, message, field."""

    def __init__(self, code, message, field=None, **extra):
        super().__init__(message)
        self.error = {"code": code, "message": message, "field": field, **extra}


class TradingConsumer(MarketDataConsumer):
    """/ws with order entry (the wiring routes /ws here)."""

    async def connect(self):
        self.trader = None  # the User, read in a worker thread at the first command
        self.trader_read_at = 0.0
        self.token_expires = None
        # Cancel on disconnect: asked for (by the last auth that said), and the socket's
        # LiveSocket per user it placed orders for (a socket may authenticate again as
        # someone else).
        self.cancel_on_disconnect = False
        self.cancel_on_disconnect_asked = None
        self.live_sockets: dict[int, int] = {}
        await super().connect()

    async def __call__(self, scope, receive, send):
        try:
            await super().__call__(scope, receive, send)
        finally:
            # However the socket ended (the client, the server, an error in a handler), its
            # cancel-on-disconnect orders are cancelled; shielded, so that an application
            # cancelled by daphne still finishes the job in its worker thread.
            if getattr(self, "live_sockets", None) or self.running is not None:
                await asyncio.shield(self.live_sockets_close())

    running = None  # the last command sent to a worker thread (a concurrent.futures.Future)

    async def live_sockets_close(self):
        # A command still running (daphne cancelled the application while it waited for
        # it) may yet place an order of the socket: cancel after it, not before.
        if self.running is not None and not self.running.done():
            await asyncio.wait([asyncio.wrap_future(self.running)])
        sockets, self.live_sockets = list(self.live_sockets.values()), {}
        if sockets:
            await asyncio.get_running_loop().run_in_executor(executor(), _live_sockets_close, sockets)

    def handlers(self) -> dict:
        return {**super().handlers(), **dict.fromkeys(ORDER_COMMANDS, self.on_order_command)}

    # Order commands come with decimals: read every message as the REST API reads a body.
    @staticmethod
    def decode(text):
        try:
            return loads_strict(text)
        except exceptions.ParseError as exc:
            raise ValueError(str(exc)) from None

    def admit(self, message) -> bool:
        if message is not None and message["type"] in ORDER_COMMANDS and self.user_id is not None:
            return True  # throttled by the API's counters instead (see the module docstring)
        return super().admit(message)

    async def on_auth(self, message):
        asked = message.get("cancel_on_disconnect")
        if asked is not None and not isinstance(asked, bool):
            raise RequestError(ErrorCode.BAD_REQUEST, '"cancel_on_disconnect" is true or false.')
        self.cancel_on_disconnect_asked = asked
        try:
            await super().on_auth(message)
        finally:
            self.cancel_on_disconnect_asked = None

    def authenticated(self, user_id, username, *, expires, api_key, token=None):
        if self.cancel_on_disconnect_asked is not None:  # applies only once the auth succeeded
            self.cancel_on_disconnect = self.cancel_on_disconnect_asked
        super().authenticated(user_id, username, expires=expires, api_key=api_key, token=token)
        self.trader, self.token_expires = None, expires

    def authenticated_details(self) -> dict:
        return {"cancel_on_disconnect": self.cancel_on_disconnect}

    async def on_order_command(self, message):
        req_id = message.get("req_id")
        if not isinstance(req_id, str) or not 1 <= len(req_id) <= REQ_ID_MAX or not req_id.isprintable():
            return self.refuse(
                None, ErrorCode.INVALID, f"req_id is required: your own text of 1 to {REQ_ID_MAX} characters.", "req_id"
            )
        try:
            self.check_may_trade()
            # What run_in_executor does, keeping the thread's own future: when the application
            # is cancelled, only the asyncio one is, and `live_sockets_close` can still wait
            # for a command its thread is running.
            # In this message's context: its log lines carry its request id (quantumtrades.core.logs).
            self.running = executor().submit(contextvars.copy_context().run, self.run_command, message)
            reply = await asyncio.wrap_future(self.running)
        except CommandRefused as exc:
            if exc.error["code"] in (ErrorCode.API_KEY_INVALID, ErrorCode.TOKEN_REVOKED):
                self.deauthenticate()
            return self.refuse(req_id, **exc.error)
        self.sink.send_message({"type": "order.result", "req_id": req_id, **reply})

    def refuse(self, req_id, code, message, field=None, **extra):
        self.sink.send_message(
            {"type": "error", "req_id": req_id, "code": code, "message": message, "field": field, **extra}
        )

    def check_may_trade(self):
        if self.user_id is None:
            raise CommandRefused(
                ErrorCode.NOT_AUTHENTICATED,
                'Order commands need a session, {"type": "auth", "token": "<access JWT>"} '
                'or {"type": "auth", "api_key": "<key with the trade scope>"} first.',
            )
        if self.token_expires is not None and self.token_expires <= time.time():
            raise CommandRefused(
                ErrorCode.AUTH_EXPIRED, 'The access token expired; send {"type": "auth"} with a new one.'
            )
        if self.api_key is not None and not self.api_key.can_trade:
            raise CommandRefused(
                ErrorCode.PERMISSION_DENIED,
                'This API key may only read: make one with the "trade" scope to place, amend or cancel orders.',
            )

    def deauthenticate(self):
        super().deauthenticate()
        self.trader = None

    # --- In a worker thread ----------------------------------------------------------------

    def run_command(self, message) -> dict:
        """One command, start to finish: who, the throttles, the input, the engine."""
        close_old_connections()
        try:
            user = self.current_trader()
            throttle = ApiRateThrottle()
            view = ORDER_VIEW
            if message["type"] in BATCH_ITEMS:
                items = message.get(BATCH_ITEMS[message["type"]])
                count = len(items) if isinstance(items, list) and 1 <= len(items) <= BATCH_MAX else 1
                view = SimpleNamespace(order_commands=True, orders_in=lambda request: count)
            if not throttle.allow_request(SimpleNamespace(user=user, auth=self.api_key, method="POST"), view):
                wait = max(1, int(throttle.wait() + 0.999))
                raise CommandRefused(
                    ErrorCode.THROTTLED, f"Too many requests: retry in {wait} seconds.", retry_after=wait
                )
            body = {key: value for key, value in message.items() if key not in ("type", "req_id")}
            replicas.writes_seen(user.pk)  # their public reads next see this command (core.replicas)
            if message["type"] in ("order.place", "order.batch", "order.oco", "order.bracket"):
                socket_id = self.live_socket_for(user) if self.cancel_on_disconnect else None
                reply = COMMANDS[message["type"]](user, body, socket_id=socket_id)
            else:
                reply = COMMANDS[message["type"]](user, body)
            # What REST says in its X-RateLimit-* headers, for a program to pace itself by.
            return {**reply, "rate_limit": throttle.rate_limit.payload()} if throttle.rate_limit else reply
        except (ServiceError, exceptions.ValidationError) as exc:
            _, error = input_error(exc)
            raise CommandRefused(**error) from None
        except CommandRefused:
            raise
        except Exception as exc:
            if unavailable.is_unavailable(exc):
                unavailable.recover(exc)
                raise CommandRefused(**unavailable.error_body()["error"]) from None
            # As the REST API's handler does: said in the log, answered in the error shape,
            # and the socket stays open.
            log.exception("Unexpected error in /ws %s", message.get("type"))
            raise CommandRefused(
                ErrorCode.INTERNAL_ERROR, "Something went wrong on our side; nothing was changed."
            ) from None
        finally:
            close_old_connections()

    def live_socket_for(self, user) -> int:
        """The socket's LiveSocket for `user`, made at the first order it places for them:
        made before the order, so that no order of the socket goes unprotected."""
        socket_id = self.live_sockets.get(user.pk)
        if socket_id is None:
            socket_id = self.live_sockets[user.pk] = protection.live_socket_open(user=user)
        return socket_id

    def current_trader(self) -> User:
        if self.api_key is not None:
            # Every command: a key revoked a moment ago trades no more (one query, with the user).
            key = api_key_reread(self.api_key)
            if key is None:
                raise CommandRefused(ErrorCode.API_KEY_INVALID, "The API key was refused: it is unknown or revoked.")
            return key.user
        token = self.access_token
        if token is not None:
            # The token's login and user, as the REST API reads them: this process's copy,
            # at most USER_CACHE_SECONDS old (no query per command).
            try:
                return JWTAuthentication().get_user(token)
            except LoginEnded:
                raise CommandRefused(
                    ErrorCode.TOKEN_REVOKED, "The access token's login has ended: log in again and authenticate."
                ) from None
            except exceptions.AuthenticationFailed:
                raise CommandRefused(ErrorCode.NOT_AUTHENTICATED, "This socket's account is disabled.") from None
        if self.trader is None or time.monotonic() - self.trader_read_at > USER_CACHE_SECONDS:
            trader = active_user(self.user_id)
            if trader is None:
                raise CommandRefused(ErrorCode.NOT_AUTHENTICATED, "This socket's account is disabled.")
            self.trader, self.trader_read_at = trader, time.monotonic()
        return self.trader


def _body(serializer_class, body) -> dict:
    serializer = serializer_class(data=body)
    serializer.is_valid(raise_exception=True)
    return serializer.validated_data


def _order_id(body) -> int:
    order_id = body.get("id")
    if isinstance(order_id, bool) or not isinstance(order_id, int) or order_id <= 0:
        raise InvalidInput("id is the order's id, a positive whole number.", field="id")
    if order_id > MAX_ID:
        raise NotFound("No such order.")
    return order_id


def _only(body, allowed):
    unknown = [key for key in body if key not in allowed]
    if unknown:
        raise InvalidInput(
            f"{unknown[0][:64]} is not a field of this command (allowed: {', '.join(allowed)}).", field=unknown[0][:64]
        )


def _live_sockets_close(socket_ids) -> None:
    close_old_connections()
    try:
        for socket_id in socket_ids:
            try:
                protection.live_socket_close(socket_id=socket_id)
            except Exception:  # the row goes stale: a sweeper cancels its orders (orders.protection)
                log.exception("cancel on disconnect: socket %s could not be closed", socket_id)
    finally:
        close_old_connections()


def _order_body(body) -> dict:
    """An order as /ws spells it (its type as `order_type`), as REST spells it."""
    if "type" in body:
        raise InvalidInput("type names the message here: send the order's type as order_type.", field="type")
    if "order_type" in body:
        body["type"] = body.pop("order_type")
    return body


def place(user, body, socket_id=None) -> dict:
    data = _body(OrderPlaceInput, _order_body(body))
    result = order_place(user=user, **order_place_arguments(data), source=OrderSource.WS, socket_id=socket_id)
    # created: false when client_order_id repeated an earlier order (REST answers 200, not 201).
    return {**result_payload(result), "created": result.created}


def amend(user, body) -> dict:
    order_id = _order_id(body)
    data = _body(OrderAmendInput, {key: value for key, value in body.items() if key != "id"})
    return result_payload(order_amend(user=user, order_id=order_id, **order_amend_arguments(data)))


def cancel(user, body) -> dict:
    _only(body, ["id"])
    return {"order": order_payload(order_cancel(user=user, order_id=_order_id(body))), "fills": []}


def cancel_all(user, body) -> dict:
    _only(body, ["symbol"])
    symbol = body.get("symbol")
    if symbol is not None and not isinstance(symbol, str):
        raise InvalidInput("symbol must be a string.", field="symbol")
    market = market_by_symbol(symbol, field="symbol") if symbol is not None else None
    return {"orders": [order_payload(order) for order in orders_cancel_all(user=user, market=market)]}


def oco(user, body, socket_id=None) -> dict:
    data = _body(OcoPlaceInput, body)
    result = oco_place(user=user, **oco_place_arguments(data), source=OrderSource.WS, socket_id=socket_id)
    return {**list_result_payload(result), "created": result.created}


def bracket(user, body, socket_id=None) -> dict:
    data = _body(BracketPlaceInput, body)
    result = bracket_place(user=user, **bracket_place_arguments(data), source=OrderSource.WS, socket_id=socket_id)
    return {**list_result_payload(result), "created": result.created}


def cancel_list(user, body) -> dict:
    _only(body, ["id"])
    list_id = body.get("id")
    if isinstance(list_id, bool) or not isinstance(list_id, int) or list_id <= 0:
        raise InvalidInput("id is the order list's id, a positive whole number.", field="id")
    order_list = order_list_cancel(user=user, list_id=list_id)
    orders = orders_of_list(order_list)
    return {"list": order_list_payload(order_list, orders), "orders": [order_payload(order) for order in orders]}


def cancel_after(user, body) -> dict:
    data = _body(CancelAfterInput, body)
    armed_until = protection.dead_mans_switch_arm(user=user, seconds=data["seconds"])
    # Its own answer type (overriding "order.result"): it answers no order.
    return {"type": "order.cancel_after", **armed_until_payload(armed_until)}


def batch(user, body, socket_id=None) -> dict:
    data = _body(OrderBatchPlaceInput, body)
    results = batch_place(user, data["orders"], source=OrderSource.WS, socket_id=socket_id, order_body=_order_body)
    return {"type": "order.batch_result", "results": results}


def cancel_batch(user, body) -> dict:
    data = _body(OrderBatchCancelInput, body)
    return {"type": "order.batch_result", "results": batch_cancel(user, data["ids"])}


COMMANDS = {
    "order.place": place,
    "order.amend": amend,
    "order.cancel": cancel,
    "order.cancel_all": cancel_all,
    "order.cancel_after": cancel_after,
    "order.batch": batch,
    "order.cancel_batch": cancel_batch,
    "order.oco": oco,
    "order.bracket": bracket,
    "order.cancel_list": cancel_list,
}
