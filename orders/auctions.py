"""The end of call auctions: the scheduler's job that uncrosses every market whose auction
is due, in any server process (docs/API.md, "Call auctions"; the uncross itself is
`engine.auction`).

Safe with several processes: each market is uncrossed in one engine command under the
book lock, which finds the auction already over when another process got there first,
and then writes nothing.
"""

from django.utils import timezone

from marketdata.models import Market
from quantumtrades.core.scheduler import every

from .engine import auction, stops
from .engine.command import Command
from .engine.transactions import book_command
from .services.orders import _stops_due_run


def auctions_end_due() -> list[str]:
    """Uncross every market whose auction has reached its end; return their symbols."""
    due = Market.objects.filter(status=Market.Status.AUCTION, auction_ends_at__lte=timezone.now())
    ended = []
    for market_id, symbol in due.values_list("pk", "symbol"):
        if auction_end(market_id=market_id):
            ended.append(symbol)
    return ended


def auction_end(*, market_id: int) -> bool:
    """Uncross the market's auction if it is due; True if this call ended it."""
    ended, stops_due = _uncross(market_id)
    if stops_due:
        _stops_due_run(market_id)
    return ended


@book_command(lambda market_id: market_id)
def _uncross(market_id: int) -> tuple[bool, bool]:
    command = Command.begin(market_id)
    if not auction.uncross(command):
        return False, False
    # Stops that trades before the auction crossed waited for it (`stops.run_crossed`);
    # those the uncross price crosses are found as the trades are written (`flush`).
    for stop in stops.crossed(command, None, None):
        command.crossed_stops.setdefault(stop.pk, stop)
    command.finish(None)
    return True, command.stops_due


def register() -> None:
    """Register the job (orders' AppConfig.ready)."""
    every(0.5, name="orders.auctions_end_due")(auctions_end_due)
