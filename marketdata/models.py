from django.core.exceptions import ValidationError
from django.db import models
from django.db.models import Q

from accounts.models import Asset
from accounts.money import MONEY_DECIMAL_PLACES, MoneyField, RateField, decimal_places


class Market(models.Model):
    """An instrument (base priced in quote), its trading rules and its book's sequence.

    The row doubles as the book lock: every command on the market starts with
    `SELECT ... FOR UPDATE` on it, so commands on one market run one at a time.
    """

    class Status(models.TextChoices):
        TRADING = "trading"
        HALTED = "halted"

    symbol = models.CharField(max_length=24, unique=True)
    base = models.ForeignKey(Asset, on_delete=models.PROTECT, related_name="+")
    quote = models.ForeignKey(Asset, on_delete=models.PROTECT, related_name="+")
    tick_size = MoneyField(help_text="Prices are whole multiples of this.")
    lot_size = MoneyField(help_text="Quantities are whole multiples of this.")
    min_notional = MoneyField(help_text="Smallest price x quantity an order may have.")
    maker_fee = RateField(default=0, help_text="Fee rate for the resting side of a trade, e.g. 0.001.")
    taker_fee = RateField(default=0, help_text="Fee rate for the incoming side of a trade.")
    status = models.CharField(max_length=8, choices=Status.choices, default=Status.TRADING)
    # Bumped by one in every command's transaction: joins a snapshot to the stream of updates.
    book_seq = models.BigIntegerField(default=0)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["symbol"]
        constraints = [
            models.CheckConstraint(condition=Q(tick_size__gt=0), name="market_tick_positive"),
            models.CheckConstraint(condition=Q(lot_size__gt=0), name="market_lot_positive"),
            models.CheckConstraint(condition=Q(min_notional__gte=0), name="market_min_notional_non_negative"),
            models.CheckConstraint(
                condition=Q(maker_fee__gte=0, maker_fee__lt=1, taker_fee__gte=0, taker_fee__lt=1),
                name="market_fee_rates_in_range",
            ),
            models.CheckConstraint(condition=~Q(base=models.F("quote")), name="market_base_differs_from_quote"),
        ]

    def __str__(self):
        return self.symbol

    @property
    def is_trading(self):
        return self.status == self.Status.TRADING

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

    market = models.ForeignKey(Market, on_delete=models.CASCADE, related_name="levels")
    side = models.CharField(max_length=4, choices=Side.choices)
    price = MoneyField()
    quantity = MoneyField()

    class Meta:
        constraints = [
            # The engine upserts on this key; snapshots walk it in price order.
            models.UniqueConstraint(fields=["market", "side", "price"], name="book_level_unique"),
        ]

    def __str__(self):
        return f"{self.market_id} {self.side} {self.quantity} @ {self.price}"


class Trade(models.Model):
    """One execution on the public tape: a taker order met a resting (maker) order.

    The orders are referenced by id only: `marketdata` sits below `orders` and does not
    import it. Each trade has two fills (orders.Fill), one per side.
    """

    market = models.ForeignKey(Market, on_delete=models.PROTECT, related_name="trades")
    price = MoneyField()
    quantity = MoneyField()
    taker_side = models.CharField(max_length=4, choices=Side.choices)
    maker_order_id = models.BigIntegerField()
    taker_order_id = models.BigIntegerField()
    # The book sequence of the command that made the trade.
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
