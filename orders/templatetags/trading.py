"""Template helpers of the trading pages: numbers at a market's precision, query strings."""

from decimal import Decimal

from django import template
from django.conf import settings

register = template.Library()


def _places(step: Decimal) -> int:
    exponent = step.normalize().as_tuple().exponent
    return max(0, -exponent) if isinstance(exponent, int) else 0


def _grouped(value: Decimal, places: int) -> str:
    return f"{value.quantize(Decimal(1).scaleb(-places)):,.{places}f}"


@register.filter
def price(value, market):
    """A price at the market's tick precision: 60,123.45."""
    if value is None or value == "":
        return "–"
    return _grouped(Decimal(value), _places(market.tick_size))


@register.filter
def qty(value, market):
    """A quantity at the market's lot precision."""
    if value is None or value == "":
        return "–"
    return _grouped(Decimal(value), _places(market.lot_size))


@register.filter
def amount(value):
    """A balance or ledger amount: at least two decimals, at most the eight money carries."""
    if value is None or value == "":
        return "–"
    value = Decimal(value)
    return _grouped(value, min(8, max(2, _places(value))) if value else 2)


@register.filter
def plain(value):
    """A Decimal as the engine wants it typed back: no grouping, no exponent, no trailing zeros."""
    if value is None:
        return ""
    return format(Decimal(value).normalize(), "f")


@register.filter
def places(step):
    """How many decimals a tick or lot size has: 0.01 -> 2."""
    return _places(Decimal(step))


@register.filter
def percent(rate):
    """A fee rate as a percentage: 0.001 -> 0.1%."""
    return f"{(Decimal(rate) * 100).normalize():f}%"


@register.filter
def plain_input(value):
    """A form value back into its input: Decimals plain, what the trader typed as typed."""
    if value is None:
        return ""
    return plain(value) if isinstance(value, Decimal) else value


@register.filter
def price_usd(value):
    """A value in the valuation asset, to the cent."""
    if value is None:
        return "–"
    return _grouped(Decimal(value), 2)


@register.simple_tag
def session_idle_seconds():
    return settings.SESSION_COOKIE_AGE


@register.simple_tag(takes_context=True)
def query_with(context, **changes):
    """The current query string with some parameters replaced (None or "" removes one)."""
    query = context["request"].GET.copy()
    for key, value in changes.items():
        if value in (None, ""):
            query.pop(key, None)
        else:
            query[key] = value
    encoded = query.urlencode()
    return f"?{encoded}" if encoded else "?"
