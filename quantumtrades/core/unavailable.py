"""A database that went away costs the requests in flight a 503, never a 500 (README, "When Redis or PostgreSQL goes away").

A PostgreSQL restart, a failover or a connection killed by an operator reaches the code
as Django's OperationalError or InterfaceError, from whatever query was running. Nothing
was half-written (each command is one transaction, which the server rolled back), so the
honest answer is "try again": 503 with Retry-After, in the API's error shape under /api/
and as a plain page elsewhere. Every door uses this module: the API's exception handler
(quantumtrades.core.api), the middleware below for page views, and handler500 for failures
outside any view (a session saved as the response goes out).

Before answering, the process drops what the failure left behind: this thread's broken
connection, and the pool's idle connections that died with it (psycopg's pool hands out
an idle connection without testing it unless CONN_HEALTH_CHECKS asks it to), so the
next request works whatever the pool's health-check settings are.
"""

import logging

from django.db import InterfaceError, OperationalError, connections
from django.http import HttpResponse, JsonResponse
from django.template.loader import render_to_string
from django.utils.deprecation import MiddlewareMixin

from quantumtrades.core import replicas
from quantumtrades.core.errors import ErrorCode

log = logging.getLogger(__name__)

RETRY_AFTER_SECONDS = 1
CODE = ErrorCode.SERVICE_UNAVAILABLE
MESSAGE = "The database is unavailable for a moment; nothing was changed. Try again."


def is_unavailable(exc) -> bool:
    return isinstance(exc, OperationalError | InterfaceError)


# How many failures this process has seen: a connection that a request thread kept since
# before the latest is tested before that thread's next request (quantumtrades/core/handlers.py).
failures_seen = 0


def recover(exc) -> None:
    """Forget this thread's broken connections and have the pools test their idle ones."""
    global failures_seen
    failures_seen += 1
    log.warning("database unavailable (%s: %s); answering 503", exc.__class__.__name__, exc)
    for connection in connections.all(initialized_only=True):
        try:
            if connection.connection is not None and not connection.is_usable():
                connection.close()
                # A standby that failed a read is judged again before the next one.
                replicas.health.forget(connection.alias)
        except Exception:
            pass
        pool = connection.pool if connection.vendor == "postgresql" else None
        if pool is not None:
            try:
                pool.check()
            except Exception as check_failed:
                log.debug("database pool check failed: %s", check_failed)


def error_body() -> dict:
    return {"error": {"code": CODE, "message": MESSAGE, "field": None}}


def response_for(request) -> HttpResponse:
    if request.path.startswith("/api/"):
        response = JsonResponse(error_body(), status=503)
    else:
        # No request context: rendering the site's base template would ask the database
        # for the session's user again.
        response = HttpResponse(render_to_string("503.html"), status=503)
    response["Retry-After"] = str(RETRY_AFTER_SECONDS)
    return response


class DatabaseUnavailableMiddleware(MiddlewareMixin):
    """Page views (and anything else DRF does not handle) that lost the database: 503."""

    def process_exception(self, request, exception):
        if not is_unavailable(exception):
            return None
        recover(exception)
        return response_for(request)
