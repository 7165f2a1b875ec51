from django.apps import AppConfig
from django.conf import settings
from django.db.models.signals import post_migrate


class OrdersConfig(AppConfig):
    name = "orders"

    def ready(self):
        from django.db.backends.signals import connection_created

        from quantumtrades.core import scheduler, sql, streams
        from quantumtrades.core.events import subscribe

        from . import activity, auctions, console, expiry, live, protection
        from .engine import stops

        # Trailing stops move in SQL (`engine.stops.trailing_move`); SQLite gets the rule as
        # a function of its own, exact on decimals where its arithmetic would use floats.
        def sqlite_functions(sender, connection, **kwargs):
            if connection.vendor == "sqlite":
                connection.connection.create_function(
                    "qt_trailing_stop", 5, stops.sqlite_trailing_stop, deterministic=True
                )

        connection_created.connect(sqlite_functions, weak=False, dispatch_uid="orders.sqlite_functions")
        # Timestamps read by psycopg's C loader, where Django's would give the same values.
        connection_created.connect(
            sql.timestamps_loaded_in_c, weak=False, dispatch_uid="quantumtrades.timestamps_loaded_in_c"
        )

        # Traders' open orders, fills and balances follow the engine's events on their pages,
        # and a page socket that (re)connects starts from all of them as they are now.
        subscribe(live.on_events)
        # Trades and auctions counted for the metrics (quantumtrades/core/metrics.py).
        subscribe(activity.on_events)
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

        # The console's venue-wide figures: each process's refusal counts and open sockets,
        # summed in the shared cache (orders.activity); and `reconcile` on its schedule,
        # run by one process per turn (orders.console).
        scheduler.every(activity.FLUSH_SECONDS, name="orders.activity_publish")(activity.activity_publish)
        scheduler.every(activity.FLUSH_SECONDS, name="orders.order_marks")(console.order_marks_record)
        scheduler.every(console.RECONCILE_CHECK_SECONDS, name="orders.reconcile_scheduled")(console.reconcile_scheduled)
        # The staff's groups see every model, those added after their migration included.
        post_migrate.connect(_staff_groups_sync, dispatch_uid="orders.staff_groups_sync")


def _staff_groups_sync(sender, **kwargs):
    from accounts.roles import staff_groups_sync

    # After each app's permissions are made (auth's handler runs first): a few queries per
    # app, once per migrate.
    staff_groups_sync()
