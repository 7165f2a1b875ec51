from django.apps import AppConfig


class MarketdataConfig(AppConfig):
    name = "marketdata"

    def ready(self):
        from quantumtrades.core.events import subscribe
        from quantumtrades.core.streams import publish_events

        from . import streams  # noqa: F401  (registers the market streams' knobs)

        # Committed events go to the live streams; the publisher never blocks the engine.
        subscribe(publish_events)
