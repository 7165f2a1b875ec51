"""Every WebSocket path of the platform, gathered from the apps that serve them: orders'
/ws (market data and order entry, docs/API.md) and marketdata's page sockets (/ws/live/).

Any other path is refused at the handshake (403), as an unknown URL is a 404: channels'
router would raise, and daphne log a traceback, for each.
"""

from channels.security.websocket import WebsocketDenier
from django.urls import re_path

from marketdata.routing import websocket_urlpatterns as marketdata_patterns
from orders.routing import websocket_urlpatterns as orders_patterns

websocket_urlpatterns = [*orders_patterns, *marketdata_patterns, re_path(r"", WebsocketDenier.as_asgi())]
