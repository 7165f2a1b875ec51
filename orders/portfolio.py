"""Reads for a trader's own pages: balances valued at last prices, the ledger, order history,
the prices at which they have orders resting. Views render them on first load; `live`
renders the same ones when something changes."""

from dataclasses import dataclass
from decimal import Decimal

from django.db.models import OuterRef, Subquery

from accounts.selectors import balances_for_user
from marketdata.models import Candle, Interval, Market
from quantumtrades.core.money import ZERO, money

from .models import OPEN_STATUSES, Order
from .selectors import orders_for_user

# Balances are valued in this asset, at the last trade of each <asset>-USD market.
VALUATION_ASSET = "USD"


@dataclass(frozen=True)
class BalanceRow:
    asset: str
    available: Decimal
    held: Decimal
    price: Decimal | None  # last price in VALUATION_ASSET, None when no market has traded it

    @property
    def total(self) -> Decimal:
        return self.available + self.held

    @property
    def value(self) -> Decimal | None:
        return money(self.total * self.price) if self.price is not None else None


@dataclass(frozen=True)
class Valuation:
    rows: list[BalanceRow]
    asset: str = VALUATION_ASSET

    @property
    def total_value(self) -> Decimal:
        return sum((row.value for row in self.rows if row.value is not None), ZERO)

    @property
    def unpriced(self) -> list[str]:
        return [row.asset for row in self.rows if row.price is None and row.total]

    def available(self, asset: str) -> Decimal:
        return next((row.available for row in self.rows if row.asset == asset), ZERO)


def last_prices(quote: str = VALUATION_ASSET) -> dict[str, Decimal]:
    """The last traded price of every asset quoted in `quote`, by asset code (one query)."""
    # The close of each market's newest 1m candle: one probe of candle_unique per market
    # (the same price as its last trade, kept in the same transaction).
    last = Candle.objects.filter(market=OuterRef("pk"), interval=Interval.M1).order_by("-start").values("close")[:1]
    rows = Market.objects.filter(quote_id=quote).annotate(last=Subquery(last)).values_list("base_id", "last")
    prices = {base: money(Decimal(str(price))) for base, price in rows if price is not None}
    prices[quote] = Decimal(1)
    return prices


def portfolio_valuation(user) -> Valuation:
    prices = last_prices()
    return Valuation(
        [BalanceRow(b.asset_id, b.available, b.held, prices.get(b.asset_id)) for b in balances_for_user(user)]
    )


def order_history_for_user(user, *, market=None, status=""):
    """The portfolio's order history: "open" there means in the book, partly filled or not."""
    statuses = OPEN_STATUSES if status == "open" else [status] if status else None
    return orders_for_user(user, market=market, statuses=statuses)


@dataclass(frozen=True)
class MyLevel:
    """A book level where the trader has an order resting; `tick_size` lets the template
    spell the price exactly as the book's rows do (marketdata's `market_price`)."""

    symbol: str
    side: str
    price: Decimal
    tick_size: Decimal


def my_levels(user) -> list[MyLevel]:
    rows = (
        Order.objects.open()
        .filter(user=user)
        .values_list("market__symbol", "side", "price", "market__tick_size")
        .distinct()
        .order_by("market__symbol", "side", "price")
    )
    return [MyLevel(*row) for row in rows]
