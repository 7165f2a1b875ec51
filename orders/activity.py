"""The venue's activity as it happens, counted where it happens: every order placed or
refused (`order_outcome`, recorded at the one door every channel passes, `order_place`),
and the trades and auctions the engine commits (`on_events`).

What is counted here is this process's: Prometheus adds the processes up
(quantumtrades/core/metrics.py; docs/ARCHITECTURE.md, "Metrics").
"""

import functools

from marketdata.events import MarketStatusChanged, TradeExecuted
from marketdata.models import Market
from quantumtrades.core import metrics
from quantumtrades.core.errors import ErrorCode, ServiceError
from quantumtrades.core.unavailable import is_unavailable

from .models import OrderSource, OrderType

# Each (source, type, result) series, resolved once: the label lookup was most of the cost.
_orders = functools.cache(metrics.ORDERS.labels)

ACCEPTED = "accepted"
# A repeated client_order_id: answered with the original order, nothing placed.
REPEATED = "repeated"


def order_outcome(*, source: str, type: str, result: str) -> None:
    """One order through `order_place`: `result` is ACCEPTED, REPEATED or the error code
    it was refused with."""
    if metrics.ENABLED:
        _orders(source, type, result).inc()


def recorded(place):
    """`order_place`, with each outcome recorded (`order_outcome`)."""

    @functools.wraps(place)
    def run(**arguments):
        source = arguments.get("source", OrderSource.SYSTEM)
        try:
            result = place(**arguments)
        except Exception as exc:
            kind = arguments.get("type", OrderType.LIMIT)
            # A refused order's type is the caller's input: only known types name a series.
            kind = kind if kind in OrderType.values else "invalid"
            if isinstance(exc, ServiceError):
                code = exc.code
            else:
                code = ErrorCode.SERVICE_UNAVAILABLE if is_unavailable(exc) else ErrorCode.INTERNAL_ERROR
            order_outcome(source=source, type=kind, result=str(code))
            raise
        order_outcome(source=source, type=result.order.type, result=ACCEPTED if result.created else REPEATED)
        return result

    return run


def on_events(batch: list) -> None:
    """Event bus subscriber (after commit): the trades and the auctions begun, by market."""
    if not metrics.ENABLED:
        return
    for event in batch:
        kind = type(event)
        if kind is TradeExecuted:
            metrics.TRADES.labels(event.symbol).inc()
        elif kind is MarketStatusChanged and event.status == Market.Status.AUCTION:
            metrics.AUCTIONS.labels(event.symbol).inc()
