"""Every WebSocket path of the platform, gathered from the apps that serve them."""

from marketdata.routing import websocket_urlpatterns as marketdata_patterns

websocket_urlpatterns = [*marketdata_patterns]
