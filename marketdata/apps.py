from django.apps import AppConfig


class MarketdataConfig(AppConfig):
    name = "marketdata"

    def ready(self):
        from quantumtrades.core.events import subscribe

        from . import streams

        # Committed events go to the live streams; the publisher never blocks the engine.
        subscribe(streams.publish_events)
