from django.apps import AppConfig


class OrdersConfig(AppConfig):
    name = "orders"

    def ready(self):
        from quantumtrades.core import streams
        from quantumtrades.core.events import subscribe

        from . import auctions, live

        # Traders' open orders, fills and balances follow the engine's events on their pages,
        # and a page socket that (re)connects starts from all of them as they are now.
        subscribe(live.on_events)
        streams.register_user_fragments(live.user_fragments)
        # Call auctions end on time whichever server process is alive (docs/API.md).
        auctions.register()
