from django.urls import path

from . import consumers

websocket_urlpatterns = [
    # Integrators' JSON (DESIGN section 5): market data and order entry on one socket.
    path("ws", consumers.TradingConsumer.as_asgi()),
    path("ws/", consumers.TradingConsumer.as_asgi()),
]
