"""`manage.py rebuild_candles`: recompute candles from the tape (a repair, and after imports)."""

from datetime import UTC, datetime

from django.core.management.base import BaseCommand, CommandError

from marketdata.models import Market
from marketdata.services import candles_rebuild


def _day(text: str) -> datetime:
    try:
        return datetime.strptime(text, "%Y-%m-%d").replace(tzinfo=UTC)
    except ValueError:
        raise CommandError(f"--since must be a date such as 2026-12-01, not {text!r}.") from None


class Command(BaseCommand):
    help = (
        "Recompute every market's candles (or one market's) from the trade tape: 1m from the trades, "
        "longer intervals from the 1m candles. Safe while trading: each market is rebuilt under its book lock."
    )

    def add_arguments(self, parser):
        parser.add_argument("--market", default=None, help="only this market's symbol")
        parser.add_argument("--since", type=_day, default=None, help="only from this day (UTC) on, e.g. 2026-12-01")

    def handle(self, *args, market, since, **options):
        markets = Market.objects.order_by("symbol")
        if market is not None:
            markets = markets.filter(symbol=market)
            if not markets.exists():
                raise CommandError(f"There is no market {market!r}.")
        for found in markets:
            written = candles_rebuild(market=found, since=since)
            self.stdout.write(f"{found.symbol}: {written:,} 1m candles rebuilt.")
