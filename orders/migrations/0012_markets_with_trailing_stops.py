"""Mark the markets that already hold trailing stops (marketdata.Market.trailing_stops): the
engine moves trailing stops only on marked markets, and marks a market itself with its
first trailing stop from now on."""

from django.db import migrations


def mark_markets_with_trailing_stops(apps, schema_editor):
    Market = apps.get_model("marketdata", "Market")
    Order = apps.get_model("orders", "Order")
    with_stops = Order.objects.filter(type="trailing_stop").values("market_id")
    Market.objects.filter(pk__in=with_stops).update(trailing_stops=True)


class Migration(migrations.Migration):
    dependencies = [
        ("marketdata", "0009_market_trailing_stops"),
        ("orders", "0011_order_list_partial_index_only"),
    ]

    operations = [migrations.RunPython(mark_markets_with_trailing_stops, migrations.RunPython.noop)]
