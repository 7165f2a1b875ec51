from django.urls import path

from . import consumers

websocket_urlpatterns = [
    # Integrators' JSON (docs/API.md, "WebSocket"): market data and order entry on one socket.
    path("ws", consumers.TradingConsumer.as_asgi()),
    path("ws/", consumers.TradingConsumer.as_asgi()),
]
