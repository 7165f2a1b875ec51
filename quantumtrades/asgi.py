"""ASGI entry point, under either server (docs/OPERATIONS.md, "Processes"):
`uvicorn --loop uvloop --http httptools quantumtrades.asgi:application` serves HTTP in
production; `daphne quantumtrades.asgi:application` serves the WebSockets there, and
everything under `make run`."""

import functools
import gc
import os

import django
from twisted.web import http as twisted_http

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "quantumtrades.settings")
# Django must be set up before anything imports models (consumers, auth middleware).
django.setup(set_prefix=False)

from django.conf import settings  # noqa: E402

from quantumtrades.core.handlers import SyncASGIHandler  # noqa: E402

django_asgi_app = SyncASGIHandler(threads=settings.REQUEST_THREADS)

from channels.auth import AuthMiddlewareStack  # noqa: E402
from channels.routing import ProtocolTypeRouter, URLRouter  # noqa: E402

from quantumtrades.core.websocket import OriginCheck  # noqa: E402

from .routing import websocket_urlpatterns  # noqa: E402

application = ProtocolTypeRouter(
    {
        "http": django_asgi_app,
        "websocket": OriginCheck(AuthMiddlewareStack(URLRouter(websocket_urlpatterns))),
    }
)

if settings.SCHEDULER_ENABLED:
    # The venue's timers (auctions that end, dead man's switches, the orders of sockets
    # whose process died) run in every server process (quantumtrades.core.scheduler).
    from quantumtrades.core import scheduler

    scheduler.start()

if os.environ.get("SIMULATE_MARKET_RATE"):
    # The demo's market simulator inside this process. With the embedded in-memory channel
    # layer, events only reach sockets of the process that committed them, so a simulator
    # in a process of its own would move the books without anyone seeing it live.
    # (With Redis, `manage.py simulate_market` can run anywhere.)
    import threading

    from django.core.management import call_command

    threading.Thread(
        target=call_command,
        args=("simulate_market",),
        # Its metrics are this process's, at /metrics: no port of its own.
        kwargs={"rate": float(os.environ["SIMULATE_MARKET_RATE"]), "metrics_port": 0},
        name="simulate_market",
        daemon=True,
    ).start()

# A server process holds thousands of long-lived objects (sockets, their protocols, the
# hub's books). Full collections walk all of them and stall the live streams for 100-200 ms
# (docs/BENCHMARKS.md, "Live streams"): move what startup allocated out of the collector's reach, and
# make full collections rare. The young generation stays small, though: every API request
# leaves about a hundred objects in reference cycles (Django's and DRF's request, view and
# response point at each other), and a young collection stops the whole process for as
# long as it takes to walk them. Collected 50,000 at a time, that was 40-70 ms every few
# seconds under order load, in every request then in flight; 5,000 at a time, 2-6 ms
# (docs/BENCHMARKS.md, "Collector pauses").
gc.collect()
gc.freeze()
gc.set_threshold(5_000, 20, 100)

# The GIL's switch interval stays Python's default (5 ms). A shorter one, meant to hand the
# GIL back sooner to a thread that holds a book lock, only made more context switches per
# order and no more orders (docs/BENCHMARKS.md, "The switch interval, again").

# Twisted parses the Content-Type of every request with a body through the email package,
# to find the form bodies it would parse into its own `request.args`, which daphne never
# reads: 66 µs of every POST (docs/BENCHMARKS.md, "The API's middleware"). A process sees
# a handful of distinct Content-Types; the answers are remembered, a bounded number of them.
# (Patched under uvicorn too, where it is never called: one import of Twisted.)
if not hasattr(twisted_http._parseContentType, "cache_info"):
    twisted_http._parseContentType = functools.lru_cache(maxsize=64)(twisted_http._parseContentType)
