"""ASGI entry point: `daphne quantumtrades.asgi:application`."""

import gc
import os
import sys

import django

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
        kwargs={"rate": float(os.environ["SIMULATE_MARKET_RATE"])},
        name="simulate_market",
        daemon=True,
    ).start()

# A server process holds thousands of long-lived objects (sockets, their protocols, the
# hub's books). Full collections walk all of them and stall the live streams for 100-200 ms
# (shared/bench/README.md): move what startup allocated out of the collector's reach and
# collect the young generation less often, which makes full collections rare.
gc.collect()
gc.freeze()
gc.set_threshold(50_000, 20, 100)

# The request threads, the event loop and the streams' threads share one GIL. A thread that
# holds a market's book lock and wants the GIL back would wait up to the default switch
# interval (5 ms) behind a thread parsing the next request, and every command on that
# market waits with it (docs/BENCHMARKS.md, "Matching engine"). 0.2 ms keeps the lock moving.
sys.setswitchinterval(0.0002)
