"""Log lines that say which request they belong to (docs/OPERATIONS.md, "Logs").

Every HTTP request carries an id: the client's `X-Request-ID`, cleaned (`request_id_clean`),
or a new one; `RequestIdMiddleware` echoes it in the answer's `X-Request-ID` and keeps it, with
the request's user, in a context variable for as long as the request runs. A `/ws` socket does
the same per message it handles (`SocketMessages`, `context_set`). Whatever logs meanwhile (a view, the
engine, a stream) logs with that id, because `LogContextFilter` copies it onto each record the
handlers write, and `JsonFormatter` (`LOG_FORMAT=json`) writes each record as one JSON object
per line: time, level, logger, message, and, when known, request_id, user, order, market
and status.

A log call names an order or a market with `extra={"order": ..., "market": ...}`. The context
costs nothing until a record is written: the filter sits on the handlers, so a call below the
logger's level never reaches it.
"""

import contextvars
import json
import logging
import re
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime

from django.utils.functional import SimpleLazyObject, empty

REQUEST_ID_HEADER = "X-Request-ID"
# Long enough for a UUID with a prefix, a trace id or a proxy's own format; the rest is cut.
REQUEST_ID_MAX = 64
# What an id may hold: the characters of UUIDs, trace ids and base64. Anything else (spaces,
# quotes, newlines that would forge a log line or a header) is dropped.
_NOT_ID = re.compile(r"[^A-Za-z0-9._:/+=@-]")

# The fields a JSON line carries beside time, level, logger and message, when the record has
# them (`status`: the answer's, on django.request's lines about 4xx and 5xx answers).
CONTEXT_FIELDS = ("request_id", "user", "order", "market", "status")


@dataclass
class LogContext:
    request_id: str
    user: int | None = None
    # The HTTP request, whose user is known only once a view authenticated it (DRF does it
    # in the view, after every middleware ran).
    request: object = None

    def user_id(self) -> int | None:
        if self.user is not None:
            return self.user
        user = getattr(self.request, "user", None)
        # Only a user someone already looked up: logging never runs a query, and a lazy
        # session user that nothing touched stays lazy.
        if user is None or (isinstance(user, SimpleLazyObject) and user._wrapped is empty):
            return None
        return user.pk if user.is_authenticated else None


_context: contextvars.ContextVar[LogContext | None] = contextvars.ContextVar("log_context", default=None)


def order_of(order) -> dict:
    """`extra` for a log line about `order`: its id and its market's symbol (the market's id
    when the order was read without its market: no query to log)."""
    market = order._state.fields_cache.get("market")
    return {"order": order.pk, "market": market.symbol if market is not None else order.market_id}


def request_id_new() -> str:
    return uuid.uuid4().hex


def request_id_clean(text: str | None) -> str | None:
    """The id a client sent, as it may be logged and echoed; None when nothing usable is left."""
    if not text:
        return None
    return _NOT_ID.sub("", text[: REQUEST_ID_MAX * 4])[:REQUEST_ID_MAX] or None


def request_id_of_scope(scope: dict) -> str:
    """The id of an ASGI connection that never reaches the middleware (a socket's handshake,
    a body refused before it was read)."""
    sent = dict(scope.get("headers") or ()).get(b"x-request-id", b"")
    return request_id_clean(sent.decode("latin-1")) or request_id_new()


def context_set(context: LogContext | None) -> contextvars.Token:
    """The request or socket message the code that runs next in this context works for."""
    return _context.set(context)


class RequestIdMiddleware:
    """The request's id: taken from `X-Request-ID` or made, kept for its log lines, echoed
    in the answer. First in MIDDLEWARE, so every answer carries it, a redirect included."""

    sync_capable = True
    async_capable = False

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        request_id = request_id_clean(request.headers.get(REQUEST_ID_HEADER)) or request_id_new()
        request.request_id = request_id
        token = _context.set(LogContext(request_id=request_id, request=request))
        try:
            response = self.get_response(request)
        finally:
            _context.reset(token)
        response[REQUEST_ID_HEADER] = request_id
        return response


class SocketMessages:
    """The ids of one socket's messages: the handshake's id (its `X-Request-ID`, or a new
    one), then `<that id>.<n>` for its n-th message, so one grep finds a socket's lines."""

    def __init__(self, scope: dict):
        self.socket_id = request_id_of_scope(scope)
        self.count = 0

    def next(self, user: int | None) -> LogContext:
        self.count += 1
        return LogContext(request_id=f"{self.socket_id}.{self.count}", user=user)


class LogContextFilter(logging.Filter):
    """Puts the running request's id and user on each record a handler writes, unless the
    call named its own (`extra`)."""

    def filter(self, record: logging.LogRecord) -> bool:
        context = _context.get()
        request = getattr(record, "request", None)
        if context is None and getattr(request, "request_id", None) is not None:
            # django.request logs a 4xx or 5xx answer once the middleware has returned it,
            # with the request beside the record.
            context = LogContext(request_id=request.request_id, request=request)
        if getattr(record, "status", None) is None and isinstance(getattr(record, "status_code", None), int):
            record.status = record.status_code
        if context is not None:
            if getattr(record, "request_id", None) is None:
                record.request_id = context.request_id
            if getattr(record, "user", None) is None:
                user = context.user_id()
                if user is not None:
                    record.user = user
        return True


class JsonFormatter(logging.Formatter):
    """One JSON object per line, for log shippers (LOG_FORMAT=json)."""

    def format(self, record: logging.LogRecord) -> str:
        entry = {
            "time": datetime.fromtimestamp(record.created, tz=UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        for name in CONTEXT_FIELDS:
            value = getattr(record, name, None)
            if value is not None:
                entry[name] = value if isinstance(value, int | str) else str(value)
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        if record.stack_info:
            entry["stack"] = self.formatStack(record.stack_info)
        return json.dumps(entry, ensure_ascii=False, default=str)
