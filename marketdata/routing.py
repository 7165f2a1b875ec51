from django.urls import path

from . import consumers

# /ws, the integrators' JSON socket, is routed by orders (market data and order entry on
# one socket: orders.consumers.TradingConsumer extends consumers.MarketDataConsumer).
websocket_urlpatterns = [
    # Pages (htmx ws extension): one market's fragments, or the markets overview.
    path("ws/live/", consumers.LiveConsumer.as_asgi()),
    # Any other page of a signed-in trader: their private fragments and toasts only.
    path("ws/live/me/", consumers.LiveConsumer.as_asgi(), {"private": True}),
    path("ws/live/<str:symbol>/", consumers.LiveConsumer.as_asgi()),
]
