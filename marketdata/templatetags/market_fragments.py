"""Helpers for templates/marketdata/fragments.html: number formats, the book ladder, charts.

Everything here works from plain values (a Market, a BookSnapshot, candles), so a page's
first render and the live streams render the same fragments from the same partials.
"""

import json
import math
from dataclasses import dataclass, field
from decimal import Decimal

from django import template
from django.utils import timezone

from quantumtrades.core.money import decimal_places

register = template.Library()


def _step(size: Decimal | None) -> Decimal | None:
    if not size:
        return None
    return Decimal(1).scaleb(-decimal_places(size))


def _format(value, size) -> str:
    if value is None or value == "":
        return ""
    value = Decimal(value)
    step = _step(size)
    if step is not None:
        value = value.quantize(step)
    return format(value, "f")


@register.filter
def market_price(value, market) -> str:
    """A price with the market's tick precision: 101.5 on a 0.01 tick is "101.50"."""
    return _format(value, getattr(market, "tick_size", None))


@register.filter
def market_qty(value, market) -> str:
    """A quantity with the market's lot precision."""
    return _format(value, getattr(market, "lot_size", None))


@register.filter
def seconds_left(moment) -> int:
    """Whole seconds from now until `moment` (0 once it has passed): an auction's countdown,
    which the page's script then keeps ticking (static/js/market.js)."""
    if moment is None:
        return 0
    return max(0, math.ceil((moment - timezone.now()).total_seconds()))


@register.filter(name="decimal_places")
def decimal_places_filter(size) -> int:
    """How many decimals a tick or lot size has: 0.01 -> 2 (for the browser's arithmetic)."""
    return decimal_places(Decimal(size))


@register.filter
def signed(value) -> str:
    """A change with its sign: "+1.25", "-0.40", "0"."""
    if value is None or value == "":
        return ""
    value = Decimal(value)
    return f"+{value:f}" if value > 0 else f"{value:f}"


@register.filter
def trend(value) -> str:
    """ "up", "down" or "flat": a class name for a change."""
    if value is None or value == "":
        return "flat"
    value = Decimal(value)
    return "up" if value > 0 else "down" if value < 0 else "flat"


# --- The book ladder ----------------------------------------------------------------------


@dataclass(frozen=True)
class LadderRow:
    price: Decimal
    quantity: Decimal
    total: Decimal  # cumulative from the best price outwards
    depth: float  # total as a percentage of the deeper side's total, for the depth bar


@dataclass(frozen=True)
class Ladder:
    asks: list[LadderRow] = field(default_factory=list)  # as shown: highest first, best ask last
    bids: list[LadderRow] = field(default_factory=list)  # best bid first
    spread: Decimal | None = None
    spread_percent: Decimal | None = None
    mid: Decimal | None = None


def _rows(levels):
    total = Decimal(0)
    rows = []
    for price, quantity in levels:
        total += quantity
        rows.append((price, quantity, total))
    return rows


@register.simple_tag
def book_ladder(snapshot, depth=None) -> Ladder:
    """The ladder of a BookSnapshot: cumulative totals and depth bars on one scale."""
    if snapshot is None:
        return Ladder()
    bids = snapshot.bids[:depth] if depth else snapshot.bids
    asks = snapshot.asks[:depth] if depth else snapshot.asks
    bid_rows, ask_rows = _rows(bids), _rows(asks)
    deepest = max([rows[-1][2] for rows in (bid_rows, ask_rows) if rows] or [Decimal(0)])

    def scaled(rows):
        return [
            LadderRow(price, quantity, total, round(float(total / deepest) * 100, 1) if deepest else 0.0)
            for price, quantity, total in rows
        ]

    spread = percent = mid = None
    if bids and asks:
        spread = asks[0][0] - bids[0][0]
        mid = (asks[0][0] + bids[0][0]) / 2
        percent = (spread / mid * 100).quantize(Decimal("0.01")) if mid else None
    return Ladder(asks=scaled(ask_rows)[::-1], bids=scaled(bid_rows), spread=spread, spread_percent=percent, mid=mid)


# --- Charts -------------------------------------------------------------------------------
# The price chart is drawn in the browser (static/js/chart.js, on the vendored
# lightweight-charts): the server hands it candles as JSON in data attributes, decimals as
# strings, times as Unix seconds of the bucket's start.


def _candle_row(candle) -> list:
    return [
        int(candle.start.timestamp()),
        *(format(value, "f") for value in (candle.open, candle.high, candle.low, candle.close, candle.volume)),
    ]


@register.filter
def candles_json(candles) -> str:
    """Candles as `[[time, open, high, low, close, volume], ...]`, oldest first."""
    return json.dumps([_candle_row(candle) for candle in candles or []], separators=(",", ":"))


@register.filter
def candle_tails_json(tails) -> str:
    """`{interval: [[time, open, high, low, close, volume], ...]}` of selectors.candle_tails."""
    return json.dumps(
        {interval: [_candle_row(candle) for candle in rows] for interval, rows in (tails or {}).items()},
        separators=(",", ":"),
    )


@dataclass(frozen=True)
class Sparkline:
    width: int
    height: int
    points: str
    trend: str


@register.simple_tag
def sparkline(candles, width=120, height=32) -> Sparkline:
    """A polyline of the candles' closes (the overview's 24h line)."""
    closes = [c.close for c in candles or []]
    if len(closes) < 2:
        mid = height / 2
        return Sparkline(width, height, f"0,{mid} {width},{mid}" if closes else "", "flat")
    high, low = max(closes), min(closes)
    span = float(high - low) or 1.0
    step = width / (len(closes) - 1)
    points = " ".join(
        f"{round(i * step, 1)},{round(2 + float(high - close) / span * (height - 4), 1)}"
        for i, close in enumerate(closes)
    )
    direction = "up" if closes[-1] > closes[0] else "down" if closes[-1] < closes[0] else "flat"
    return Sparkline(width, height, points, direction)
