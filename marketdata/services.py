"""Operator commands on markets. Trading itself lives in orders.services."""

from django.db import transaction

from .models import Market


@transaction.atomic
def market_set_status(*, market: Market, status: str) -> Market:
    """Halt or resume trading. Takes the book lock, so no command is half-way through."""
    market = Market.objects.select_for_update().get(pk=market.pk)
    if market.status != status:
        market.status = status
        market.save(update_fields=["status"])
    return market


def market_halt(*, market: Market) -> Market:
    return market_set_status(market=market, status=Market.Status.HALTED)


def market_resume(*, market: Market) -> Market:
    return market_set_status(market=market, status=Market.Status.TRADING)
