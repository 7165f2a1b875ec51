"""Every WebSocket path of the platform, gathered from the apps that serve them: orders'
/ws (market data and order entry, docs/API.md) and marketdata's page sockets (/ws/live/)."""

from marketdata.routing import websocket_urlpatterns as marketdata_patterns
from orders.routing import websocket_urlpatterns as orders_patterns

websocket_urlpatterns = [*orders_patterns, *marketdata_patterns]
