"""The last trade price of markets that traded before the engine kept it (the price band's
reference, orders.engine.rules.band_of): each market's last trade, by id."""

from django.db import migrations
from django.db.models import OuterRef, Subquery


def backfill(apps, schema_editor):
    Market = apps.get_model("marketdata", "Market")
    Trade = apps.get_model("marketdata", "Trade")
    last = Trade.objects.filter(market=OuterRef("pk")).order_by("-id").values("price")[:1]
    Market.objects.filter(last_price__isnull=True).update(last_price=Subquery(last))


class Migration(migrations.Migration):
    dependencies = [("marketdata", "0006_market_integrity")]

    operations = [migrations.RunPython(backfill, migrations.RunPython.noop)]
