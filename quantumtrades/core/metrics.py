"""This process's Prometheus metrics: what they are, and the few helpers that feed them.

Every server process keeps its own (prometheus_client's default registry) and serves them:
daphne at `/metrics` (`quantumtrades.views.metrics`, guarded by `allowed`), the FIX gateway
and the market simulator on a port of their own (`serve`, METRICS_PORT). Prometheus scrapes
each process on its own, so nothing is shared between processes and no multiprocess
directory is needed. The names and labels are documented in docs/ARCHITECTURE.md, "Metrics".

The hot paths pay a counter increment or a histogram observation each (about half a
microsecond), never a query or a lock of their own; what can be read when scraped (sockets,
subscriptions, the database pool, the health of PostgreSQL and Redis) is read then.
Stream deliveries, one per socket per frame, are counted in plain integers (`HotCounter`)
and read when scraped. With METRICS_ENABLED off nothing is recorded (the benchmarks' "without").
"""

import hmac
import ipaddress
import logging
import time
from functools import cache

from django.conf import settings
from django.db import transaction
from prometheus_client import REGISTRY, Counter, Gauge, Histogram, disable_created_metrics, start_http_server
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily

log = logging.getLogger(__name__)

# A `_created` series beside every counter only doubles what each scrape carries.
disable_created_metrics()

ENABLED = getattr(settings, "METRICS_ENABLED", True)

# Seconds: from a fast API answer to a slow page, and an engine command under a busy book lock.
LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0)
ENGINE_BUCKETS = (0.0005, 0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5)

# --- HTTP ------------------------------------------------------------------------------

HTTP_REQUESTS = Counter(
    "qt_http_requests", "HTTP requests answered, by URL pattern, method and status.", ["route", "method", "status"]
)
HTTP_LATENCY = Histogram(
    "qt_http_request_duration_seconds",
    "Time from the request reaching Django to its response, by URL pattern and method.",
    ["route", "method"],
    buckets=LATENCY_BUCKETS,
)

# --- Orders and the engine -------------------------------------------------------------

ORDERS = Counter(
    "qt_orders",
    "Orders placed or refused at orders.services.order_place, by source, type and result "
    "(accepted, or the error code).",
    ["source", "type", "result"],
)
ENGINE_COMMAND = Histogram(
    "qt_engine_command_seconds",
    "An engine command from its arrival in its market's queue to its outcome (commit included).",
    ["command"],
    buckets=ENGINE_BUCKETS,
)
ENGINE_LOCK_WAIT = Histogram(
    "qt_engine_book_lock_wait_seconds",
    "How long an engine command waited for its market's book before running.",
    ["command"],
    buckets=ENGINE_BUCKETS,
)
ENGINE_GROUP = Histogram(
    "qt_engine_group_size",
    "Commands sharing one transaction on a market (orders.engine.transactions).",
    buckets=(1, 2, 4, 8, 16, 32),
)
TRADES = Counter("qt_trades", "Trades committed, by market.", ["market"])
AUCTIONS = Counter("qt_auctions", "Call auctions begun (a circuit breaker, a resume), by market.", ["market"])
OPERATOR_ACTIONS = Counter(
    "qt_operator_actions",
    "Audited operator actions, by kind (trading_disabled is the kill switch) and market; a circuit "
    "breaker's trip, the venue's own action, is kind circuit_breaker.",
    ["kind", "market"],
)

# --- Streams ---------------------------------------------------------------------------

STREAM_LAG = Histogram(
    "qt_stream_publish_lag_seconds",
    "From a command's commit to its events reaching this process's hub (across Redis).",
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0),
)
STREAM_BATCHES_DROPPED = Counter(
    "qt_stream_batches_dropped",
    "Batches of events the publisher could not send (queue_full, layer_down); the streams resync.",
    ["reason"],
)

# --- Dependencies, read when scraped ---------------------------------------------------

DEPENDENCY_UP = Gauge(
    "qt_dependency_up", "1 if the dependency answered this scrape's check (as /healthz checks it).", ["dependency"]
)
DB_POOL = Gauge(
    "qt_db_pool_connections",
    "The PostgreSQL connection pool of this process: size, available, max, waiting (requests).",
    ["state"],
)


class HotCounter:
    """Counts in plain integers, read when scraped: for a path run once per socket per frame,
    where even prometheus_client's locked increment would show."""

    def __init__(self, name: str, documentation: str, labels: tuple[str, ...]):
        self.name, self.documentation, self.labels = name, documentation, labels
        self.counts: dict[tuple, int] = {}
        if not ENABLED:
            self.inc = lambda *values: None

    def inc(self, *values) -> None:
        # Counted by the event loop's thread; the scrape reads a copy.
        counts = self.counts
        counts[values] = counts.get(values, 0) + 1

    def collect(self):
        family = CounterMetricFamily(self.name, self.documentation, labels=self.labels)
        for values, count in dict(self.counts).items():
            family.add_metric(values, count)
        return [family]


STREAM_DELIVERIES = HotCounter("qt_stream_deliveries", "Frames queued to sockets, by socket kind.", ("kind",))
STREAM_DROPS = HotCounter(
    "qt_stream_drops",
    "Frames not sent to a socket, by socket kind and reason (behind: conflated while it catches up; "
    "overflow: too far behind, closed; closing).",
    ("kind", "reason"),
)


class SocketsCollector:
    """Open sockets and their subscriptions, counted from this process's hubs when scraped."""

    def collect(self):
        from quantumtrades.core.streams import publishing  # the streams import this module

        sockets = GaugeMetricFamily("qt_websockets_open", "Open WebSockets of this process, by kind.", labels=["kind"])
        subscriptions = GaugeMetricFamily(
            "qt_websocket_subscriptions", "Channels subscribed by this process's sockets.", labels=["channel"]
        )
        kinds = dict.fromkeys(("api", "page", "overview", "private"), 0)
        channels = dict.fromkeys(("book", "trades", "stats", "orders"), 0)
        with publishing.hubs_lock:
            hubs = list(publishing.hubs.values())
        for hub in hubs:
            if hub.stopped:
                continue
            for _ in range(3):  # the hub's loop may change its sockets meanwhile
                try:
                    sinks = list(hub.sinks)
                    break
                except RuntimeError:
                    sinks = []
            for sink in sinks:
                kinds[sink.kind] = kinds.get(sink.kind, 0) + 1
                channels["book"] += len(sink.books)
                channels["trades"] += len(sink.trades)
                channels["stats"] += len(sink.stats)
                channels["orders"] += sink.private_user is not None
        for kind, count in kinds.items():
            sockets.add_metric([kind], count)
        for channel, count in channels.items():
            subscriptions.add_metric([channel], count)
        return [sockets, subscriptions]


for _collector in (STREAM_DELIVERIES, STREAM_DROPS, SocketsCollector()):
    REGISTRY.register(_collector)


# --- Helpers for the code that records -------------------------------------------------


@cache
def command_timers(command: str):
    """The (latency, lock wait) histograms of one engine command, resolved once."""
    return ENGINE_COMMAND.labels(command), ENGINE_LOCK_WAIT.labels(command)


def count_on_commit(counter, *labels) -> None:
    """Count once the caller's transaction commits (nothing, if it rolls back)."""
    if ENABLED:
        transaction.on_commit(counter.labels(*labels).inc)


_STATIC_PREFIX = "/" + settings.STATIC_URL.lstrip("/")


class HttpMetricsMiddleware:
    """Counts and times every request by its URL pattern (never the raw path: one series per
    route, whatever ids it carries) and status. Static files count as `static`, any other
    unresolved path as `unmatched`."""

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        if not ENABLED:
            return self.get_response(request)
        started = time.perf_counter()
        response = self.get_response(request)
        match = request.resolver_match
        if match is not None:
            route = match.route or match.view_name
        else:  # static files (answered before any URL is resolved), or a 404
            route = "static" if request.path.startswith(_STATIC_PREFIX) else "unmatched"
        method = request.method if request.method in _METHODS else "other"
        latency, requests = _http_series(route, method, response.status_code)
        latency.observe(time.perf_counter() - started)
        requests.inc()
        return response


# Any other method a client sends is "other": a client's words never name a series.
_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})


@cache
def _http_series(route: str, method: str, status: int):
    """One request's two series, resolved once: label lookups were most of the cost."""
    return HTTP_LATENCY.labels(route, method), HTTP_REQUESTS.labels(route, method, status)


# --- Serving ---------------------------------------------------------------------------


@cache
def _allowed_networks(items: tuple[str, ...]) -> tuple:
    networks = []
    for item in items:
        try:
            networks.append(ipaddress.ip_network(item.strip(), strict=False))
        except ValueError:
            log.warning("METRICS_ALLOWED_IPS: %r is not an address or a network; ignored", item)
    return tuple(networks)


def allowed(remote_addr: str, authorization: str) -> bool | None:
    """Whether a scrape may read the metrics: True from an address in METRICS_ALLOWED_IPS
    or with `Bearer <METRICS_TOKEN>`; False for a wrong token; None for anyone else."""
    token = settings.METRICS_TOKEN
    scheme, _, given = (authorization or "").partition(" ")
    if token and scheme.lower() == "bearer" and given:
        return hmac.compare_digest(given.strip().encode(), token.encode())
    try:
        address = ipaddress.ip_address(remote_addr)
    except ValueError:
        return None
    if any(address in network for network in _allowed_networks(tuple(settings.METRICS_ALLOWED_IPS))):
        return True
    return False if given else None


def serve(port: int | None = None):
    """Serve this process's metrics on their own port (METRICS_PORT): for the processes
    that are not web servers (the FIX gateway, the market simulator). The port has no
    guard: it must be reachable from the private network only (docker-compose.yml does
    not publish it)."""
    port = port if port is not None else settings.METRICS_PORT
    if not port:
        return None
    server, thread = start_http_server(port, addr=settings.METRICS_ADDR)
    log.info("metrics on %s:%d", settings.METRICS_ADDR, port)
    return server
