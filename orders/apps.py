from django.apps import AppConfig
from django.conf import settings


class OrdersConfig(AppConfig):
    name = "orders"

    def ready(self):
        from django.db.backends.signals import connection_created

        from quantumtrades.core import scheduler, streams
        from quantumtrades.core.events import subscribe

        from . import auctions, expiry, live, protection
        from .engine import stops

        # Trailing stops move in SQL (`engine.stops.trailing_move`); SQLite gets the rule as
        # a function of its own, exact on decimals where its arithmetic would use floats.
        def sqlite_functions(sender, connection, **kwargs):
            if connection.vendor == "sqlite":
                connection.connection.create_function(
                    "qt_trailing_stop", 5, stops.sqlite_trailing_stop, deterministic=True
                )

        connection_created.connect(sqlite_functions, weak=False, dispatch_uid="orders.sqlite_functions")

        # Traders' open orders, fills and balances follow the engine's events on their pages,
        # and a page socket that (re)connects starts from all of them as they are now.
        subscribe(live.on_events)
        streams.register_user_fragments(live.user_fragments)
        # Call auctions end on time whichever server process is alive (docs/API.md).
        auctions.register()
        # GTD orders expire on time, whichever server process is alive (docs/API.md).
        scheduler.every(expiry.EXPIRY_TICK, name="orders.orders_expire_due")(expiry.orders_expire_due)

        # The dead man's switch and cancel on disconnect, in every server process. A
        # process refreshes its own sockets before it sweeps (jobs run in this order), so
        # one that stalled does not take its own sockets for dead.
        scheduler.every(protection.DEAD_MANS_SWITCH_TICK, name="orders.dead_mans_switches")(
            protection.dead_mans_switches_fire
        )
        scheduler.every(settings.CANCEL_ON_DISCONNECT_SECONDS / 5, name="orders.live_sockets_refresh")(
            protection.live_sockets_refresh
        )
        scheduler.every(protection.SWEEP_SECONDS, name="orders.live_sockets_sweep")(protection.live_sockets_sweep)
