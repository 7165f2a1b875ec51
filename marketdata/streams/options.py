"""The market streams' knobs, added to the live streams' table (`quantumtrades.core.streams`):
`option(name)` answers them, settings.STREAMS overrides them (seconds unless named otherwise)."""

from quantumtrades.core.streams import register_defaults

register_defaults(
    {
        # Least time between two book_update messages of one market (conflation).
        "BOOK_INTERVAL": 0.02,
        # Least time between two renders of a market's page fragments, and of a process's
        # renders of traders' private fragments (orders.live).
        "PAGE_INTERVAL": 0.1,
        # Least time between two ticker/chart refreshes (database reads) of a market.
        "STATS_INTERVAL": 1.0,
        # How long an early book change waits for the one before it before the hub resyncs.
        "GAP_TIMEOUT": 0.5,
        # Book changes held while waiting for a missing one; past this the hub resyncs at once.
        "MAX_WAITING": 1000,
        # How often the hub compares its books' sequences with the database.
        "AUDIT_INTERVAL": 5.0,
        # ... and how often while the channel layer is down: the books then follow the
        # database at this pace, so open sockets keep getting (slower) updates.
        "DOWN_AUDIT_INTERVAL": 1.0,
        # Page fragments.
        "PAGE_BOOK_DEPTH": 16,
        "TAPE_LENGTH": 30,
        "CHART_INTERVAL": "1m",
        # Candles a market page's chart starts with (it follows the newest from the stream).
        "CHART_CANDLES": 300,
        "SPARKLINE_INTERVAL": "1h",
        "SPARKLINE_CANDLES": 24,
    }
)
