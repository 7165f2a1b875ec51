"""`manage.py seed_history --market S --trades N --days D`: a tape with days of history."""

import time
from decimal import Decimal, InvalidOperation

from django.core.management.base import BaseCommand, CommandError

from marketdata.history import HistoryRefused, history_seed
from marketdata.models import Market


def _decimal(text: str) -> Decimal:
    try:
        value = Decimal(text)
    except InvalidOperation:
        raise CommandError(f"--price must be a decimal number, not {text!r}.") from None
    if not value.is_finite():
        raise CommandError("--price must be a finite number.")
    return value


class Command(BaseCommand):
    help = (
        "Synthesise N public trades over the last D days on a market with an empty tape: a random walk "
        "around the market's price (the middle of its book, or --price), with candles to match. The "
        "trades reference no orders and move no money."
    )

    def add_arguments(self, parser):
        parser.add_argument("--market", required=True, help="the market's symbol, e.g. QTX-USD")
        parser.add_argument("--trades", type=int, required=True, help="how many trades")
        parser.add_argument("--days", type=float, required=True, help="spread over the last this many days")
        parser.add_argument("--price", type=_decimal, default=None, help="the price the history ends at")
        parser.add_argument("--seed", type=int, default=None, help="random seed for a repeatable history")

    def handle(self, *args, market, trades, days, price, seed, **options):
        found = Market.objects.filter(symbol=market).first()
        if found is None:
            raise CommandError(f"There is no market {market!r}.")
        began = time.monotonic()
        try:
            plan = history_seed(market=found, trades=trades, days=days, price=price, seed=seed)
        except (ValueError, HistoryRefused) as exc:
            raise CommandError(str(exc)) from None
        elapsed = time.monotonic() - began
        self.stdout.write(
            f"{found.symbol}: {plan.trades:,} trades from {plan.start:%Y-%m-%d %H:%M} to {plan.end:%Y-%m-%d %H:%M} "
            f"UTC, ending at {(plan.anchor_ticks * found.tick_size).normalize():f}, in {elapsed:.1f} s "
            f"(seed {plan.seed})."
        )
