"""Helpers for templates/marketdata/fragments.html: number formats, the book ladder, charts.

Everything here works from plain values (a Market, a BookSnapshot, candles), so a page's
first render and the live streams render the same fragments from the same partials.
"""

from dataclasses import dataclass, field
from decimal import Decimal

from django import template

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


def _svg(value: float) -> str:
    """A coordinate as SVG takes it. Written here once: a float left to the template goes
    through Django's number localisation, which cost a chart of 60 candles ~40% of its page."""
    return f"{value:.1f}"


@dataclass(frozen=True)
class CandleShape:
    # Coordinates, formatted (see _svg).
    x: str  # centre
    left: str
    width: str
    high_y: str
    low_y: str
    body_y: str
    body_height: str
    volume_y: str
    volume_height: str
    up: bool
    candle: object


@dataclass(frozen=True)
class PriceLabel:
    y: str  # formatted (see _svg)
    price: Decimal


@dataclass(frozen=True)
class CandleChart:
    width: int
    height: int
    plot_right: float
    label_x: float
    candles: list[CandleShape]
    labels: list[PriceLabel]
    last: PriceLabel | None


@register.simple_tag
def candle_chart(candles, width=640, height=260) -> CandleChart:
    """Candlesticks as SVG geometry: prices on the top 80%, volume bars below, labels right."""
    candles = list(candles or [])
    right_margin, top, bottom = 64, 8, 6
    plot_width = width - right_margin
    price_height = (height - top - bottom) * 0.78
    volume_top = top + price_height + 6
    volume_height = height - bottom - volume_top
    if not candles:
        return CandleChart(width, height, plot_width, plot_width + 4, [], [], None)
    high = max(c.high for c in candles)
    low = min(c.low for c in candles)
    if high == low:
        high, low = high + 1, low - 1 if low >= 1 else Decimal(0)
    span = float(high - low)
    most = float(max(c.volume for c in candles)) or 1.0
    slot = plot_width / max(len(candles), 1)
    body = max(1.0, min(slot * 0.65, 14.0))

    def y(price) -> float:
        return round(top + float(high - price) / span * price_height, 1)

    shapes = []
    for index, c in enumerate(candles):
        x = slot * index + slot / 2
        open_y, close_y = y(c.open), y(c.close)
        bar = float(c.volume) / most * volume_height
        shapes.append(
            CandleShape(
                x=_svg(x),
                left=_svg(x - body / 2),
                width=_svg(body),
                high_y=_svg(y(c.high)),
                low_y=_svg(y(c.low)),
                body_y=_svg(min(open_y, close_y)),
                body_height=_svg(max(1.0, round(abs(close_y - open_y), 1))),
                volume_y=_svg(volume_top + volume_height - bar),
                volume_height=_svg(bar),
                up=c.close >= c.open,
                candle=c,
            )
        )
    labels = [PriceLabel(_svg(y(price)), price) for price in (high, (high + low) / 2, low)]
    last = PriceLabel(_svg(y(candles[-1].close)), candles[-1].close)
    return CandleChart(width, height, plot_width, plot_width + 4, shapes, labels, last)


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
