"""What every socket path shares: the origin check and the codes the server closes with."""

from enum import IntEnum
from urllib.parse import urlparse

from channels.security.websocket import OriginValidator, WebsocketDenier
from django.conf import settings


class CloseCode(IntEnum):
    """Why the server closed a socket (docs/API.md, "Close codes").

    A server may only send 1000 or a code from 3000 to 4999 (RFC 6455, 7.4.2): daphne's
    WebSocket protocol raises on anything else, and the client then sees 1011 after a
    traceback in the server's log. So the platform's reasons are 4000 plus the RFC's code
    for the same reason where one exists. Pages reconnect after RESTART, INTERNAL_ERROR
    and TRY_AGAIN_LATER (static/js/app.js) and stay closed after the others.
    """

    SESSION_ENDED = 4001  # the web session was signed out: the page's next request logs in
    RATE_LIMITED = 4008  # the client kept sending faster than the socket's limit
    INTERNAL_ERROR = 4011  # the server could not start the stream
    RESTART = 4012  # the stream restarts: reconnect at once
    TRY_AGAIN_LATER = 4013  # too far behind, or a market that cannot be read right now


class OriginCheck(OriginValidator):
    """Refuse a WebSocket whose Origin is not one of ALLOWED_HOSTS.

    Browsers always send Origin on a WebSocket handshake, so a foreign page can never
    ride a trader's session cookie. A handshake without Origin comes from a program
    (an integrator's bot); channels' stock validator refuses those, this one lets them in
    without the cookie header, so they authenticate with their own access token.
    """

    def __init__(self, application):
        super().__init__(application, allowed_origins=None)

    @property
    def allowed_origins(self):
        # Read per connection, so tests that override ALLOWED_HOSTS see their value.
        return settings.ALLOWED_HOSTS

    @allowed_origins.setter
    def allowed_origins(self, value):
        pass

    async def __call__(self, scope, receive, send):
        # The server's own send, before any middleware wraps it: the live streams write
        # pre-rendered frames through it (quantumtrades.core.streams.daphne).
        scope = {**scope, "server_send": send}
        origin = dict(scope.get("headers", [])).get(b"origin")
        if origin is None:
            headers = [(name, value) for name, value in scope.get("headers", []) if name != b"cookie"]
            return await self.application({**scope, "headers": headers}, receive, send)
        try:
            parsed = urlparse(origin.decode("latin1"))
        except UnicodeDecodeError:
            parsed = None
        if parsed is not None and self.valid_origin(parsed):
            return await self.application(scope, receive, send)
        return await WebsocketDenier()(scope, receive, send)
