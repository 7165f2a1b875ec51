"""WebSocket doors onto the live streams (`marketdata.streams`).

`/ws` speaks JSON to integrators (docs/API.md, "WebSocket"); `/ws/live/<symbol>/` and `/ws/live/`
push htmx fragments to pages. Both are thin: the process's hub owns the books, renders
every frame once and writes it to the sockets; a consumer parses what its client says.

/ws, in detail (docs/API.md documents each):
- `ticker` and `candles` (with "interval": 1m, 5m, 1h or 1d) start with the market's
  current ticker or candle, then one message whenever a refresh after trades changed it
  (at most every STATS_INTERVAL: conflated, built once per market for every subscriber);
- `status` starts with the market's `market_status` (its status; in a call auction when
  it ends and the indicative price and volume), then one whenever that changes: a halt, a
  resume, a circuit breaker's auction, the uncross, and in an auction the book's changes
  (conflated with its book updates);
- replies: {"type": "subscribed" | "unsubscribed", "channels", "symbols"} before the
  snapshots; {"type": "pong", "time"[, "id"]}; {"type": "authenticated", "user": {"id",
  "username"}[, "api_key": {"id", "name", "scopes"}]} after {"type": "auth", "token"} or
  {"type": "auth", "api_key"} (an API key: its address is checked as over REST; once it is
  revoked, error API_KEY_INVALID within KEY_CHECK_SECONDS and the socket is nobody's; a
  token: once its login ends (logout, signing out everywhere, a password change) or its
  user is disabled, error TOKEN_REVOKED within TOKEN_CHECK_SECONDS, and the same);
- {"type": "heartbeat", "time", "seqs": {symbol: seq}} every 20 s: the seq of each book as
  the stream has sent it, so an idle client can tell it is current;
- a `book_snapshot` may also come unasked: after a socket fell too far behind to be sent
  every update (it replaces the book, and the chain restarts from its seq);
- `orders` carries the authenticated user's order, fill and balance messages, for all
  markets (`symbols` does not filter it); with a token it ends when the token expires
  (error AUTH_EXPIRED);
- error codes: BAD_MESSAGE, BAD_JSON, MESSAGE_TOO_LARGE, UNKNOWN_TYPE, BAD_REQUEST,
  UNKNOWN_CHANNEL, UNKNOWN_SYMBOL, UNAVAILABLE, AUTH_REQUIRED, AUTH_FAILED, AUTH_EXPIRED,
  ADDRESS_NOT_ALLOWED, SESSION_ENDED (the web session that signed the socket in was signed out:
  it acts for nobody from then on), TOKEN_REVOKED (the same for the access token's login),
  RATE_LIMITED, STREAM_INTERRUPTED (private events may have been missed: re-read them over
  REST), SLOW_CONSUMER (then closed). Other errors keep the connection.
- limits: frames of at most MAX_MESSAGE_BYTES, MESSAGE_RATE per second (burst
  MESSAGE_BURST; MAX_REFUSED refused in a row close the socket), MAX_SYMBOLS markets per
  socket.
- the server closes a socket only with the codes of `quantumtrades.core.websocket.CloseCode`.
"""

import asyncio
import json
import logging
import time

from channels.consumer import get_handler_name
from channels.db import database_sync_to_async
from channels.generic.websocket import AsyncWebsocketConsumer
from rest_framework.exceptions import AuthenticationFailed
from rest_framework_simplejwt.exceptions import TokenError

from accounts import keys, security
from accounts.authentication import JWTAuthentication, LoginEnded, login_standing
from quantumtrades.core import logs
from quantumtrades.core.errors import ErrorCode
from quantumtrades.core.streams import utc_now_text
from quantumtrades.core.websocket import CloseCode

from . import streams
from .models import Interval, is_symbol

log = logging.getLogger(__name__)

# Frames larger than this are refused with an error instead of being parsed.
MAX_MESSAGE_BYTES = 4096
# Client messages per second per socket, and the burst allowed above it.
MESSAGE_RATE = 10.0
MESSAGE_BURST = 20
# Messages refused for rate in a row before the socket is closed (CloseCode.RATE_LIMITED).
MAX_REFUSED = 50
MAX_SYMBOLS = 20
# How often a socket authenticated with an API key checks that the key is still usable.
KEY_CHECK_SECONDS = 10.0
# A socket signed in by its web session checks this often that the session still is: one
# signed out (here, or from the account's Sessions page) stops acting for its user.
SESSION_CHECK_SECONDS = 10.0
# How often a socket authenticated with an access token checks that the token's login
# still stands. The check reads the process's copy of the user and their ended logins
# (accounts.authentication, at most USER_CACHE_SECONDS old) in the event loop; only when
# that copy is stale does it read them again, in a thread, for every socket of the user.
TOKEN_CHECK_SECONDS = 2.0
CHANNELS = ("book", "trades", "ticker", "candles", "status", "orders")
PUBLIC_CHANNELS = {"book", "trades", "ticker", "candles", "status"}
INTERVALS = tuple(Interval.values)
# An alias with no channel layer: sockets get their frames from the hub, so none of them
# opens a layer channel (a Redis subscription) of its own.
NO_CHANNEL_LAYER = "streams.none"


class RequestError(Exception):
    def __init__(self, code, message):
        super().__init__(message)
        self.code = code
        self.message = message


class TokenBucket:
    def __init__(self, rate=MESSAGE_RATE, burst=MESSAGE_BURST):
        self.rate = rate
        self.burst = burst
        self.tokens = float(burst)
        self.at = time.monotonic()

    def take(self) -> bool:
        now = time.monotonic()
        self.tokens = min(self.burst, self.tokens + (now - self.at) * self.rate)
        self.at = now
        if self.tokens >= 1:
            self.tokens -= 1
            return True
        return False


def _user_for_token(token: str):
    """(user, validated token) of a valid access JWT whose login stands, as the REST API
    checks it (accounts.authentication); raises for anything else."""
    authentication = JWTAuthentication()
    validated = authentication.get_validated_token(token)
    return authentication.get_user(validated), validated


def _token_login_stands(validated) -> bool:
    """Whether an access token that authenticated a socket still would: its login not
    ended, its user active."""
    try:
        JWTAuthentication().get_user(validated)
    except AuthenticationFailed:
        return False
    return True


def _session_user_id(scope):
    user = scope.get("user")
    return user.pk if user is not None and user.is_authenticated else None


class StreamConsumer(AsyncWebsocketConsumer):
    channel_layer_alias = NO_CHANNEL_LAYER
    hub = None
    sink = None
    closed = False

    async def dispatch(self, message):
        # Channels hops to a thread before every handler to close stale database
        # connections; these handlers reach the database only through
        # database_sync_to_async, which does that itself.
        handler = getattr(self, get_handler_name(message), None)
        if handler is None:
            raise ValueError(f"No handler for message type {message['type']}")
        await handler(message)

    credential_watch = None

    def watch(self, check, lost, what: str, every: float, known=None) -> None:
        """While one credential vouches for this socket, ask `check()` (in a worker thread)
        every `every` seconds whether it still does; once it does not, `await lost()`.
        `known()`, if given, may answer first from memory (True or False; None: ask
        `check()`), saving the trip to a thread.

        One credential at a time: a socket starts on its web session and may then
        authenticate with a token or an API key, so a new watch replaces the one before."""
        self.unwatch()
        self.credential_watch = asyncio.ensure_future(self._watch(check, lost, what, every, known))

    def unwatch(self) -> None:
        """No credential to follow any more (a token expires by itself; the socket closed)."""
        if self.credential_watch is not None:
            self.credential_watch.cancel()
            self.credential_watch = None

    async def _watch(self, check, lost, what, every, known):
        while True:
            await asyncio.sleep(every)
            still = known() if known is not None else None
            if still is None:
                try:
                    still = await database_sync_to_async(check)()
                except Exception:  # the database is away: the next check decides
                    log.warning("stream: could not check %s", what, exc_info=True)
                    continue
            if not still:
                self.credential_watch = None
                await lost()
                return

    def watch_session(self):
        """Follow the web session this socket was signed in with, if any."""
        session_key = getattr(self.scope.get("session"), "session_key", None)
        if session_key and _session_user_id(self.scope) is not None:
            self.watch(
                lambda: security.session_alive(session_key), self.session_ended, "a session", SESSION_CHECK_SECONDS
            )

    async def session_ended(self):
        """A page's socket closes for good; the page's next request logs in again."""
        await self.close(code=CloseCode.SESSION_ENDED)

    async def close(self, code=None, reason=None):
        """Close once, and leave the hub now rather than when the client acknowledges:
        a client that never answers the close must not stay subscribed meanwhile."""
        if self.closed:
            return
        self.closed = True
        self.leave()
        # A plain int: autobahn refuses any other type, an IntEnum included.
        await super().close(code=int(code) if code is not None else None, reason=reason)

    async def disconnect(self, code):
        self.closed = True
        self.leave()

    def leave(self):
        self.unwatch()
        if self.hub is not None and self.sink is not None:
            self.hub.detach(self.sink)
            self.sink.closing = True


class MarketDataConsumer(StreamConsumer):
    """/ws: subscribe, unsubscribe, ping, auth; book, trades and the private `orders` channel."""

    async def connect(self):
        # Each message handled gets a request id of its own for its log lines (quantumtrades.core.logs).
        self.log_ids = logs.SocketMessages(self.scope)
        self.bucket = TokenBucket()
        self.refused = 0
        self.user_id = _session_user_id(self.scope)
        self.api_key = None  # the accounts.ApiKey the socket authenticated with, if any
        self.access_token = None  # the validated access token it authenticated with, if any
        self.hub = await streams.get_hub()
        await self.accept()
        self.sink = self.hub.attach(self, "api")
        self.watch_session()

    async def receive(self, text_data=None, bytes_data=None):
        if self.closed:
            return  # frames that were on their way when the server closed
        logs.context_set(self.log_ids.next(self.user_id))
        message, problem = self.read(text_data)
        if not self.admit(message):
            self.refused += 1
            if self.refused > MAX_REFUSED:
                self.error(ErrorCode.RATE_LIMITED, "Too many messages; closing.")
                await self.close(code=CloseCode.RATE_LIMITED)
            elif self.refused == 1:
                self.error(ErrorCode.RATE_LIMITED, f"At most {MESSAGE_RATE:g} messages per second; ignored.")
            return
        self.refused = 0
        if problem is not None:
            return self.error(*problem)
        handlers = self.handlers()
        handler = handlers.get(message["type"])
        if handler is None:
            return self.error(ErrorCode.UNKNOWN_TYPE, f"Known types: {', '.join(handlers)}.")
        try:
            await handler(message)
        except RequestError as exc:
            self.error(exc.code, exc.message)

    def read(self, text_data):
        """(the message, None) or (None, (code, message)) for a frame that is not one."""
        if text_data is None:
            return None, (ErrorCode.BAD_MESSAGE, "Send JSON in text frames.")
        if len(text_data) > MAX_MESSAGE_BYTES or (
            len(text_data) * 4 > MAX_MESSAGE_BYTES and len(text_data.encode()) > MAX_MESSAGE_BYTES
        ):
            return None, (ErrorCode.MESSAGE_TOO_LARGE, f"Messages are at most {MAX_MESSAGE_BYTES} bytes.")
        try:
            message = self.decode(text_data)
        except ValueError:
            return None, (ErrorCode.BAD_JSON, "The message is not valid JSON.")
        if not isinstance(message, dict) or not isinstance(message.get("type"), str):
            return None, (ErrorCode.BAD_MESSAGE, 'A message is a JSON object with a "type".')
        return message, None

    decode = staticmethod(json.loads)

    def admit(self, message) -> bool:
        """Whether the socket's message rate lets `message` (None: a bad frame) through."""
        return self.bucket.take()

    def handlers(self) -> dict:
        """Message type -> handler; a consumer that speaks more extends it."""
        return {
            "ping": self.on_ping,
            "subscribe": self.on_subscribe,
            "unsubscribe": self.on_unsubscribe,
            "auth": self.on_auth,
        }

    def error(self, code, message):
        self.sink.send_message({"type": "error", "code": code, "message": message})

    async def on_ping(self, message):
        reply = {"type": "pong", "time": utc_now_text()}
        if isinstance(message.get("id"), int | str) and len(str(message["id"])) <= 64:
            reply["id"] = message["id"]
        self.sink.send_message(reply)

    def parse(self, message):
        channels, symbols = message.get("channels"), message.get("symbols", [])
        if not isinstance(channels, list) or not channels or not all(isinstance(c, str) for c in channels):
            raise RequestError(ErrorCode.BAD_REQUEST, '"channels" is a list such as ["book", "trades"].')
        unknown = [c for c in channels if c not in CHANNELS]
        if unknown:
            raise RequestError(
                ErrorCode.UNKNOWN_CHANNEL, f"Unknown channel {unknown[0][:32]!r}; known: {', '.join(CHANNELS)}."
            )
        if not isinstance(symbols, list) or not all(isinstance(s, str) for s in symbols):
            raise RequestError(ErrorCode.BAD_REQUEST, '"symbols" is a list such as ["QTX-USD"].')
        channels = list(dict.fromkeys(channels))
        symbols = list(dict.fromkeys(symbols))
        if PUBLIC_CHANNELS.intersection(channels) and not symbols:
            raise RequestError(
                ErrorCode.BAD_REQUEST, 'The book, trades, ticker, candles and status channels need "symbols".'
            )
        if len(symbols) > MAX_SYMBOLS:
            raise RequestError(ErrorCode.BAD_REQUEST, f"At most {MAX_SYMBOLS} symbols.")
        bad = [s for s in symbols if not is_symbol(s)]
        if bad:
            raise RequestError(ErrorCode.UNKNOWN_SYMBOL, f"There is no market {bad[0][:24]!r}.")
        return channels, symbols

    def interval(self, message, channels, *, required=True):
        """The candle interval of a message that names the candles channel."""
        interval = message.get("interval")
        if "candles" not in channels or (interval is None and not required):
            return interval
        if interval not in INTERVALS:
            raise RequestError(
                ErrorCode.BAD_REQUEST, f'The candles channel needs "interval", one of: {", ".join(INTERVALS)}.'
            )
        return interval

    def followed(self) -> dict:
        """symbol -> MarketStream of every market this socket follows on some channel."""
        markets = self.sink.books | self.sink.trades | {market for market, _ in self.sink.stats}
        return {market.symbol: market for market in markets}

    async def markets(self, symbols):
        markets = []
        for symbol in symbols:
            try:
                market = await self.hub.market(symbol)
            except streams.StreamUnavailable:
                raise RequestError(ErrorCode.UNAVAILABLE, f"{symbol} can not be read right now; try again.") from None
            if market is None:
                raise RequestError(ErrorCode.UNKNOWN_SYMBOL, f"There is no market {symbol!r}.")
            markets.append(market)
        return markets

    async def on_subscribe(self, message):
        channels, symbols = self.parse(message)
        if "orders" in channels and self.user_id is None:
            raise RequestError(
                ErrorCode.AUTH_REQUIRED,
                'The orders channel needs a session, {"type": "auth", "token": "<access JWT>"} '
                'or {"type": "auth", "api_key": "<key>"} first.',
            )
        interval = self.interval(message, channels)
        markets = await self.markets(symbols if PUBLIC_CHANNELS.intersection(channels) else [])
        followed = set(self.followed()) | {m.symbol for m in markets}
        if len(followed) > MAX_SYMBOLS:
            raise RequestError(ErrorCode.BAD_REQUEST, f"A socket follows at most {MAX_SYMBOLS} markets.")
        reply = {"type": "subscribed", "channels": channels, "symbols": symbols}
        if interval is not None:
            reply["interval"] = interval
        self.sink.send_message(reply)
        for market in markets:
            if "trades" in channels:
                self.hub.subscribe_trades(self.sink, market)
            if "book" in channels:
                # Sent at once, or with the market's next update if one is being conflated.
                self.hub.subscribe_book(self.sink, market)
            if "ticker" in channels:
                self.hub.subscribe_stats(self.sink, market, streams.stats_key("ticker"))
            if "candles" in channels:
                self.hub.subscribe_stats(self.sink, market, streams.stats_key("candles", interval))
            if "status" in channels:
                self.hub.subscribe_stats(self.sink, market, streams.stats_key("status"))
        if "orders" in channels:
            self.hub.subscribe_private(self.sink, self.user_id)

    async def on_unsubscribe(self, message):
        channels, symbols = self.parse(message)
        # Without "interval", candles unsubscribes every interval of those markets.
        interval = self.interval(message, channels, required=False)
        by_symbol = self.followed()
        for symbol in symbols:
            market = by_symbol.get(symbol)
            if market is not None:
                if "book" in channels:
                    self.hub.unsubscribe_book(self.sink, market)
                if "trades" in channels:
                    self.hub.unsubscribe_trades(self.sink, market)
                for followed, key in list(self.sink.stats):
                    channel, _, key_interval = key.partition(":")
                    if followed is not market or channel not in channels:
                        continue
                    if channel != "candles" or interval in (None, key_interval):
                        self.hub.unsubscribe_stats(self.sink, market, key)
        if "orders" in channels:
            self.hub.unsubscribe_private(self.sink)
        reply = {"type": "unsubscribed", "channels": channels, "symbols": symbols}
        if interval is not None:
            reply["interval"] = interval
        self.sink.send_message(reply)

    async def on_auth(self, message):
        if "api_key" in message:
            return await self.on_auth_key(message)
        token = message.get("token")
        if not isinstance(token, str) or not token or len(token) > 2048:
            raise RequestError(
                ErrorCode.BAD_REQUEST, '"token" is an access JWT from POST /api/auth/login, or send "api_key" instead.'
            )
        try:
            user, validated = await database_sync_to_async(_user_for_token)(token)
        except LoginEnded as exc:
            raise RequestError(ErrorCode.AUTH_FAILED, f"The token was refused: {exc.detail}.") from None
        except (AuthenticationFailed, TokenError):
            raise RequestError(ErrorCode.AUTH_FAILED, "The token is not a valid access token.") from None
        self.authenticated(user.pk, user.get_username(), expires=validated.get("exp"), api_key=None, token=validated)

    async def on_auth_key(self, message):
        raw = message.get("api_key")
        if not isinstance(raw, str) or not raw:
            raise RequestError(ErrorCode.BAD_REQUEST, '"api_key" is a key from POST /api/keys.')
        try:
            key = await database_sync_to_async(keys.api_key_authenticate)(raw, self.client_address())
        except keys.KeyRefused as exc:
            raise RequestError(ErrorCode.AUTH_FAILED, exc.message) from None
        except keys.KeyAddressRefused as exc:
            raise RequestError(exc.code, exc.message) from None
        self.authenticated(key.user_id, key.user.get_username(), expires=None, api_key=key)

    def authenticated(self, user_id, username, *, expires, api_key, token=None):
        """The socket acts for `user_id` from now on (with `api_key`'s scopes, if one;
        `token` is the validated access token, if one)."""
        self.user_id = user_id
        self.api_key = api_key
        self.access_token = token
        # A token or key vouches from now on, not the session.
        if token is not None:
            self.watch_token(token)
        else:
            self.watch_key(api_key)
        self.sink.auth_expires = expires
        if self.sink.private_user is not None and self.sink.private_user != user_id:
            self.hub.subscribe_private(self.sink, user_id)
        reply = {"type": "authenticated", "user": {"id": user_id, "username": username}}
        if api_key is not None:
            reply["api_key"] = {"id": api_key.pk, "name": api_key.name, "scopes": list(api_key.scopes)}
        self.sink.send_message({**reply, **self.authenticated_details()})

    def authenticated_details(self) -> dict:
        """What a consumer that does more says about the socket in its "authenticated" answer."""
        return {}

    def watch_key(self, api_key):
        """While the socket is authenticated with `api_key`, check every KEY_CHECK_SECONDS
        that it is still usable: a key revoked (or its user deactivated) stops reaching the
        private channel within that time, as it answers 401 over REST at once."""
        if api_key is None:
            self.unwatch()
            return
        self.watch(lambda: keys.api_key_reread(api_key) is not None, self.key_revoked, "an API key", KEY_CHECK_SECONDS)

    async def key_revoked(self):
        self.deauthenticate()
        self.error(ErrorCode.API_KEY_INVALID, "The API key was revoked: this socket is no longer authenticated.")

    def watch_token(self, token):
        """While the socket is authenticated with an access token, check every
        TOKEN_CHECK_SECONDS that its login stands: once it ends (logout, signing out
        everywhere, a password change) or its user is disabled, the socket stops acting
        for the user, as the token answers 401 over REST."""
        self.watch(
            lambda: _token_login_stands(token),
            self.token_revoked,
            "an access token",
            TOKEN_CHECK_SECONDS,
            known=lambda: login_standing(token),
        )

    async def token_revoked(self):
        self.deauthenticate()
        self.error(
            ErrorCode.TOKEN_REVOKED,
            "The access token's login has ended (logged out, signed out everywhere or the password changed) "
            "or its account was disabled: this socket is no longer authenticated.",
        )

    async def session_ended(self):
        """The socket stays open for public data and acts for nobody any more."""
        if self.api_key is None:
            self.deauthenticate()
            self.error(
                ErrorCode.SESSION_ENDED, "The web session was signed out: this socket is no longer authenticated."
            )

    def deauthenticate(self):
        """The socket acts for nobody any more (its key was revoked, its token's login ended)."""
        self.user_id = self.api_key = self.access_token = None
        self.hub.unsubscribe_private(self.sink)
        self.watch_key(None)

    def client_address(self) -> str | None:
        """The peer's address, through NUM_PROXIES proxies as the REST API reads it."""
        peer = (self.scope.get("client") or [None])[0]
        forwarded = dict(self.scope.get("headers", [])).get(b"x-forwarded-for")
        return keys.client_address(peer, forwarded.decode("latin1") if forwarded is not None else None)


class LiveConsumer(StreamConsumer):
    """/ws/live/<symbol>/ (a market page), /ws/live/ (the overview) and /ws/live/me/ (any
    other page of a signed-in trader: only their private fragments and toasts).

    Browsers only (Origin checked by quantumtrades.core.websocket.OriginCheck); private
    fragments only when the socket's session is a user's. Pages send nothing.
    """

    async def connect(self):
        self.bucket = TokenBucket()
        if self.scope["url_route"]["kwargs"].get("private"):
            return await self.connect_private()
        symbol = self.scope["url_route"]["kwargs"].get("symbol")
        self.hub = await streams.get_hub()
        market = None
        if symbol is not None:
            try:
                market = await self.hub.market(symbol) if is_symbol(symbol) else None
            except streams.StreamUnavailable:
                return await self.close(code=CloseCode.TRY_AGAIN_LATER)
            if market is None:
                return await self.close()  # before accept: the handshake is refused (403)
        await self.accept()
        user_id = _session_user_id(self.scope)
        self.watch_session()
        self.sink = self.hub.attach(self, "page" if market is not None else "overview")
        try:
            if market is not None:
                await self.hub.attach_page(self.sink, market, user_id)
            else:
                await self.hub.attach_overview(self.sink, user_id)
        except Exception:
            log.exception("stream: could not start a page socket")
            await self.close(code=CloseCode.INTERNAL_ERROR)  # the page reconnects after a pause

    async def connect_private(self):
        user_id = _session_user_id(self.scope)
        if user_id is None:
            return await self.close()  # before accept: the handshake is refused (403)
        self.hub = await streams.get_hub()
        await self.accept()
        self.watch_session()
        self.sink = self.hub.attach(self, "private")
        try:
            await self.hub.attach_user_page(self.sink, user_id)
        except Exception:
            log.exception("stream: could not start a private page socket")
            await self.close(code=CloseCode.INTERNAL_ERROR)

    async def receive(self, text_data=None, bytes_data=None):
        # Pages send nothing: a socket that floods is closed for good.
        if not self.closed and not self.bucket.take():
            await self.close(code=CloseCode.RATE_LIMITED)
