"""A trader's private live fragments: open orders, fills, balances and the book levels
that hold their orders; and toasts, the notifications of what just happened to them (a
fill, a cancel, an expiry, a stop that triggered), on every page they have open.

The engine publishes events after commit (`quantumtrades.core.events`); `on_events` gets them
as one batch per command, works out which of each user's fragments changed, renders those
once per user (in a thread of its own, off the request that committed), and hands the HTML to the user's page sockets
(`quantumtrades.core.streams.stream_to_user`). The pages render the same partials on first load
and when a socket (re)connects, so what arrives later always replaces like with like.
Toasts are news, not state: they go out once, with the change that made them, and a
socket that (re)connects gets none of the past.
"""

import logging
import queue
import threading
import time
from collections import defaultdict
from decimal import Decimal

from django import db
from django.conf import settings
from django.template.loader import render_to_string

from accounts.events import BalanceChanged
from accounts.models import User
from marketdata.models import Market
from marketdata.streams import option
from quantumtrades.core import streams

from .events import FillCreated, OrderChanged
from .models import STOP_TYPES, Leg, OrderList
from .portfolio import my_levels, portfolio_valuation
from .selectors import fills_for_user, orders_open_for_user

log = logging.getLogger(__name__)

OPEN_ORDERS_SHOWN = 50
FILLS_SHOWN = 20

ORDERS, FILLS, BALANCES = "orders", "fills", "balances"
ALL_KINDS = frozenset({ORDERS, FILLS, BALANCES})
# The partials of templates/orders/private.html that show each kind of change.
PARTIALS = {ORDERS: ("open_orders", "my_levels"), FILLS: ("fills",), BALANCES: ("balances",)}


def private_context(user, kinds=ALL_KINDS) -> dict:
    """What the private partials need, for the `kinds` of change asked for."""
    context = {}
    if ORDERS in kinds:
        orders = list(orders_open_for_user(user).select_related("order_list")[: OPEN_ORDERS_SHOWN + 1])
        context["open_orders"] = orders[:OPEN_ORDERS_SHOWN]
        context["open_order_rows"] = open_order_rows(context["open_orders"])
        context["open_orders_more"] = len(orders) > OPEN_ORDERS_SHOWN
        context["my_levels"] = my_levels(user)
    if FILLS in kinds:
        context["fills"] = list(fills_for_user(user)[:FILLS_SHOWN])
    if BALANCES in kinds:
        context["valuation"] = portfolio_valuation(user)
    return context


# The order of a list's legs on the page: the entry, then what it protects with.
LEG_ORDER = {Leg.ENTRY: 0, Leg.LIMIT: 1, Leg.TAKE_PROFIT: 1, Leg.STOP: 2, Leg.STOP_LOSS: 2}


def open_order_rows(orders) -> list[dict]:
    """Open orders as the table shows them: one row per order, except the orders of a list
    (an OCO, a bracket), which share one row of the list with its legs under it, where the
    list's newest order would be."""
    rows, lists = [], {}
    for order in orders:
        if order.order_list_id is None:
            rows.append({"order": order})
        elif order.order_list_id in lists:
            lists[order.order_list_id]["orders"].append(order)
        else:
            lists[order.order_list_id] = {"list": order.order_list, "orders": [order]}
            rows.append(lists[order.order_list_id])
    for row in lists.values():
        row["orders"].sort(key=lambda order: (LEG_ORDER.get(order.leg, 3), order.pk))
        # A bracket whose entry still waits: its exits are to come, at the list's terms.
        row["exits_to_come"] = row["list"].kind == OrderList.Kind.BRACKET and all(
            order.leg == Leg.ENTRY for order in row["orders"]
        )
    return rows


def private_fragments(user, kinds=ALL_KINDS, *, request=None) -> str:
    """The `kinds` of private fragments as out-of-band HTML, ready for a socket or a response."""
    context = private_context(user, kinds)
    names = [name for kind in sorted(kinds) for name in PARTIALS[kind]]
    return "".join(render_to_string(f"orders/private.html#{name}", context, request=request) for name in names)


def user_fragments(user_id: int) -> str:
    """All of a trader's private fragments as they are now: what a page socket gets when it
    (re)connects (registered with `quantumtrades.core.streams.register_user_fragments`)."""
    user = User.objects.filter(pk=user_id, is_active=True).first()
    return private_fragments(user) if user is not None else ""


def kinds_by_user(batch) -> dict[int, set[str]]:
    changed = defaultdict(set)
    for event in batch:
        if isinstance(event, OrderChanged):
            changed[event.user_id].add(ORDERS)
        elif isinstance(event, FillCreated):
            changed[event.user_id].add(FILLS)
        elif isinstance(event, BalanceChanged):
            changed[event.user_id].add(BALANCES)
    return changed


# Order statuses a trader is told of as they happen (fills have toasts of their own).
TOLD_STATUSES = {"cancelled": "cancelled", "expired": "expired"}


def toasts_by_user(batch) -> dict[int, list[dict]]:
    """What to tell each trader of one command: their fills (one toast per order, however
    many fills it took), their orders cancelled or expired, their stops triggered."""
    toasts = defaultdict(list)
    fills = {}  # (user, order) -> the toast that sums its fills
    for event in batch:
        if isinstance(event, FillCreated):
            fill = event.fill
            key = (event.user_id, fill["order_id"])
            if key not in fills:
                fills[key] = {"kind": "fill", "order_id": fill["order_id"], "symbol": fill["symbol"],
                              "side": fill["side"], "role": fill["role"], "fills": 0, "quantity": Decimal(0),
                              "notional": Decimal(0), "fee": Decimal(0), "fee_asset": fill["fee_asset"]}  # fmt: skip
                toasts[event.user_id].append(fills[key])
            toast = fills[key]
            toast["fills"] += 1
            toast["quantity"] += Decimal(fill["quantity"])
            toast["notional"] += Decimal(fill["price"]) * Decimal(fill["quantity"])
            toast["fee"] += Decimal(fill["fee"])
        elif isinstance(event, OrderChanged):
            order = event.order
            kind = TOLD_STATUSES.get(order["status"])
            # A stop's trigger and its first move share the command's time (orders/engine/stops.py).
            triggered = order.get("triggered_at")
            if order["type"] in STOP_TYPES and order["status"] != "pending" and triggered == order["updated_at"]:
                toasts[event.user_id].append({"kind": "triggered", **_order_facts(order)})
            if kind is not None:
                toasts[event.user_id].append({"kind": kind, **_order_facts(order)})
    for toast in fills.values():
        toast["average_price"] = toast.pop("notional") / toast["quantity"]
    return dict(toasts)


def _order_facts(order: dict) -> dict:
    return {
        "order_id": order["id"],
        "symbol": order["symbol"],
        "side": order["side"],
        "order_type": order["type"],
        "price": Decimal(order["price"]) if order["price"] is not None else None,
        "stop_price": Decimal(order["stop_price"]) if order.get("stop_price") is not None else None,
        "quantity": Decimal(order["quantity"]),
        "filled_quantity": Decimal(order["filled_quantity"]),
        "remaining_quantity": Decimal(order["remaining_quantity"]),
    }


def toasts_html(toasts: list[dict]) -> str:
    """The toasts of one trader, appended to the #toasts region of every page (base.html)."""
    symbols = {toast["symbol"] for toast in toasts}
    markets = {market.symbol: market for market in Market.objects.filter(symbol__in=symbols)}
    shown = [{**toast, "market": markets.get(toast["symbol"])} for toast in toasts if toast["symbol"] in markets]
    if not shown:
        return ""
    return render_to_string("orders/private.html#toasts", {"toasts": shown})


def on_events(batch) -> None:
    """Subscriber (orders.apps): queue the changes of one command's events for rendering.

    Runs after commit in the thread that committed, usually a request's: rendering there
    (a presence check, queries and templates per trader) would keep the integrator who
    placed the order waiting for pages that are not theirs. `renderer` does it instead."""
    changed = kinds_by_user(batch)
    if changed:
        renderer.put(changed, toasts_by_user(batch))


def render_and_stream(changed: dict[int, set[str]], toasts: dict[int, list[dict]] | None = None) -> None:
    """Render each affected trader's changed fragments (and toasts) once and stream them."""
    toasts = toasts or {}
    # Rendering for traders with no page open would be wasted work (the simulator's accounts).
    watching = streams.users_watching(changed)
    watched = {user_id: kinds for user_id, kinds in changed.items() if user_id in watching}
    if not watched:
        return
    users = User.objects.in_bulk(list(watched))
    for user_id, kinds in watched.items():
        user = users.get(user_id)
        if user is None or user.username == settings.FEE_ACCOUNT_USERNAME:
            continue
        try:
            html = private_fragments(user, kinds)
            if toasts.get(user_id):
                html += toasts_html(toasts[user_id])
        except Exception:
            # One trader's broken fragment must not keep the others' from them.
            log.exception("could not render the private fragments of user %s", user_id)
            continue
        streams.stream_to_user(user_id, html)


class Renderer:
    """One thread per process that renders traders' private fragments after commit.

    It renders at most once per PAGE_INTERVAL, as the market pages' fragments are: the
    first change after a quiet spell at once, later ones merged into the next render. A
    trader whose orders changed five times meanwhile gets one push with the state after
    all five (and the toasts of all five). Each round also asks Redis which of the
    traders have a page open: one round per command cost the process 0.5 ms of CPU per
    command, with nobody watching (docs/BENCHMARKS.md, "After-commit work").
    """

    def __init__(self):
        self.queue: queue.SimpleQueue = queue.SimpleQueue()
        self.lock = threading.Lock()
        self.thread = None
        self.busy = 0  # changes queued or being rendered

    def put(self, changed: dict[int, set[str]], toasts: dict[int, list[dict]] | None = None) -> None:
        with self.lock:
            self.busy += 1
            if self.thread is None or not self.thread.is_alive():
                self.thread = threading.Thread(target=self._run, name="private-fragments", daemon=True)
                self.thread.start()
        self.queue.put((changed, toasts or {}))

    def _run(self):
        rendered_at = 0.0
        while True:
            taken = [self.queue.get()]
            pause = rendered_at + option("PAGE_INTERVAL") - time.monotonic()
            if pause > 0:
                time.sleep(pause)
            rendered_at = time.monotonic()
            while True:
                try:
                    taken.append(self.queue.get_nowait())
                except queue.Empty:
                    break
            merged = defaultdict(set)
            told = defaultdict(list)  # toasts are never merged away: each is news
            for changed, toasts in taken:
                for user_id, kinds in changed.items():
                    merged[user_id] |= kinds
                for user_id, news in toasts.items():
                    told[user_id].extend(news)
            try:
                render_and_stream(merged, told)
            except Exception:
                log.exception("could not render private fragments")
            finally:
                db.connection.close()
                with self.lock:
                    self.busy -= len(taken)

    def flush(self, timeout: float = 5.0) -> bool:
        """Wait until everything queued so far is rendered and handed to the streams."""
        deadline = time.monotonic() + timeout
        while self.busy and time.monotonic() < deadline:
            time.sleep(0.005)
        return not self.busy


renderer = Renderer()
