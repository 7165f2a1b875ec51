import asyncio
import logging
import sys

from asgiref.sync import sync_to_async
from channels.layers import get_channel_layer
from django.conf import settings
from django.db import connection
from django.http import HttpResponse, JsonResponse
from django.views import defaults
from prometheus_client import REGISTRY, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_PLAIN_0_0_4

from marketdata.streams import open_sockets
from quantumtrades.core import metrics as qt_metrics
from quantumtrades.core import unavailable
from quantumtrades.core.errors import ErrorCode, error_body

log = logging.getLogger(__name__)

# How long the channel layer may take to hand a message back before it counts as down.
CHANNEL_LAYER_TIMEOUT = 2.0


def _check_database():
    with connection.cursor() as cursor:
        cursor.execute("SELECT 1")
        cursor.fetchone()


def _check_cache() -> bool:
    """Ping the shared cache's Redis; False when the cache is not on Redis.

    Requests never notice a Redis cache that is down (it counts in this process's memory
    meanwhile: quantumtrades/core/cache.py), so this is where an operator learns of it.
    """
    if "redis" not in settings.CACHES["default"]["BACKEND"].lower():
        return False
    from django_redis import get_redis_connection

    get_redis_connection("default").ping()
    return True


async def _check_channel_layer():
    """Publish one message to a group nobody joins: proves the layer's server answers.

    (A send/receive round trip would leave a subscription behind per call on the
    Redis layers, which only clean up when a receive is cancelled.)
    """
    await get_channel_layer().group_send("healthz", {"type": "healthz.ping"})


async def healthz(request):
    """200 when the database, the channel layer and (on Redis) the cache answer, 503 naming
    what is down; with the number of sockets this process holds open."""
    checks = {}
    try:
        await sync_to_async(_check_database, thread_sensitive=True)()
        checks["database"] = "ok"
    except Exception as exc:
        log.warning("healthz: database check failed: %s", exc)
        checks["database"] = f"error: {exc.__class__.__name__}"
    try:
        if await asyncio.wait_for(sync_to_async(_check_cache, thread_sensitive=False)(), CHANNEL_LAYER_TIMEOUT):
            checks["cache"] = "ok"
    except Exception as exc:
        checks["cache"] = f"error: {exc.__class__.__name__}"
    try:
        await asyncio.wait_for(_check_channel_layer(), timeout=CHANNEL_LAYER_TIMEOUT)
        checks["channel_layer"] = "ok"
    except Exception as exc:
        # Not logged: a balancer asks every few seconds, and the streams already said
        # once that the layer went away (quantumtrades.core.streams.layer_health).
        checks["channel_layer"] = f"error: {exc.__class__.__name__}"
    healthy = all(value == "ok" for value in checks.values())
    body = {"status": "ok" if healthy else "degraded", **checks, "sockets": open_sockets()}
    response = JsonResponse(body, status=200 if healthy else 503)
    # Django logs every 5xx as an ERROR; this 503 is the answer asked for, not a failure.
    response._has_been_logged = True
    return response


# How long a scrape waits for each dependency's check: Prometheus's own timeout is longer.
METRICS_CHECK_TIMEOUT = 1.0


async def _dependency_up(name, check) -> None:
    try:
        present = await asyncio.wait_for(check(), METRICS_CHECK_TIMEOUT)
    except Exception:
        qt_metrics.DEPENDENCY_UP.labels(name).set(0)
        return
    if present is not False:  # False: not used by this process (the cache off Redis)
        qt_metrics.DEPENDENCY_UP.labels(name).set(1)


def _pool_stats() -> None:
    pool = getattr(connection, "pool", None)
    if pool is None:
        return
    stats = pool.get_stats()
    gauge = qt_metrics.DB_POOL
    gauge.labels("size").set(stats.get("pool_size", 0))
    gauge.labels("available").set(stats.get("pool_available", 0))
    gauge.labels("max").set(stats.get("pool_max", pool.max_size))
    gauge.labels("waiting").set(stats.get("requests_waiting", 0))


async def metrics(request):
    """This process's Prometheus metrics (quantumtrades/core/metrics.py), to the addresses
    in METRICS_ALLOWED_IPS or with METRICS_TOKEN as a bearer; 404 to anyone else, 403 for
    a wrong token. PostgreSQL's and Redis's health are checked as /healthz checks them,
    each bounded by METRICS_CHECK_TIMEOUT."""
    verdict = qt_metrics.allowed(request.META.get("REMOTE_ADDR", ""), request.headers.get("Authorization", ""))
    if verdict is None:
        return JsonResponse(error_body(ErrorCode.NOT_FOUND, "Not found."), status=404)
    if not verdict:
        return JsonResponse(error_body(ErrorCode.PERMISSION_DENIED, "Not allowed to read the metrics."), status=403)
    await asyncio.gather(
        _dependency_up("database", sync_to_async(_check_database, thread_sensitive=True)),
        _dependency_up("redis", sync_to_async(_check_cache, thread_sensitive=False)),
        _dependency_up("channel_layer", _check_channel_layer),
    )
    await sync_to_async(_pool_stats, thread_sensitive=True)()
    return HttpResponse(generate_latest(REGISTRY), content_type=CONTENT_TYPE_PLAIN_0_0_4)


def server_error(request):
    """handler500: the API's error shape under /api/, Django's page everywhere else; a
    lost database (outside any view: a session saved on the way out) is a 503."""
    exc = sys.exc_info()[1]  # Django calls handler500 while handling the exception
    if exc is not None and unavailable.is_unavailable(exc):
        unavailable.recover(exc)
        return unavailable.response_for(request)
    if request.path.startswith("/api/"):
        body = {
            "error": {"code": ErrorCode.INTERNAL_ERROR, "message": "Something went wrong on our side.", "field": None}
        }
        return JsonResponse(body, status=500)
    return defaults.server_error(request)
