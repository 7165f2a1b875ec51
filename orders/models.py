from django.conf import settings
from django.db import models
from django.db.models import F, Q, Value
from django.db.models.functions import Abs
from django.db.models.lookups import LessThan

from marketdata.models import Market, Side, Trade
from quantumtrades.core.money import MONEY_QUANTUM, MoneyField


class OrderType(models.TextChoices):
    LIMIT = "limit"
    MARKET = "market"
    # Stop orders wait off the book (status pending) until a trade prints at or through
    # their stop price, then act as a limit order or a market order (orders.engine.stops).
    STOP_LIMIT = "stop_limit", "Stop limit"
    STOP_MARKET = "stop_market", "Stop market"
    # A stop whose stop price follows the market (`trailing_delta` or `trailing_percent`
    # behind the best trade price since acceptance); triggered, it acts as a market order,
    # or as a limit order `limit_offset` beyond its stop.
    TRAILING_STOP = "trailing_stop", "Trailing stop"


STOP_TYPES = (OrderType.STOP_LIMIT, OrderType.STOP_MARKET, OrderType.TRAILING_STOP)
# Types that carry a limit price, and the ones that trade as market orders.
PRICED_TYPES = (OrderType.LIMIT, OrderType.STOP_LIMIT)


class TimeInForce(models.TextChoices):
    GTC = "GTC", "Good till cancelled"
    IOC = "IOC", "Immediate or cancel"
    FOK = "FOK", "Fill or kill"
    GTD = "GTD", "Good till date"  # rests until `expire_at`


class SelfTradePrevention(models.TextChoices):
    """What happens when an order would trade with a resting order of its own user."""

    EXPIRE_TAKER = "expire_taker", "Expire the incoming order"
    EXPIRE_MAKER = "expire_maker", "Cancel the resting order, keep matching"
    EXPIRE_BOTH = "expire_both", "Expire both"


class OrderSource(models.TextChoices):
    """The door an order came through."""

    WEB = "web"
    REST = "rest"
    WS = "ws"
    FIX = "fix"
    ADMIN = "admin"
    SYSTEM = "system"


class OrderList(models.Model):
    """Orders linked so that what happens to one acts on the others: an OCO (a limit and a
    stop on one side, one hold for both; a fill of one, or the stop's trigger, cancels the
    other) or a bracket (an entry whose fills place an OCO of take-profit and stop-loss
    for the filled quantity). Its orders carry it as `list_id` (docs/API.md, "Order lists")."""

    class Kind(models.TextChoices):
        OCO = "oco", "One cancels the other"
        BRACKET = "bracket"

    class Status(models.TextChoices):
        ACTIVE = "active"  # some order of the list is still open, pending or to come
        DONE = "done"  # every order of the list is filled, cancelled or expired

    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="order_lists")
    market = models.ForeignKey(Market, on_delete=models.PROTECT, related_name="+")
    kind = models.CharField(max_length=7, choices=Kind.choices)
    status = models.CharField(max_length=6, choices=Status.choices, default=Status.ACTIVE)
    # A bracket's exits, placed as its entry fills: the take-profit's limit price, the
    # stop-loss's stop price and, for a stop-limit stop-loss, its limit price.
    take_profit_price = MoneyField(null=True, blank=True)
    stop_loss_stop_price = MoneyField(null=True, blank=True)
    stop_loss_price = MoneyField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["-id"]

    def __str__(self):
        return f"{self.kind} list {self.pk} ({self.status})"


class OrderStatus(models.TextChoices):
    PENDING = "pending"  # a stop order, waiting for its trigger: holds funds, not in the book
    OPEN = "open"
    PARTIALLY_FILLED = "partially_filled"
    FILLED = "filled"
    CANCELLED = "cancelled"
    EXPIRED = "expired"
    REJECTED = "rejected"


# Orders in these states rest in the book and hold funds.
OPEN_STATUSES = (OrderStatus.OPEN, OrderStatus.PARTIALLY_FILLED)
IN_BOOK = Q(status__in=OPEN_STATUSES)
# Orders that can still be cancelled or amended and hold funds: the book's, and pending stops.
ACTIVE_STATUSES = (OrderStatus.PENDING, *OPEN_STATUSES)
# Ids past a bigint name no order; answering 404 early keeps them away from the database.
MAX_ID = 2**63 - 1


class OrderQuerySet(models.QuerySet):
    def open(self):
        """Orders in the book (open or partially filled)."""
        return self.filter(IN_BOOK)

    def active(self):
        """Orders in the book and pending stops: what a trader sees as open orders."""
        return self.filter(status__in=ACTIVE_STATUSES)

    def bids(self, market):
        """The market's resting buy orders, best first: highest price, then earliest priority."""
        return self.open().filter(market=market, side=Side.BUY).order_by("-price", "priority")

    def asks(self, market):
        """The market's resting sell orders, best first: lowest price, then earliest priority."""
        return self.open().filter(market=market, side=Side.SELL).order_by("price", "priority")


class Leg(models.TextChoices):
    """An order's part in its list (`Order.order_list`)."""

    ENTRY = "entry"  # a bracket's entry
    TAKE_PROFIT = "take_profit"  # a bracket's exit at a profit (a limit order)
    STOP_LOSS = "stop_loss"  # a bracket's exit at a loss (a stop order)
    LIMIT = "limit"  # an OCO's limit order
    STOP = "stop"  # an OCO's stop order


class Order(models.Model):
    # No index of their own on the foreign keys (here and on every table the engine
    # writes): the indexes in Meta lead with them and serve the same lookups, and each
    # index more is one more entry per row the engine writes under the book lock
    # (docs/BENCHMARKS.md, "Indexes that only cost"). A plain market_id index also let the
    # planner read every order of the market for a look at the book.
    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="orders", db_index=False)
    market = models.ForeignKey(Market, on_delete=models.PROTECT, related_name="orders", db_index=False)
    client_order_id = models.CharField(max_length=64, null=True, blank=True)
    side = models.CharField(max_length=4, choices=Side.choices)
    type = models.CharField(max_length=13, choices=OrderType.choices, default=OrderType.LIMIT)
    time_in_force = models.CharField(max_length=3, choices=TimeInForce.choices, default=TimeInForce.GTC)
    post_only = models.BooleanField(default=False)
    stp = models.CharField(
        "self-trade prevention",
        max_length=12,
        choices=SelfTradePrevention.choices,
        default=SelfTradePrevention.EXPIRE_TAKER,
        db_default=SelfTradePrevention.EXPIRE_TAKER,
    )
    source = models.CharField(
        max_length=6, choices=OrderSource.choices, default=OrderSource.SYSTEM, db_default=OrderSource.SYSTEM
    )
    # The `/ws` socket (LiveSocket) that placed the order with cancel on disconnect; its
    # orders are cancelled when it closes, or when the process holding it dies.
    socket_id = models.BigIntegerField(null=True, blank=True, editable=False)
    price = MoneyField(null=True, blank=True, help_text="Limit price; empty for market and stop-market orders.")
    stop_price = MoneyField(null=True, blank=True, help_text="Trigger price of a stop order; empty for others.")
    quantity = MoneyField()
    # An iceberg shows at most `display_quantity` in the book: `visible_quantity` is the
    # part shown now, the rest hidden; when the shown part fills, the next slice shows
    # with a new time priority. Both empty for every other order.
    display_quantity = MoneyField(null=True, blank=True, help_text="Iceberg: the most the book shows at once.")
    visible_quantity = MoneyField(null=True, blank=True, editable=False)
    # GTD orders expire at this time, whatever else happens on the market.
    expire_at = models.DateTimeField(null=True, blank=True)
    # A trailing stop: its stop price trails `trailing_reference` (the best trade price
    # since acceptance: the highest for a sell, the lowest for a buy) by one of these.
    trailing_delta = MoneyField(null=True, blank=True)
    trailing_percent = models.DecimalField(max_digits=6, decimal_places=3, null=True, blank=True)
    trailing_reference = MoneyField(null=True, blank=True, editable=False)
    # A trailing stop triggers as a limit order this far beyond its stop; empty: as a market order.
    limit_offset = MoneyField(null=True, blank=True)
    # A pending trailing buy holds as if it were a limit buy at this price: its stop at
    # acceptance plus the stop-market margin, or plus its limit_offset. Its stop only moves
    # down, so the hold always covers it (`rules.order_hold`).
    trailing_hold_price = MoneyField(null=True, blank=True, editable=False)
    # No index of its own: the partial index order_list_orders serves every lookup of a
    # list's orders, and a full one would take a NULL entry for every order placed.
    order_list = models.ForeignKey(
        OrderList,
        on_delete=models.PROTECT,
        related_name="orders",
        null=True,
        blank=True,
        db_column="list_id",
        db_index=False,
    )
    leg = models.CharField(max_length=11, choices=Leg.choices, blank=True, default="", db_default="")
    filled_quantity = MoneyField(default=0)
    remaining_quantity = MoneyField()
    # Sum of price x quantity over the order's fills: average price = filled_notional / filled.
    filled_notional = MoneyField(default=0)
    # Funds this order still reserves: quote for a buy (with the taker fee), base for a sell.
    held = MoneyField(default=0)
    status = models.CharField(max_length=16, choices=OrderStatus.choices, default=OrderStatus.OPEN)
    # Time priority, lower is earlier: the book sequence of the command that put the order
    # in the book, times PRIORITY_SLOTS, plus its place among the orders that command put in
    # (a command that triggers stops puts in several). A price change or a quantity increase
    # takes a new one. A pending stop's is that of its acceptance: stops trigger in that order.
    priority = models.BigIntegerField(default=0)
    # When a stop order's trigger fired; empty while it is pending, and for other orders.
    triggered_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    objects = OrderQuerySet.as_manager()

    class Meta:
        ordering = ["-id"]
        permissions = [("cancel_order", "Can cancel a trader's orders")]
        indexes = [
            # The matching engine walks each side of the open book in price-time order;
            # these partial indexes hold only resting orders, so they stay small.
            models.Index(
                F("market"),
                F("price").desc(),
                F("priority"),
                condition=IN_BOOK & Q(side=Side.BUY),
                name="order_open_bids",
            ),
            models.Index(
                F("market"),
                F("price"),
                F("priority"),
                condition=IN_BOOK & Q(side=Side.SELL),
                name="order_open_asks",
            ),
            # A trader's order history, newest first, in keyset pages (id < cursor): all of
            # it, by status (open orders among them) and by market, each a range of one index.
            models.Index(fields=["user", "-id"], name="order_user_recent"),
            models.Index(fields=["user", "status", "-id"], name="order_user_status_recent"),
            models.Index(fields=["user", "market", "-id"], name="order_user_market_recent"),
            # After a command trades, the engine looks for the pending stops its prices crossed.
            models.Index(
                fields=["market", "side", "stop_price"],
                condition=Q(status=OrderStatus.PENDING),
                name="order_pending_stops",
            ),
            # Cancel on disconnect: the orders a socket placed that are still open.
            models.Index(
                fields=["socket_id"],
                condition=Q(socket_id__isnull=False, status__in=ACTIVE_STATUSES),
                name="order_socket_active",
            ),
            # GTD orders still open, by the time they expire (`orders.expiry` finds the due ones).
            models.Index(
                fields=["expire_at"],
                condition=Q(expire_at__isnull=False, status__in=ACTIVE_STATUSES),
                name="order_expiring",
            ),
            # The orders of a list.
            models.Index(fields=["order_list"], condition=Q(order_list__isnull=False), name="order_list_orders"),
            # Pending trailing stops, by the best trade price they trail: a command's trades
            # move those their prices improve on (`engine.stops.trailing_move`).
            models.Index(
                fields=["market", "side", "trailing_reference"],
                condition=Q(status=OrderStatus.PENDING, type=OrderType.TRAILING_STOP, triggered_at__isnull=True),
                name="order_trailing_stops",
            ),
            # Stops crossed by a command that had triggered as many as one command may; the
            # commands after it run them first. Almost always empty.
            models.Index(
                fields=["market", "priority"],
                condition=Q(status=OrderStatus.PENDING, triggered_at__isnull=False),
                name="order_due_stops",
            ),
        ]
        constraints = [
            # Idempotent placement: one client order id per user.
            models.UniqueConstraint(
                fields=["user", "client_order_id"],
                condition=Q(client_order_id__isnull=False),
                name="order_client_order_id_unique",
            ),
            models.CheckConstraint(condition=Q(quantity__gt=0), name="order_quantity_positive"),
            models.CheckConstraint(
                condition=Q(filled_quantity__gte=0, remaining_quantity__gte=0, held__gte=0),
                name="order_amounts_non_negative",
            ),
            # filled + remaining = quantity. Written as "differs by less than the smallest
            # amount" because SQLite does this arithmetic in binary floating point; on
            # PostgreSQL's exact numeric it means equal.
            models.CheckConstraint(
                condition=LessThan(
                    Abs(F("filled_quantity") + F("remaining_quantity") - F("quantity")), Value(MONEY_QUANTUM / 2)
                ),
                name="order_filled_plus_remaining_is_quantity",
            ),
            models.CheckConstraint(
                condition=Q(type__in=[OrderType.MARKET, OrderType.STOP_MARKET], price__isnull=True)
                | Q(type__in=PRICED_TYPES, price__gt=0)
                # A trailing stop has a price once it triggered as a limit (`limit_offset`).
                | Q(type=OrderType.TRAILING_STOP, price__isnull=True)
                | Q(type=OrderType.TRAILING_STOP, price__gt=0),
                name="order_limit_has_price",
            ),
            models.CheckConstraint(
                condition=Q(type=OrderType.TRAILING_STOP, trailing_delta__gt=0, trailing_percent__isnull=True)
                | Q(type=OrderType.TRAILING_STOP, trailing_delta__isnull=True, trailing_percent__gt=0)
                | (
                    ~Q(type=OrderType.TRAILING_STOP)
                    & Q(trailing_delta__isnull=True, trailing_percent__isnull=True, limit_offset__isnull=True)
                ),
                name="order_trailing_has_one_distance",
            ),
            models.CheckConstraint(
                condition=Q(time_in_force=TimeInForce.GTD, expire_at__isnull=False)
                | (~Q(time_in_force=TimeInForce.GTD) & Q(expire_at__isnull=True)),
                name="order_gtd_has_expire_at",
            ),
            models.CheckConstraint(
                condition=Q(display_quantity__isnull=True, visible_quantity__isnull=True)
                | Q(display_quantity__gt=0, display_quantity__lte=F("quantity"), visible_quantity__gte=0),
                name="order_iceberg_shows_a_part",
            ),
            models.CheckConstraint(
                condition=Q(type__in=STOP_TYPES, stop_price__gt=0)
                | (~Q(type__in=STOP_TYPES) & Q(stop_price__isnull=True)),
                name="order_stop_has_stop_price",
            ),
            # Only a stop waits for a trigger.
            models.CheckConstraint(
                condition=~Q(status=OrderStatus.PENDING) | Q(type__in=STOP_TYPES), name="order_pending_is_a_stop"
            ),
        ]

    def __str__(self):
        price = f" @ {self.price}" if self.price is not None else ""
        stop = f" stop {self.stop_price}" if self.stop_price is not None else ""
        return f"#{self.pk} {self.side} {self.quantity} {self.market}{price}{stop} ({self.status})"

    @property
    def is_open(self):
        """In the book, or a pending stop: it can be cancelled and amended."""
        return self.status in ACTIVE_STATUSES

    @property
    def is_pending(self):
        return self.status == OrderStatus.PENDING

    @property
    def is_stop(self):
        return self.type in STOP_TYPES

    @property
    def average_price(self):
        if not self.filled_quantity:
            return None
        return self.filled_notional / self.filled_quantity


class LiveSocket(models.Model):
    """A `/ws` socket that asked for cancel on disconnect, and the process that holds it.

    The process refreshes `seen_at` of its sockets every few seconds. When a socket closes
    its orders are cancelled and its row deleted; when its process dies, the row goes
    stale, and a sweeper in any process that is alive cancels its orders within
    CANCEL_ON_DISCONNECT_SECONDS (docs/API.md, "Cancel on disconnect").
    """

    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="+")
    process = models.CharField(max_length=64, help_text="host:pid of the process holding the socket.")
    seen_at = models.DateTimeField(db_index=True)
    created_at = models.DateTimeField(auto_now_add=True)

    def __str__(self):
        return f"socket {self.pk} of {self.user_id} on {self.process}"


class Fill(models.Model):
    """One side of a trade as its order's owner sees it."""

    class Role(models.TextChoices):
        MAKER = "maker"
        TAKER = "taker"

    order = models.ForeignKey(Order, on_delete=models.PROTECT, related_name="fills")
    # Indexed by the constraint and indexes in Meta (see Order.user).
    trade = models.ForeignKey(Trade, on_delete=models.PROTECT, related_name="fills", db_index=False)
    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="fills", db_index=False)
    market = models.ForeignKey(Market, on_delete=models.PROTECT, related_name="+", db_index=False)
    side = models.CharField(max_length=4, choices=Side.choices)
    role = models.CharField(max_length=5, choices=Role.choices)
    price = MoneyField()
    quantity = MoneyField()
    # Always in the market's quote asset.
    fee = MoneyField(default=0)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-id"]
        indexes = [
            # A trader's fills, newest first in keyset pages; all of them, and by market.
            models.Index(fields=["user", "-id"], name="fill_user_recent"),
            models.Index(fields=["user", "market", "-id"], name="fill_user_market_recent"),
        ]
        constraints = [
            models.CheckConstraint(condition=Q(price__gt=0, quantity__gt=0, fee__gte=0), name="fill_amounts_valid"),
            models.UniqueConstraint(fields=["trade", "role"], name="fill_one_per_trade_side"),
        ]

    def __str__(self):
        return f"{self.role} {self.side} {self.quantity} {self.market} @ {self.price}"


class ReconcileRun(models.Model):
    """One run of `reconcile` (the money invariants, docs/ARCHITECTURE.md "Money") and
    what it found: by the schedule, an operator in the console, or `manage.py reconcile`.

    A scheduled run claims its turn by inserting its row first: `slot` (the run's turn,
    seconds since the epoch // RECONCILE_EVERY_SECONDS) is unique, so of the server
    processes that all run the schedule (orders.console.reconcile_scheduled) one inserts
    the row and runs, the others meet the constraint and skip.
    """

    class Trigger(models.TextChoices):
        SCHEDULE = "schedule"
        OPERATOR = "operator"
        COMMAND = "command"

    trigger = models.CharField(max_length=8, choices=Trigger.choices)
    operator = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.PROTECT, related_name="+"
    )
    slot = models.BigIntegerField(null=True, blank=True, unique=True, editable=False)
    started_at = models.DateTimeField()
    # Empty while it runs (or when the process running it died).
    finished_at = models.DateTimeField(null=True, blank=True)
    breaches = models.PositiveIntegerField(null=True, blank=True, help_text="How many breaches it found.")
    # The breaches, one per line, as `manage.py reconcile` prints them (the first few hundred).
    report = models.TextField(blank=True, default="")

    class Meta:
        # Ids rise with time: the newest run is the primary key's end, no index of its own.
        ordering = ["-id"]
        permissions = [("run_reconcile", "Can run reconcile from the console")]

    def __str__(self):
        return f"reconcile {self.started_at:%Y-%m-%d %H:%M:%S} ({self.trigger})"

    @property
    def clean(self) -> bool | None:
        return None if self.breaches is None else self.breaches == 0

    @property
    def seconds(self) -> float | None:
        if self.finished_at is None:
            return None
        return (self.finished_at - self.started_at).total_seconds()
