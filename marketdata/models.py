import re
from decimal import Decimal

from django.core.exceptions import ValidationError
from django.core.validators import RegexValidator
from django.db import models
from django.db.models import Q

from accounts.models import Asset
from quantumtrades.core.money import MONEY_DECIMAL_PLACES, MoneyField, RateField, decimal_places

# What a market symbol may be, everywhere one is read (paths, queries, socket messages): a
# symbol outside it names no market, and never reaches the database.
SYMBOL_MAX_LENGTH = 24
SYMBOL_FORMAT = rf"[A-Z0-9][A-Z0-9._-]{{0,{SYMBOL_MAX_LENGTH - 1}}}"
SYMBOL = re.compile(SYMBOL_FORMAT)


def is_symbol(text) -> bool:
    return isinstance(text, str) and SYMBOL.fullmatch(text) is not None


class Market(models.Model):
    """An instrument (base priced in quote), its trading rules and its book's sequence.

    The row doubles as the book lock: every command on the market starts with
    `SELECT ... FOR UPDATE` on it, so commands on one market run one at a time.
    """

    class Status(models.TextChoices):
        TRADING = "trading"
        HALTED = "halted"
        # A call auction: orders rest without matching until `auction_ends_at`, then one
        # uncross at a single price (docs/API.md, "Auctions").
        AUCTION = "auction"

    symbol = models.CharField(
        max_length=SYMBOL_MAX_LENGTH,
        unique=True,
        validators=[RegexValidator(f"^{SYMBOL_FORMAT}$", "Capital letters, digits and . _ - (e.g. QTX-USD).")],
    )
    base = models.ForeignKey(Asset, on_delete=models.PROTECT, related_name="+")
    quote = models.ForeignKey(Asset, on_delete=models.PROTECT, related_name="+")
    tick_size = MoneyField(help_text="Prices are whole multiples of this.")
    lot_size = MoneyField(help_text="Quantities are whole multiples of this.")
    min_notional = MoneyField(help_text="Smallest price x quantity an order may have.")
    maker_fee = RateField(default=0, help_text="Fee rate for the resting side of a trade, e.g. 0.001.")
    taker_fee = RateField(default=0, help_text="Fee rate for the incoming side of a trade.")
    status = models.CharField(max_length=8, choices=Status.choices, default=Status.TRADING)
    # Market integrity (docs/API.md, "Market rules"): every rule is checked by the engine
    # inside the command, under the book lock.
    price_band = RateField(
        null=True,
        blank=True,
        default=Decimal("0.10"),
        help_text="Limit prices further than this fraction from the reference price (last trade, "
        "else the middle of the book) are refused; market orders stop there. Empty: no band.",
    )
    max_order_quantity = MoneyField(
        null=True, blank=True, help_text="Largest quantity one order may have, in the base asset. Empty: no limit."
    )
    max_order_notional = MoneyField(
        null=True,
        blank=True,
        help_text="Largest price x quantity one order may have, in the quote asset. Empty: no limit.",
    )
    circuit_breaker = RateField(
        null=True,
        blank=True,
        default=Decimal("0.05"),
        help_text="A trade further than this fraction from the window's reference price is not made: "
        "the market goes into a call auction instead. Empty: no circuit breaker.",
    )
    circuit_window_seconds = models.PositiveIntegerField(
        default=300, help_text="The window whose first trade is the circuit breaker's reference price."
    )
    auction_seconds = models.PositiveIntegerField(
        default=30, help_text="How long a call auction collects orders before it uncrosses."
    )
    # When the current auction uncrosses; empty unless the status is auction.
    auction_ends_at = models.DateTimeField(null=True, blank=True)
    # The price of the last trade, kept by the engine with the book sequence: the price
    # band's reference, read with the book lock at no extra cost.
    last_price = MoneyField(null=True, blank=True, editable=False)
    # Bumped by one in every command's transaction: joins a snapshot to the stream of updates.
    book_seq = models.BigIntegerField(default=0)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["symbol"]
        permissions = [("halt_market", "Can halt a market and resume it through an auction")]
        constraints = [
            models.CheckConstraint(condition=Q(tick_size__gt=0), name="market_tick_positive"),
            models.CheckConstraint(condition=Q(lot_size__gt=0), name="market_lot_positive"),
            models.CheckConstraint(condition=Q(min_notional__gte=0), name="market_min_notional_non_negative"),
            models.CheckConstraint(
                condition=Q(maker_fee__gte=0, maker_fee__lt=1, taker_fee__gte=0, taker_fee__lt=1),
                name="market_fee_rates_in_range",
            ),
            models.CheckConstraint(condition=~Q(base=models.F("quote")), name="market_base_differs_from_quote"),
            models.CheckConstraint(
                condition=Q(price_band__isnull=True) | Q(price_band__gt=0, price_band__lt=1),
                name="market_price_band_in_range",
            ),
            models.CheckConstraint(
                condition=Q(circuit_breaker__isnull=True) | Q(circuit_breaker__gt=0, circuit_breaker__lt=1),
                name="market_circuit_breaker_in_range",
            ),
            models.CheckConstraint(
                condition=(Q(max_order_quantity__isnull=True) | Q(max_order_quantity__gt=0))
                & (Q(max_order_notional__isnull=True) | Q(max_order_notional__gt=0)),
                name="market_size_limits_positive",
            ),
            models.CheckConstraint(
                condition=Q(circuit_window_seconds__gte=1, auction_seconds__gte=1, auction_seconds__lte=3600),
                name="market_windows_in_range",
            ),
            # An auction always knows when it ends; nothing else has an end.
            models.CheckConstraint(
                condition=Q(status="auction", auction_ends_at__isnull=False)
                | (~Q(status="auction") & Q(auction_ends_at__isnull=True)),
                name="market_auction_has_end",
            ),
        ]

    def __str__(self):
        return self.symbol

    @property
    def is_trading(self):
        return self.status == self.Status.TRADING

    @property
    def in_auction(self):
        return self.status == self.Status.AUCTION

    def clean(self):
        # price x quantity must be exact in eight decimal places, so settlement never rounds.
        if self.tick_size and self.lot_size:
            places = decimal_places(self.tick_size) + decimal_places(self.lot_size)
            if places > MONEY_DECIMAL_PLACES:
                raise ValidationError(
                    f"tick size and lot size together carry {places} decimal places; "
                    f"at most {MONEY_DECIMAL_PLACES} keep price x quantity exact."
                )


class Side(models.TextChoices):
    BUY = "buy"
    SELL = "sell"


class BookLevel(models.Model):
    """The total resting quantity at one price on one side of a market's book.

    Kept by the matching engine in the same transaction as the orders it sums, so a
    snapshot is one small indexed read instead of an aggregate over the orders table.
    `manage.py reconcile` checks it against the open orders.
    """

    # Indexed by the unique constraint (see orders.Order.user).
    market = models.ForeignKey(Market, on_delete=models.CASCADE, related_name="levels", db_index=False)
    side = models.CharField(max_length=4, choices=Side.choices)
    price = MoneyField()
    quantity = MoneyField()

    class Meta:
        constraints = [
            # The engine upserts on this key.
            models.UniqueConstraint(fields=["market", "side", "price"], name="book_level_unique"),
        ]
        indexes = [
            # Snapshots walk the live levels in price order. Emptied levels keep their rows
            # (see book_levels_apply) and pile up as the price wanders; this index leaves
            # them out, so the best bid is the first entry, not the first after a thousand zeros.
            models.Index(fields=["market", "side", "price"], condition=Q(quantity__gt=0), name="book_level_live"),
        ]

    def __str__(self):
        return f"{self.market_id} {self.side} {self.quantity} @ {self.price}"


class Trade(models.Model):
    """One execution on the public tape: a taker order met a resting (maker) order.

    The orders are referenced by id only: `marketdata` sits below `orders` and does not
    import it. Each trade has two fills (orders.Fill), one per side, except synthesised
    history, which references no orders at all.
    """

    # Indexed by the indexes in Meta (see orders.Order.user).
    market = models.ForeignKey(Market, on_delete=models.PROTECT, related_name="trades", db_index=False)
    price = MoneyField()
    quantity = MoneyField()
    taker_side = models.CharField(max_length=4, choices=Side.choices)
    # Empty on synthesised history (`manage.py seed_history`): those trades met no orders,
    # have no fills and moved no money, so nothing in the ledger answers for them.
    maker_order_id = models.BigIntegerField(null=True, blank=True)
    taker_order_id = models.BigIntegerField(null=True, blank=True)
    # The book sequence of the command that made the trade (0 for synthesised history).
    seq = models.BigIntegerField()
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-id"]
        indexes = [
            # The tape (newest first) and candles (a time range) of one market.
            models.Index(fields=["market", "-id"], name="trade_market_recent"),
            models.Index(fields=["market", "created_at"], name="trade_market_time"),
        ]
        constraints = [
            models.CheckConstraint(condition=Q(price__gt=0) & Q(quantity__gt=0), name="trade_positive"),
        ]

    def __str__(self):
        return f"{self.market_id} {self.quantity} @ {self.price}"

    @property
    def notional(self):
        return self.price * self.quantity


class Interval(models.TextChoices):
    """Candle lengths. Buckets are aligned to the Unix epoch: a 5m candle starts at :00,
    :05, ..., a 1d candle at midnight UTC."""

    M1 = "1m"
    M5 = "5m"
    H1 = "1h"
    D1 = "1d"


INTERVAL_SECONDS = {Interval.M1: 60, Interval.M5: 300, Interval.H1: 3600, Interval.D1: 86400}


class Candle(models.Model):
    """Open, high, low, close and volume of one market's trades in one interval bucket.

    Kept by the matching engine in the same transaction as the trades it sums (one upsert
    per command that trades, every interval at once), so charts and the 24-hour ticker read
    a few hundred small rows instead of the tape. Open and close belong to the bucket's
    first and last trade by id, which is the tape's order. `manage.py rebuild_candles`
    recomputes them from the tape: the 1m candles from the trades, every longer interval
    rolled up from the 1m candles.
    """

    # Indexed by the unique constraint (see orders.Order.user).
    market = models.ForeignKey(Market, on_delete=models.PROTECT, related_name="candles", db_index=False)
    interval = models.CharField(max_length=3, choices=Interval.choices)
    start = models.DateTimeField()
    open = MoneyField()
    high = MoneyField()
    low = MoneyField()
    close = MoneyField()
    volume = MoneyField(help_text="In the base asset.")
    quote_volume = MoneyField(help_text="Sum of price x quantity, in the quote asset.")
    trades = models.BigIntegerField()
    # The bucket's first and last trade: whichever side of an upsert has the lower (higher)
    # id gives the open (close), so writes need not arrive in order.
    first_trade_id = models.BigIntegerField()
    last_trade_id = models.BigIntegerField()

    class Meta:
        ordering = ["market", "interval", "start"]
        constraints = [
            # The engine upserts on this key; charts and the ticker read ranges of it.
            models.UniqueConstraint(fields=["market", "interval", "start"], name="candle_unique"),
            models.CheckConstraint(condition=Q(trades__gt=0, volume__gt=0, low__gt=0), name="candle_not_empty"),
        ]

    def __str__(self):
        return f"{self.market_id} {self.interval} {self.start:%Y-%m-%d %H:%M} O {self.open} C {self.close}"
