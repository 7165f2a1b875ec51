"""Every WebSocket path of the platform, gathered from the apps that serve them.

The first pattern that matches wins: orders' /ws (market data plus order entry) stands in
front of marketdata's, which serves the same protocol without order entry. Any other path
is refused at the handshake (403), as an unknown URL is a 404: channels' router would raise,
and daphne log a traceback, for each.
"""

from channels.security.websocket import WebsocketDenier
from django.urls import re_path

from marketdata.routing import websocket_urlpatterns as marketdata_patterns
from orders.routing import websocket_urlpatterns as orders_patterns

websocket_urlpatterns = [*orders_patterns, *marketdata_patterns, re_path(r"", WebsocketDenier.as_asgi())]
