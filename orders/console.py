"""The operators' console (the admin's dashboard and trader page): what the venue is doing
now, what one trader holds and did, and `reconcile` run from the console or on schedule.

What each read costs, whatever the length of the history (tests/test_console_costs.py
pins it on a long tape):
- per market, one query: its rules and status, best bid and ask (one probe of each side's
  open-book index) and the resting orders and pending stops (counted over the partial
  indexes, which hold only what rests: bounded by the book, never by history); then its
  24-hour ticker from the candles (`marketdata.selectors.ticker`, one query);
- trades per minute from the 1m candles of the last minutes (one range of candle_unique);
- orders per minute from id ranges: every process marks the newest order id at the start
  of each minute in the shared cache (`order_marks_record`), and a minute's orders are
  those between two marks, counted on the primary key: bounded by the minutes' orders;
- refusals and open sockets from the processes' counters (orders.activity), no query;
- the most active traders from the newest MOST_ACTIVE_FILLS fills, not the whole history.
"""

import logging
import time
from collections import defaultdict
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal

from django.conf import settings
from django.core.cache import cache
from django.db import IntegrityError, connection, transaction
from django.db.models import Count, IntegerField, Max, OuterRef, Q, Subquery
from django.db.models.functions import Coalesce
from django.utils import timezone

from accounts.models import ApiKey, Balance, LedgerEntry, OperatorAction, Session, User
from accounts.services import operator_action_record
from marketdata.models import BookLevel, Candle, Interval, Market, Side
from marketdata.selectors import ticker

from . import activity
from .models import ACTIVE_STATUSES, IN_BOOK, Fill, Order, OrderStatus, ReconcileRun
from .selectors import reconcile

log = logging.getLogger(__name__)

# The minutes of the per-minute figures (orders, trades, refusals).
MINUTES = 5
# How many of the newest fills "who trades the most" reads.
MOST_ACTIVE_FILLS = 1000
# How many breaches a run keeps in its report (the count is always whole).
REPORT_LINES = 200
# How often every process asks whether a scheduled reconcile is due (a cheap check: the
# run itself is claimed by one process per turn).
RECONCILE_CHECK_SECONDS = 30.0
_MARK = "qt:console:order_mark"


# --- Reconcile, from the console and on schedule ---------------------------------------


def reconcile_run(*, trigger: str, operator: User | None = None, slot: int | None = None) -> ReconcileRun | None:
    """Run `reconcile` and keep its result. With `slot` (a scheduled turn) the run is
    claimed first by inserting its row: a process that finds the turn taken does nothing
    and answers None.

    On PostgreSQL the checks read one snapshot (REPEATABLE READ, read only), so orders
    committed meanwhile cannot show as a breach half-way through a command's effects.
    Cost: one pass over the ledger's sums per (user, asset), the balances and the active
    orders, and the open book per market (orders.selectors.reconcile): seconds on a
    ledger of millions of entries, and nothing is locked.
    """
    try:
        with transaction.atomic():
            run = ReconcileRun.objects.create(trigger=trigger, operator=operator, slot=slot, started_at=timezone.now())
    except IntegrityError:
        return None  # another process has this turn
    outermost = not connection.in_atomic_block
    with transaction.atomic():
        if outermost and connection.vendor == "postgresql":
            with connection.cursor() as cursor:
                cursor.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ READ ONLY")
        breaches = reconcile()
    run.finished_at = timezone.now()
    run.breaches = len(breaches)
    run.report = "\n".join(str(breach) for breach in breaches[:REPORT_LINES])
    run.found = breaches  # all of them, for `manage.py reconcile` to print
    with transaction.atomic():
        run.save(update_fields=["finished_at", "breaches", "report"])
        if operator is not None:
            operator_action_record(
                operator=operator,
                kind=OperatorAction.Kind.RECONCILE_RUN,
                details={"run": run.pk, "breaches": run.breaches},
            )
    if breaches:
        log.error("reconcile (%s): %d breaches; the first: %s", trigger, len(breaches), breaches[0])
    return run


def reconcile_scheduled() -> ReconcileRun | None:
    """The scheduler's job (every process, every RECONCILE_CHECK_SECONDS): run `reconcile`
    once per RECONCILE_EVERY_SECONDS turn across all processes (0 turns it off)."""
    every = settings.RECONCILE_EVERY_SECONDS
    if not every:
        return None
    slot = int(time.time() // every)
    if ReconcileRun.objects.filter(slot=slot).exists():
        return None  # the common case: this turn ran already, no insert attempted
    return reconcile_run(trigger=ReconcileRun.Trigger.SCHEDULE, slot=slot)


def reconcile_latest() -> ReconcileRun | None:
    return ReconcileRun.objects.select_related("operator").first()


# --- The dashboard ------------------------------------------------------------------------


@dataclass
class MarketFigures:
    market: Market
    best_bid: Decimal | None
    best_ask: Decimal | None
    resting: int  # orders in the book
    pending_stops: int
    last_price: Decimal | None
    volume_24h: Decimal
    quote_volume_24h: Decimal
    trades_24h: int
    auction_seconds_left: int | None

    @property
    def spread(self) -> Decimal | None:
        if self.best_bid is None or self.best_ask is None:
            return None
        return self.best_ask - self.best_bid


@dataclass
class Minute:
    start: datetime
    orders: int | None  # None: no mark for that minute (the cache had none)
    trades: int


@dataclass(frozen=True)
class Check:
    name: str
    state: str  # "ok", "bad", or "unknown" (not configured)
    summary: str
    detail: str


@dataclass
class ActiveTrader:
    user_id: int
    username: str
    fills: int
    notional: Decimal  # price x quantity summed, in each market's quote asset


@dataclass
class Dashboard:
    now: datetime
    markets: list[MarketFigures]
    minutes: list[Minute]  # oldest first, the current minute last
    outcomes: dict[str, int]
    sockets: dict[str, int]
    most_active: list[ActiveTrader]
    reconcile: ReconcileRun | None
    actions: list[OperatorAction]
    health: list[Check] = field(default_factory=list)

    @property
    def current(self) -> Minute:
        return self.minutes[-1]

    @property
    def refusals(self) -> dict[str, int]:
        return {code: count for code, count in self.outcomes.items() if code != activity.ACCEPTED}

    @property
    def refused(self) -> int:
        return sum(self.refusals.values())

    @property
    def accepted(self) -> int:
        return self.outcomes.get(activity.ACCEPTED, 0)

    @property
    def open_sockets(self) -> int:
        return sum(self.sockets.values())


def _count(queryset) -> Subquery:
    return Coalesce(
        Subquery(queryset.order_by().values("market").annotate(n=Count("pk")).values("n")[:1]),
        0,
        output_field=IntegerField(),
    )


def markets_figures(now: datetime | None = None) -> list[MarketFigures]:
    now = now or timezone.now()
    here = OuterRef("pk")
    levels = BookLevel.objects.filter(market=here, quantity__gt=0)
    markets = Market.objects.select_related("base", "quote").annotate(
        best_bid=Subquery(levels.filter(side=Side.BUY).order_by("-price").values("price")[:1]),
        best_ask=Subquery(levels.filter(side=Side.SELL).order_by("price").values("price")[:1]),
        # Each count over one partial index of what rests (orders.Order.Meta.indexes).
        resting_bids=_count(Order.objects.filter(IN_BOOK, market=here, side=Side.BUY)),
        resting_asks=_count(Order.objects.filter(IN_BOOK, market=here, side=Side.SELL)),
        stops=_count(Order.objects.filter(market=here, status=OrderStatus.PENDING, side__in=[Side.BUY, Side.SELL])),
    )
    rows = []
    for market in markets.order_by("symbol"):
        tick = ticker(market=market, now=now)
        left = None
        if market.status == Market.Status.AUCTION and market.auction_ends_at is not None:
            left = max(0, int((market.auction_ends_at - now).total_seconds()))
        rows.append(
            MarketFigures(
                market=market,
                best_bid=market.best_bid,
                best_ask=market.best_ask,
                resting=market.resting_bids + market.resting_asks,
                pending_stops=market.stops,
                last_price=market.last_price if market.last_price is not None else tick.last_price,
                volume_24h=tick.volume_24h,
                quote_volume_24h=tick.quote_volume_24h,
                trades_24h=tick.trades_24h,
                auction_seconds_left=left,
            )
        )
    return rows


def _minute(moment: datetime) -> int:
    return int(moment.timestamp() // 60)


def order_marks_record(now: datetime | None = None) -> None:
    """Mark the newest order id at the start of this minute (once per minute across all
    processes: the first to add the key wins). A probe of the primary key's end."""
    key = f"{_MARK}:{_minute(now or timezone.now())}"
    if cache.get(key) is None:
        newest = Order.objects.aggregate(newest=Max("pk"))["newest"] or 0
        cache.add(key, newest, timeout=(MINUTES + 2) * 60)


def minutes_figures(markets: list[Market], now: datetime | None = None) -> list[Minute]:
    """Orders and trades in each of the last MINUTES minutes and the current one."""
    now = now or timezone.now()
    order_marks_record(now)
    this = _minute(now)
    numbers = list(range(this - MINUTES, this + 1))
    found = cache.get_many([f"{_MARK}:{number}" for number in numbers])
    marks = {number: found.get(f"{_MARK}:{number}") for number in numbers}
    # Orders between consecutive marks, in one pass over the id range they span.
    bounds = {}
    for number in numbers:
        low, high = marks[number], marks.get(number + 1)
        if low is not None and (high is not None or number == this):
            bounds[number] = (low, high)
    orders = {}
    if bounds:
        lowest = min(low for low, _ in bounds.values())
        counts = {
            f"m{number}": Count("pk", filter=Q(pk__gt=low) & (Q(pk__lte=high) if high is not None else Q()))
            for number, (low, high) in bounds.items()
        }
        totals = Order.objects.filter(pk__gt=lowest).aggregate(**counts)
        orders = {number: totals[f"m{number}"] for number in bounds}
    since = datetime.fromtimestamp(numbers[0] * 60, tz=now.tzinfo)
    trades = defaultdict(int)
    for start, count in (
        Candle.objects.filter(market__in=[market.pk for market in markets], interval=Interval.M1, start__gte=since)
        .values_list("start", "trades")
        .order_by()
    ):
        trades[_minute(start)] += count
    return [
        Minute(
            start=datetime.fromtimestamp(number * 60, tz=now.tzinfo), orders=orders.get(number), trades=trades[number]
        )
        for number in numbers
    ]


def most_active(limit: int = 5) -> list[ActiveTrader]:
    """The traders with the most fills among the newest MOST_ACTIVE_FILLS (one bounded read)."""
    newest = Fill.objects.order_by("-id").values_list("user_id", "user__username", "price", "quantity")
    found: dict[int, ActiveTrader] = {}
    for user_id, username, price, quantity in newest[:MOST_ACTIVE_FILLS]:
        row = found.setdefault(user_id, ActiveTrader(user_id, username, 0, Decimal(0)))
        row.fills += 1
        row.notional += price * quantity
    for row in found.values():
        row.notional = row.notional.quantize(Decimal("0.01"))
    return sorted(found.values(), key=lambda row: (-row.fills, row.username))[:limit]


def health() -> list[Check]:
    """PostgreSQL (or SQLite) and the shared cache's Redis, as /healthz checks them, timed."""
    checks = []
    started = time.perf_counter()
    try:
        with connection.cursor() as cursor:
            cursor.execute("SELECT 1")
        took = f"{connection.vendor}, answered in {(time.perf_counter() - started) * 1000:.1f} ms"
        checks.append(Check("Database", "ok", "up", took))
    except Exception as exc:
        checks.append(Check("Database", "bad", "down", exc.__class__.__name__))
    if "redis" in settings.CACHES["default"]["BACKEND"].lower():
        started = time.perf_counter()
        try:
            from django_redis import get_redis_connection

            get_redis_connection("default").ping()
            checks.append(Check("Redis", "ok", "up", f"answered in {(time.perf_counter() - started) * 1000:.1f} ms"))
        except Exception as exc:
            detail = f"{exc.__class__.__name__}: each process counts alone meanwhile"
            checks.append(Check("Redis", "bad", "down", detail))
    else:
        checks.append(Check("Redis", "unknown", "none", "not configured: each process counts alone"))
    return checks


def dashboard(now: datetime | None = None) -> Dashboard:
    now = now or timezone.now()
    markets = markets_figures(now)
    return Dashboard(
        now=now,
        markets=markets,
        minutes=minutes_figures([row.market for row in markets], now),
        outcomes=activity.outcomes_recent(MINUTES),
        sockets=activity.sockets_open(),
        most_active=most_active(),
        reconcile=reconcile_latest(),
        actions=list(OperatorAction.objects.select_related("operator", "user")[:10]),
        health=health(),
    )


# --- A trader, for operators --------------------------------------------------------------

# How many rows of each history the trader page shows (the admin's lists page the rest).
TRADER_ROWS = 20
TRADER_OPEN_ROWS = 100


@dataclass
class Trader:
    user: User
    balances: list[Balance]
    open_orders: list[Order]
    open_total: int
    fills: list[Fill]
    ledger: list[LedgerEntry]
    api_keys: list[ApiKey]
    sessions: list[Session]
    actions: list[OperatorAction]


def trader(user: User) -> Trader:
    """Everything the trader page shows: a fixed number of queries, each bounded."""
    active = Order.objects.filter(user=user, status__in=ACTIVE_STATUSES)
    open_orders = list(active.select_related("market").order_by("-id")[:TRADER_OPEN_ROWS])
    open_total = len(open_orders) if len(open_orders) < TRADER_OPEN_ROWS else active.count()
    return Trader(
        user=user,
        balances=list(Balance.objects.filter(user=user).order_by("asset_id")),
        open_orders=open_orders,
        open_total=open_total,
        fills=list(Fill.objects.filter(user=user).select_related("market").order_by("-id")[:TRADER_ROWS]),
        ledger=list(LedgerEntry.objects.filter(user=user).order_by("-id")[:TRADER_ROWS]),
        api_keys=list(ApiKey.objects.filter(user=user).order_by("-created", "-id")[:TRADER_ROWS]),
        sessions=list(
            Session.objects.filter(user=user, expire_date__gt=timezone.now()).order_by("-last_seen")[:TRADER_ROWS]
        ),
        actions=list(
            OperatorAction.objects.filter(user=user)
            .select_related("operator")
            .order_by("-created_at", "-id")[:TRADER_ROWS]
        ),
    )
