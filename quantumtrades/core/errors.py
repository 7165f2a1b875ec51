"""Errors that services raise and every door (API, pages, WebSocket) reports the same way.

Each carries a stable machine code, a sentence for people, the input field it concerns
(if any) and the HTTP status the REST API answers with (docs/API.md, "Errors").
"""


class ServiceError(Exception):
    status = 400
    code = "BAD_REQUEST"

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

    code = "INVALID"


class InsufficientFunds(ServiceError):
    code = "INSUFFICIENT_FUNDS"


class NotFound(ServiceError):
    status = 404
    code = "NOT_FOUND"


class Conflict(ServiceError):
    """The command is well formed but the state does not allow it (order closed, market halted)."""

    status = 409
    code = "CONFLICT"


def error_body(code, message, field=None) -> dict:
    """The one error shape every HTTP answer uses: {"error": {"code", "message", "field"}}."""
    return {"error": {"code": code, "message": message, "field": field}}
