"""Errors that services raise and every door (API, pages, WebSocket) reports the same way.

Each carries a stable machine code (`ErrorCode`, the one list of them), a sentence for
people, the input field it concerns (if any) and the HTTP status the REST API answers
with. docs/API.md ("Errors", and the socket's codes in "WebSocket") documents every code
here, and a test holds the two lists equal.
"""

from enum import StrEnum


class ErrorCode(StrEnum):
    """Every `code` an error can carry, on REST, /ws and the pages' API calls."""

    # 400: bad input
    INVALID = "INVALID"  # malformed, or against the market's rules
    INSUFFICIENT_FUNDS = "INSUFFICIENT_FUNDS"
    PARSE_ERROR = "PARSE_ERROR"  # a body that is not JSON
    PRICE_OUT_OF_BAND = "PRICE_OUT_OF_BAND"  # a limit price outside the market's price band
    ORDER_TOO_LARGE = "ORDER_TOO_LARGE"  # past the market's max_order_quantity or max_order_notional
    # 401: who are you
    NOT_AUTHENTICATED = "NOT_AUTHENTICATED"
    TOKEN_INVALID = "TOKEN_INVALID"
    API_KEY_INVALID = "API_KEY_INVALID"
    INVALID_CREDENTIALS = "INVALID_CREDENTIALS"
    OTP_REQUIRED = "OTP_REQUIRED"
    OTP_INVALID = "OTP_INVALID"
    # 403: not allowed
    PERMISSION_DENIED = "PERMISSION_DENIED"
    ADDRESS_NOT_ALLOWED = "ADDRESS_NOT_ALLOWED"
    TWO_FACTOR_REQUIRED = "TWO_FACTOR_REQUIRED"
    TRADING_DISABLED = "TRADING_DISABLED"  # the user's kill switch is on
    # 404, 405, 406
    NOT_FOUND = "NOT_FOUND"
    METHOD_NOT_ALLOWED = "METHOD_NOT_ALLOWED"
    NOT_ACCEPTABLE = "NOT_ACCEPTABLE"
    # 409: the state does not allow it
    ORDER_NOT_OPEN = "ORDER_NOT_OPEN"
    MARKET_HALTED = "MARKET_HALTED"
    POST_ONLY_WOULD_TAKE = "POST_ONLY_WOULD_TAKE"
    STOP_TRIGGERED = "STOP_TRIGGERED"
    TOO_MANY_OPEN_ORDERS = "TOO_MANY_OPEN_ORDERS"
    MARKET_IN_AUCTION = "MARKET_IN_AUCTION"  # market, IOC and FOK orders wait for continuous trading
    USERNAME_TAKEN = "USERNAME_TAKEN"
    # 413, 415
    PAYLOAD_TOO_LARGE = "PAYLOAD_TOO_LARGE"
    UNSUPPORTED_MEDIA_TYPE = "UNSUPPORTED_MEDIA_TYPE"
    # 429: slow down
    THROTTLED = "THROTTLED"
    LOGIN_LOCKED = "LOGIN_LOCKED"
    OTP_THROTTLED = "OTP_THROTTLED"
    # 5xx: ours
    INTERNAL_ERROR = "INTERNAL_ERROR"
    SERVICE_UNAVAILABLE = "SERVICE_UNAVAILABLE"
    # /ws only: the socket's own refusals and notices
    BAD_MESSAGE = "BAD_MESSAGE"
    BAD_JSON = "BAD_JSON"
    MESSAGE_TOO_LARGE = "MESSAGE_TOO_LARGE"
    UNKNOWN_TYPE = "UNKNOWN_TYPE"
    BAD_REQUEST = "BAD_REQUEST"
    UNKNOWN_CHANNEL = "UNKNOWN_CHANNEL"
    UNKNOWN_SYMBOL = "UNKNOWN_SYMBOL"
    UNAVAILABLE = "UNAVAILABLE"
    AUTH_REQUIRED = "AUTH_REQUIRED"
    AUTH_FAILED = "AUTH_FAILED"
    AUTH_EXPIRED = "AUTH_EXPIRED"
    SESSION_ENDED = "SESSION_ENDED"
    TOKEN_REVOKED = "TOKEN_REVOKED"
    RATE_LIMITED = "RATE_LIMITED"
    STREAM_INTERRUPTED = "STREAM_INTERRUPTED"
    SLOW_CONSUMER = "SLOW_CONSUMER"


class ServiceError(Exception):
    status = 400
    code = ErrorCode.INVALID

    def __init__(self, message, *, field=None, code=None):
        super().__init__(message)
        self.message = message
        self.field = field
        if code:
            self.code = code

    def as_dict(self):
        return {"code": self.code, "message": self.message, "field": self.field}


class InvalidInput(ServiceError):
    """The command is malformed or breaks a trading rule; nothing was changed."""

    code = ErrorCode.INVALID


class InsufficientFunds(ServiceError):
    code = ErrorCode.INSUFFICIENT_FUNDS


class NotFound(ServiceError):
    status = 404
    code = ErrorCode.NOT_FOUND


class TradingDisabled(ServiceError):
    """An operator has switched the user's trading off (the kill switch)."""

    status = 403
    code = ErrorCode.TRADING_DISABLED


class Conflict(ServiceError):
    """The command is well formed but the state does not allow it (order closed, market
    halted): each names its own code."""

    status = 409

    def __init__(self, message, *, code: ErrorCode, field=None):
        super().__init__(message, field=field, code=code)


def error_body(code, message, field=None) -> dict:
    """The one error shape every HTTP answer uses: {"error": {"code", "message", "field"}}."""
    # str(): an ErrorCode as the plain text every renderer (JSON, the schema's YAML) writes.
    return {"error": {"code": str(code), "message": message, "field": field}}
