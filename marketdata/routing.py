from django.urls import path

from . import consumers

websocket_urlpatterns = [
    # Integrators' JSON (DESIGN section 5).
    path("ws", consumers.MarketDataConsumer.as_asgi()),
    path("ws/", consumers.MarketDataConsumer.as_asgi()),
    # Pages (htmx ws extension): one market's fragments, or the markets overview.
    path("ws/live/", consumers.LiveConsumer.as_asgi()),
    # Any other page of a signed-in trader: their private fragments and toasts only.
    path("ws/live/me/", consumers.LiveConsumer.as_asgi(), {"private": True}),
    path("ws/live/<str:symbol>/", consumers.LiveConsumer.as_asgi()),
]
