"""The engine against a reference exchange written from the rules alone.

Hypothesis sends random commands from four traders to one market (limit orders in every
time in force, post only, market orders, stop-limit and stop-market orders, each with a
self-trade prevention mode, cancel, cancel all, amend, a pending stop's stop price too)
and sends each to the engine and to
`ReferenceExchange`, a plain in-memory book in this file. After every step both must agree
on the outcome (or the refusal), the trades (price, quantity, maker, taker), every order's
status, remaining quantity, hold, priority, stop price and whether it triggered, every
balance (the fee account's included) and the book sequence, and `reconcile()` must be
clean. The reference triggers stops the plain way: after each order's trades, every pending
stop they reached, earliest accepted first, until none is left.

GTD orders (limit and stop-limit) rest an hour ahead of their time until a rule says their
time has come (`gtd_time_comes`): from then the expiry job (`expiry_job_runs`) expires them,
a taker that meets one expires it and goes on, and a trade that crosses a due GTD stop
expires it instead of triggering it.

Icebergs (limit GTC or GTD with a display quantity, often small) show one slice at a time:
the reference takes them slice by slice, each next slice taking a new priority (and so its
place behind the orders at its price), and a taker with nothing else at the price takes
the next slices in the same trade. Every order's shown slice is compared while it rests.

The market has a price band in some examples (none, or one or two ticks either side of
the reference): the reference refuses a limit price outside it, stops a market order (or
a triggered stop-market) at its bound and expires a triggered stop-limit priced outside
it, the band being the one the command found (the last trade, else the middle of the
book).

Prices sit on a narrow grid around 100 so that orders cross often, quantities in steps of
0.125 on a 0.001 lot, and the fee rates are drawn per example (a maker rate above the
taker rate included), so fees carry more than eight decimals and rounding is exercised.

CI runs 90 examples of 50 steps; `QT_HYPOTHESIS_PROFILE=long` runs many more.
"""

import copy
import os
import sys
from dataclasses import dataclass
from datetime import timedelta
from decimal import ROUND_CEILING, ROUND_FLOOR, Decimal

import pytest
from django.db import connection, transaction
from django.utils import timezone
from hypothesis import HealthCheck, event, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    initialize,
    invariant,
    precondition,
    rule,
    run_state_machine_as_test,
)

from accounts.models import Balance
from marketdata.models import Market, Trade
from orders.expiry import orders_expire_due
from orders.models import Order, OrderList
from orders.selectors import reconcile
from orders.services import oco_place, order_amend, order_cancel, order_place, orders_cancel_all
from quantumtrades.core.errors import ServiceError

from .stories import trader

D = Decimal
QUANTUM = D("0.00000001")  # money has 8 decimal places

settings.register_profile(
    "ci",
    # 4,500 commands a run, so that CI's two runs of the suite keep within its time limit
    # (still the suite's longest test: 41-58 s on PostgreSQL at 120 examples); `long`
    # below searches deeper.
    max_examples=90,
    stateful_step_count=50,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
settings.register_profile(
    "long",
    max_examples=3000,
    stateful_step_count=100,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
# A quick look while working on the engine: QT_HYPOTHESIS_PROFILE=quick.
settings.register_profile("quick", settings.get_profile("ci"), max_examples=20)
PROFILE = settings.get_profile(os.environ.get("QT_HYPOTHESIS_PROFILE", "ci"))

# reconcile() reads every table whole: after every step it was half of this test's time, and
# what it finds wrong stays wrong until it looks (the comparison runs after every step).
RECONCILE_EVERY = 4

TICK, LOT, MIN_NOTIONAL = D("0.01"), D("0.001"), D("15")
PRICES = [D("99.97"), D("99.98"), D("99.99"), D("100.00"), D("100.01"), D("100.02"), D("100.03")]
QUANTITIES = st.integers(1, 24).map(lambda n: n * D("0.125"))
RATES = [D("0"), D("0.001"), D("0.0015"), D("0.0025"), D("0.003")]
# Price bands: none, about one tick or two ticks either side of a reference near 100.
BANDS = [None, None, D("0.0001"), D("0.00025")]
STP_MODES = ["expire_taker", "expire_taker", "expire_maker", "expire_both"]
# dave is poor: his orders run into insufficient funds and his market buys into their budget.
TRADERS = {
    "alice": {"USD": D("1000"), "QTX": D("10")},
    "bob": {"USD": D("1000"), "QTX": D("10")},
    "carol": {"USD": D("800"), "QTX": D("8")},
    "dave": {"USD": D("60"), "QTX": D("1")},
}
FEES = "fees"


def floor8(value):
    return value.quantize(QUANTUM, rounding=ROUND_FLOOR)


def ceil8(value):
    return value.quantize(QUANTUM, rounding=ROUND_CEILING)


class Refused(Exception):
    """The reference exchange refuses a command, as the engine should: (error class, code)."""


@dataclass
class RefOrder:
    id: int
    user: str
    side: str
    type: str
    time_in_force: str
    post_only: bool
    price: Decimal | None
    quantity: Decimal
    remaining: Decimal
    priority: int
    held: Decimal = D(0)
    status: str = "open"
    stop_price: Decimal | None = None
    triggered: bool = False
    stp: str = "expire_taker"
    # GTD: its expire_at has come (the machine's `gtd_time_comes`), so it expires when the
    # expiry job runs, when a taker meets it, or when a trade crosses it as a pending stop.
    due: bool = False
    # An iceberg: the most it shows at once, and what it shows now.
    display: Decimal | None = None
    visible: Decimal | None = None
    # An order list (orders.engine.lists): its id and the order's part in it.
    list_id: int | None = None
    leg: str = ""
    # A trailing stop: its distance (a price or a percent), its limit offset, the best trade
    # price it trails, the price its hold (a buy's) is sized at, and whether a trade reached it.
    delta: Decimal | None = None
    percent: Decimal | None = None
    offset: Decimal | None = None
    reference: Decimal | None = None
    hold_price: Decimal | None = None
    reached: bool = False

    @property
    def filled(self):
        return self.quantity - self.remaining

    @property
    def is_open(self):
        """Cancellable and amendable: in the book, or a pending stop."""
        return self.status in ("open", "partially_filled", "pending")

    @property
    def in_book(self):
        return self.status in ("open", "partially_filled")


class ReferenceExchange:
    """One market's book and the traders' balances, kept the simplest way that follows the rules.

    Balances are [available, held] per (user, asset). `run` keeps a copy of the state
    and puts it back when a command is refused, so a refusal changes nothing.
    """

    def __init__(self, maker_fee, taker_fee, price_band=None):
        self.maker_fee, self.taker_fee = maker_fee, taker_fee
        self.price_band = price_band
        self.band = None  # (low, high) of the command under way, or None
        self.balances = {
            (user, asset): [amount, D(0)] for user, funds in TRADERS.items() for asset, amount in funds.items()
        }
        self.balances[(FEES, "USD")] = [D(0), D(0)]
        self.orders: dict[int, RefOrder] = {}
        self.seq = 0
        self.trades = []  # (price, quantity, maker order id, taker order id, taker side)
        self.last_price = None  # of the last trade, in any command

    # Money rules --------------------------------------------------------------------

    def balance(self, user, asset):
        return self.balances.setdefault((user, asset), [D(0), D(0)])

    def hold_needed(self, side, price, quantity):
        if side == "sell":
            return quantity
        notional = price * quantity
        return notional + ceil8(notional * max(self.maker_fee, self.taker_fee))

    def stop_hold_needed(self, order):
        if order.type == "trailing_stop":
            return self.hold_needed(order.side, order.hold_price, order.remaining)
        price = order.price
        if order.type == "stop_market" and order.side == "buy":
            # The stop price plus 5%, rounded up to the tick (orders.engine.rules.STOP_MARKET_BUY_MARGIN).
            price = (order.stop_price * D("1.05") / TICK).to_integral_value(rounding=ROUND_CEILING) * TICK
        return self.hold_needed(order.side, price, order.remaining)

    def cost(self, price, quantity):
        notional = price * quantity
        return notional + floor8(notional * self.taker_fee)

    def affordable(self, price, budget):
        """The largest quantity in whole lots whose cost, taker fee included, fits the budget."""
        low, high = 0, int(budget / (price * LOT))
        while low < high:
            middle = (low + high + 1) // 2
            if self.cost(price, middle * LOT) <= budget:
                low = middle
            else:
                high = middle - 1
        return low * LOT

    # Commands -----------------------------------------------------------------------

    def band_now(self):
        """(low, high): the band around the last trade, else the middle of the book, the
        bounds rounded inward to the tick; None without a band or a reference."""
        if self.price_band is None:
            return None
        reference = self.last_price
        if reference is None:
            bids, asks = self.resting("buy"), self.resting("sell")
            if not bids or not asks:
                return None
            reference = ((max(o.price for o in bids) + min(o.price for o in asks)) / 2).quantize(QUANTUM)
        low = (reference * (1 - self.price_band) / TICK).to_integral_value(rounding=ROUND_CEILING) * TICK
        high = (reference * (1 + self.price_band) / TICK).to_integral_value(rounding=ROUND_FLOOR) * TICK
        return low, high

    def refuse_out_of_band(self, price):
        if self.band is not None and not self.band[0] <= price <= self.band[1]:
            event("a price outside the band refused")
            raise Refused("InvalidInput", "PRICE_OUT_OF_BAND")

    def run(self, command, *args):
        balances = {key: list(funds) for key, funds in self.balances.items()}
        orders = {order_id: copy.copy(order) for order_id, order in self.orders.items()}
        seq, last_price = self.seq, self.last_price
        self.trades = []
        self.slots = 0  # the command's priority slots: triggered stops, icebergs' new slices
        self.band = self.band_now()  # the band the command finds, for all it does
        try:
            return command(*args)
        except Refused:
            self.balances, self.orders, self.seq, self.trades, self.last_price = balances, orders, seq, [], last_price
            raise

    def place(
        self,
        order_id,
        user,
        side,
        kind,
        quantity,
        price,
        time_in_force,
        post_only,
        stop_price=None,
        stp="expire_taker",
        display=None,
        trailing=None,
    ):
        if kind in ("limit", "stop_limit") and price * quantity < MIN_NOTIONAL:
            raise Refused("InvalidInput", "INVALID")
        if display is not None and (display > quantity or price * display < MIN_NOTIONAL):
            raise Refused("InvalidInput", "INVALID")
        if kind == "stop_market" and stop_price * quantity < MIN_NOTIONAL:
            raise Refused("InvalidInput", "INVALID")
        if kind == "limit":
            self.refuse_out_of_band(price)
        if stop_price is not None:
            self.refuse_reached_stop(side, stop_price)
        self.seq += 1
        order = RefOrder(
            order_id, user, side, kind, time_in_force, post_only, price, quantity, quantity, self.seq * 1000
        )
        order.stop_price, order.stp, order.display = stop_price, stp, display
        if kind == "trailing_stop":
            self.trailing_start(order, *trailing)
        self.orders[order_id] = order
        if stop_price is not None or kind == "trailing_stop":
            order.status = "pending"
            needed = self.stop_hold_needed(order)
            if self.balance(user, self.hold_asset(side))[0] < needed:
                raise Refused("InsufficientFunds", "INSUFFICIENT_FUNDS")
            self.hold(order, needed)
            return order
        if post_only and [o for o in self.crossing(order) if not o.due]:
            order.status = "rejected"
            return order
        self.take(order, available=self.balance(user, self.hold_asset(side))[0])
        self.run_stops()
        return order

    def refuse_reached_stop(self, side, stop_price):
        last = self.last_price
        if last is not None and (last >= stop_price if side == "buy" else last <= stop_price):
            raise Refused("InvalidInput", "INVALID")

    def run_stops(self):
        """Trigger every pending stop the command's trades reached, earliest accepted first;
        the trades of each may reach more."""
        crossed = {}

        def reached_by(trades):
            if not trades:
                return
            low, high = min(t[0] for t in trades), max(t[0] for t in trades)
            for order in self.orders.values():
                if order.status != "pending":
                    continue
                if order.type == "trailing_stop":  # trade by trade, as they moved it (`trail`)
                    if order.reached:
                        crossed.setdefault(order.id, order)
                elif order.stop_price <= high if order.side == "buy" else order.stop_price >= low:
                    crossed.setdefault(order.id, order)

        reached_by(self.trades)
        slot = 0
        while crossed:
            stop = min(crossed.values(), key=lambda order: order.priority)
            del crossed[stop.id]
            if stop.due:
                self.expire_due(stop)
                continue
            if stop.leg == "stop" and not self.list_stop_triggers(stop):
                continue
            slot += 1
            event("a stop triggered" if slot == 1 else "stops triggered in a cascade")
            stop.triggered, stop.priority = True, self.next_priority()
            if stop.offset is not None:  # a trailing stop's limit, beyond its stop (a sell's: a tick at least)
                limit = stop.stop_price + stop.offset if stop.side == "buy" else stop.stop_price - stop.offset
                stop.price = max(limit, TICK)
            available = self.balance(stop.user, self.hold_asset(stop.side))[0] + stop.held
            market_like = stop.type == "stop_market" or (stop.type == "trailing_stop" and stop.price is None)
            budget = stop.held if market_like and stop.side == "buy" else None
            self.release(stop, stop.held)
            first = len(self.trades)
            self.take(stop, available=available, budget=budget, triggered=True)
            reached_by(self.trades[first:])

    def cancel(self, user, order_id):
        order = self.own_open_order(user, order_id)
        self.seq += 1
        self.release(order, order.held)
        order.status = "cancelled"
        if order.list_id is not None:
            self.list_cancel_rest(order)
        return order

    def cancel_all(self, user):
        mine = [order for order in self.orders.values() if order.user == user and order.is_open]
        if mine:
            self.seq += 1
        for order in mine:
            self.release(order, order.held)
            order.status = "cancelled"
        return mine

    def amend(self, user, order_id, price, quantity, stop_price=None):
        order = self.own_open_order(user, order_id)
        if order.list_id is not None:
            raise Refused("InvalidInput", "INVALID")  # an order of a list is not amended
        if order.status == "pending":
            return self.amend_stop(order, price, quantity, stop_price)
        if stop_price is not None:
            if order.type in ("stop_limit", "stop_market", "trailing_stop"):
                raise Refused("Conflict", "STOP_TRIGGERED")
            raise Refused("InvalidInput", "INVALID")
        price = price if price is not None else order.price
        quantity = quantity if quantity is not None else order.quantity
        if quantity <= order.filled or price * (quantity - order.filled) < MIN_NOTIONAL:
            raise Refused("InvalidInput", "INVALID")
        if order.display is not None and quantity < order.display:
            raise Refused("InvalidInput", "INVALID")  # an iceberg's quantity never below its display
        remaining = quantity - order.filled
        self.seq += 1
        if price == order.price and quantity == order.quantity:
            return order
        if price == order.price and quantity < order.quantity:
            # Smaller at the same price: keeps its place in the queue.
            self.release(order, order.held - self.hold_needed(order.side, price, remaining))
            order.quantity, order.remaining = quantity, remaining
            if order.visible is not None:
                order.visible = min(order.visible, remaining)
            return order
        if price != order.price:
            self.refuse_out_of_band(price)
        moved = copy.copy(order)
        moved.price, moved.quantity, moved.remaining = price, quantity, remaining
        if order.post_only and [o for o in self.crossing(moved) if not o.due]:
            raise Refused("Conflict", "POST_ONLY_WOULD_TAKE")
        available = self.balance(user, self.hold_asset(order.side))[0] + order.held
        self.release(order, order.held)
        order.price, order.quantity, order.remaining, order.priority = price, quantity, remaining, self.seq * 1000
        self.take(order, available=available)
        self.run_stops()
        return order

    def amend_stop(self, order, price, quantity, stop_price):
        """A pending stop stays pending: new terms, a new hold, a new place unless it only shrank."""
        if order.type == "trailing_stop":
            raise Refused("InvalidInput", "INVALID")  # it follows the market: cancel and place anew
        if order.type == "stop_market" and price is not None:
            raise Refused("InvalidInput", "INVALID")
        price = price if price is not None else order.price
        quantity = quantity if quantity is not None else order.quantity
        stop_price = stop_price if stop_price is not None else order.stop_price
        keeps_place = price == order.price and stop_price == order.stop_price and quantity <= order.quantity
        if (stop_price if order.type == "stop_market" else price) * quantity < MIN_NOTIONAL:
            raise Refused("InvalidInput", "INVALID")
        if stop_price != order.stop_price:
            self.refuse_reached_stop(order.side, stop_price)
        self.seq += 1
        if (price, quantity, stop_price) != (order.price, order.quantity, order.stop_price):
            available = self.balance(order.user, self.hold_asset(order.side))[0] + order.held
            order.price, order.quantity, order.remaining, order.stop_price = price, quantity, quantity, stop_price
            needed = self.stop_hold_needed(order)
            if available < needed:
                raise Refused("InsufficientFunds", "INSUFFICIENT_FUNDS")
            self.release(order, order.held)
            self.hold(order, needed)
            if not keeps_place:
                order.priority = self.seq * 1000
        return order

    def own_open_order(self, user, order_id):
        order = self.orders.get(order_id)
        if order is None or order.user != user:
            raise Refused("NotFound", "NOT_FOUND")
        if not order.is_open:
            raise Refused("Conflict", "ORDER_NOT_OPEN")
        return order

    # Order lists (orders.engine.lists) ----------------------------------------------

    def place_oco(self, ids, user, side, quantity, price, stop_price, stop_limit_price):
        """An OCO: a limit and a stop on one side; one hold, the larger need; neither may act
        on arrival, judged by the last trade, else the book's middle, else refused."""
        list_id, limit_id, stop_id = ids
        stop_type = "stop_limit" if stop_limit_price is not None else "stop_market"
        if price * quantity < MIN_NOTIONAL or (stop_limit_price or stop_price) * quantity < MIN_NOTIONAL:
            raise Refused("InvalidInput", "INVALID")
        self.refuse_out_of_band(price)
        reference = self.last_price
        if reference is None:
            bids, asks = self.resting("buy"), self.resting("sell")
            if not bids or not asks:
                raise Refused("InvalidInput", "INVALID")
            reference = ((max(o.price for o in bids) + min(o.price for o in asks)) / 2).quantize(QUANTUM)
        if (side == "sell" and not stop_price < reference < price) or (
            side == "buy" and not price < reference < stop_price
        ):
            raise Refused("InvalidInput", "INVALID")
        self.seq += 1
        limit = RefOrder(limit_id, user, side, "limit", "GTC", False, price, quantity, quantity, self.seq * 1000)
        stop = RefOrder(
            stop_id, user, side, stop_type, "GTC" if stop_limit_price else "IOC", False, stop_limit_price, quantity,
            quantity, self.seq * 1000, status="pending", stop_price=stop_price,
        )  # fmt: skip
        limit.list_id = stop.list_id = list_id
        limit.leg, stop.leg = "limit", "stop"
        available = self.balance(user, self.hold_asset(side))[0]
        if available < max(self.hold_needed(side, price, quantity), self.stop_hold_needed(stop)):
            raise Refused("InsufficientFunds", "INSUFFICIENT_FUNDS")
        self.orders[stop_id] = stop
        self.orders[limit_id] = limit
        event("an OCO placed")
        self.take(limit, available=available)
        self.run_stops()
        return limit

    def list_mates(self, order):
        return [o for o in self.orders.values() if o.list_id == order.list_id and o.id != order.id]

    def list_limit_filled(self, limit):
        for stop in self.list_mates(limit):
            if stop.status == "pending":
                event("an OCO's fill cancelled its stop")
                stop.status = "cancelled"

    def list_limit_rested(self, limit):
        for stop in self.list_mates(limit):
            if stop.status == "pending":
                extra = self.stop_hold_needed(stop) - limit.held
                if extra > 0:
                    self.hold(limit, extra)

    def list_stop_triggers(self, stop):
        """Whether a crossed stop of an OCO still triggers; if so its limit is cancelled and
        the hold moves to the stop."""
        if stop.status != "pending":
            event("an OCO's stop, reached, was cancelled by its limit's fill first")
            return False
        event("an OCO's stop triggered")
        for limit in self.list_mates(stop):
            if limit.in_book:
                self.release(limit, limit.held)
                limit.status = "cancelled"
        self.hold(stop, self.stop_hold_needed(stop))
        return True

    def list_cancel_rest(self, order):
        for mate in self.list_mates(order):
            if mate.is_open:
                self.release(mate, mate.held)
                mate.status = "cancelled"

    # Matching -----------------------------------------------------------------------

    def hold_asset(self, side):
        return "USD" if side == "buy" else "QTX"

    def crossing(self, taker):
        """Resting orders the taker may meet, best price first, then earliest."""
        if taker.side == "buy":
            book = [o for o in self.resting("sell") if taker.price is None or o.price <= taker.price]
            return sorted(book, key=lambda o: (o.price, o.priority))
        book = [o for o in self.resting("buy") if taker.price is None or o.price >= taker.price]
        return sorted(book, key=lambda o: (-o.price, o.priority))

    def resting(self, side):
        return [o for o in self.orders.values() if o.side == side and o.in_book]

    def take(self, taker, *, available, budget=None, triggered=False):
        """Check funds, trade what crosses, then rest or expire what is left. A triggered
        stop is never refused: a stop-market buy spends at most `budget`, what it held."""
        book = [o for o in self.crossing(taker) if o is not taker]
        priced = taker.price is not None  # a limit, a stop-limit, a trailing stop with a limit
        if self.band is not None and not priced:
            # A market order, or a triggered stop-market, never trades outside the band.
            low, high = self.band
            book = [o for o in book if (o.price <= high if taker.side == "buy" else o.price >= low)]
        elif (
            self.band is not None
            and triggered
            and taker.type in ("stop_limit", "trailing_stop")
            and not self.band[0] <= taker.price <= self.band[1]
        ):
            event("a triggered stop-limit outside the band expired")
            taker.status = "expired"  # what it held was released when it triggered
            return
        if not priced and taker.side == "buy":
            budget = budget if triggered else available
        elif not priced:
            if available < taker.remaining:
                raise Refused("InsufficientFunds", "INSUFFICIENT_FUNDS")
        elif available < self.hold_needed(taker.side, taker.price, taker.remaining):
            raise Refused("InsufficientFunds", "INSUFFICIENT_FUNDS")

        if taker.time_in_force == "FOK" and not self.fills_completely(taker, book, budget):
            book = []
        met_own = False
        filled = D(0)
        index = -1
        while index + 1 < len(book):  # `book` grows when an iceberg shows its next slice
            index += 1
            maker = book[index]
            if taker.remaining == 0:
                break
            if maker.due:
                event("a GTD order past its time met by a taker")
                self.expire_due(maker)
                continue
            if maker.user == taker.user:
                # Self-trade prevention, as the taker's mode says.
                if taker.stp != "expire_taker":
                    event(f"self-trade prevention: {taker.stp}")
                    self.release(maker, maker.held)
                    maker.status = "cancelled"
                    if maker.list_id is not None:
                        self.list_cancel_rest(maker)
                if taker.stp == "expire_maker":
                    continue
                met_own = True
                break
            quantity = min(taker.remaining, self.reach(book, index))
            if budget is not None:
                quantity = min(quantity, self.affordable(maker.price, budget))
                if quantity == 0:
                    break
                budget -= self.cost(maker.price, quantity)
            self.trade(taker, maker, quantity)
            filled += quantity
            if maker.display is not None and self.slices_taken(maker, quantity):
                maker.priority = self.next_priority()
                self.behind_its_price(book, index, taker.side)
        others = [maker for maker in book if maker.user != taker.user and not maker.due]
        if budget is not None and filled == 0 and others and not met_own and not triggered:
            raise Refused("InsufficientFunds", "INSUFFICIENT_FUNDS")

        if taker.remaining == 0:
            taker.status = "filled"
        elif priced and taker.time_in_force in ("GTC", "GTD") and not met_own:
            self.hold(taker, self.hold_needed(taker.side, taker.price, taker.remaining))
            taker.status = "partially_filled" if taker.filled else "open"
            if taker.display is not None:
                taker.visible = min(taker.display, taker.remaining)
            if taker.leg == "limit":
                self.list_limit_rested(taker)
        else:
            taker.status = "expired"
            if taker.list_id is not None and taker.leg != "entry":
                self.list_cancel_rest(taker)  # an expired order of a list ends it, as a cancel would

    def fills_completely(self, taker, book, budget):
        wanted = taker.remaining
        book = [copy.copy(maker) for maker in book]  # icebergs' slices taken on copies
        index = -1
        slots = self.slots
        while index + 1 < len(book):
            index += 1
            maker = book[index]
            if maker.due:
                continue
            if maker.user == taker.user:
                if taker.stp == "expire_maker":
                    continue
                return False
            quantity = min(wanted, self.reach(book, index))
            if budget is not None:
                if self.affordable(maker.price, budget) < quantity:
                    return False
                budget -= self.cost(maker.price, quantity)
            wanted -= quantity
            if wanted == 0:
                return True
            maker.remaining -= quantity
            if maker.display is not None and self.slices_taken(maker, quantity):
                slots += 1
                maker.priority = self.seq * 1000 + slots
                self.behind_its_price(book, index, taker.side)
        return False

    def trade(self, taker, maker, quantity):
        price = maker.price
        notional = price * quantity
        taker_fee = floor8(notional * self.taker_fee)
        maker_fee = floor8(notional * self.maker_fee)
        if taker.side == "buy":
            self.balance(taker.user, "USD")[0] -= notional + taker_fee
            self.balance(taker.user, "QTX")[0] += quantity
        else:
            self.balance(taker.user, "QTX")[0] -= quantity
            self.balance(taker.user, "USD")[0] += notional - taker_fee
        maker.remaining -= quantity
        if maker.side == "buy":
            still_needed = self.hold_needed("buy", price, maker.remaining)
            freed = maker.held - still_needed
            usd = self.balance(maker.user, "USD")
            usd[1] -= freed
            usd[0] += freed - notional - maker_fee
            maker.held = still_needed
            self.balance(maker.user, "QTX")[0] += quantity
        else:
            self.balance(maker.user, "QTX")[1] -= quantity
            maker.held -= quantity
            self.balance(maker.user, "USD")[0] += notional - maker_fee
        self.balance(FEES, "USD")[0] += taker_fee + maker_fee
        maker.status = "filled" if maker.remaining == 0 else "partially_filled"
        taker.remaining -= quantity
        self.trades.append((price, quantity, maker.id, taker.id, taker.side))
        self.last_price = price
        for order in (taker, maker):
            if order.leg == "limit":
                self.list_limit_filled(order)
        self.trail(price)

    # Icebergs -----------------------------------------------------------------------

    def next_priority(self):
        """The next priority slot of the command under way (a triggered stop, a new slice)."""
        self.slots += 1
        return self.seq * 1000 + self.slots

    @staticmethod
    def book_order(taker_side):
        """The order a taker on `taker_side` meets resting orders in: price, then time."""
        return (lambda o: (o.price, o.priority)) if taker_side == "buy" else (lambda o: (-o.price, o.priority))

    def behind_its_price(self, book, index, taker_side):
        """An iceberg's next slice, with its new priority, goes behind the orders at its
        price still to meet; with none there, it already gave the taker all it could."""
        maker = book[index]
        if index + 1 < len(book) and book[index + 1].price == maker.price:
            book[index + 1 :] = sorted([*book[index + 1 :], maker], key=self.book_order(taker_side))

    @staticmethod
    def reach(book, index):
        """What `book[index]` gives a taker now: all it has, but an iceberg with other
        orders behind it at its price only its slice (its next one goes behind them)."""
        maker = book[index]
        if maker.display is None:
            return maker.remaining
        if index + 1 < len(book) and book[index + 1].price == maker.price:
            return maker.visible
        return maker.remaining

    @staticmethod
    def slices_taken(order, quantity):
        """An iceberg gave `quantity` (its remaining already reduced): take it slice by
        slice, each next slice min(display, what remains). True if a new slice showed."""
        left, refilled = order.remaining + quantity, False
        while quantity > 0:
            taken = min(quantity, order.visible)
            order.visible -= taken
            left -= taken
            quantity -= taken
            if order.visible == 0 and left > 0:
                order.visible = min(order.display, left)
                refilled = True
        return refilled and order.remaining > 0

    # Trailing stops -----------------------------------------------------------------

    @staticmethod
    def trailing_stop_at(order, reference):
        """The stop `order` trails `reference` at: the distance, or the percent rounded to
        the tick towards the reference, but a tick away at least."""
        if order.delta is not None:
            return reference - order.delta if order.side == "sell" else reference + order.delta
        if order.side == "sell":
            ticks = (reference * (100 - order.percent) / 100 / TICK).to_integral_value(rounding=ROUND_CEILING)
            return min(ticks * TICK, reference - TICK)  # a tick away at least
        ticks = (reference * (100 + order.percent) / 100 / TICK).to_integral_value(rounding=ROUND_FLOOR)
        return max(ticks * TICK, reference + TICK)

    def trailing_start(self, order, delta, percent, offset):
        if self.last_price is None:
            raise Refused("InvalidInput", "INVALID")  # nothing to trail
        order.delta, order.percent, order.offset = delta, percent, offset
        order.reference = self.last_price
        order.stop_price = self.trailing_stop_at(order, self.last_price)
        if order.stop_price <= 0 or order.stop_price == self.last_price:
            raise Refused("InvalidInput", "INVALID")
        price = order.stop_price
        if offset is not None:
            price = price + offset if order.side == "buy" else price - offset
            if price <= 0:
                raise Refused("InvalidInput", "INVALID")
        if price * order.quantity < MIN_NOTIONAL:
            raise Refused("InvalidInput", "INVALID")
        if offset is None and order.side == "buy":
            price = (order.stop_price * D("1.05") / TICK).to_integral_value(rounding=ROUND_CEILING) * TICK
        order.hold_price = price if order.side == "buy" else None

    def trail(self, price):
        """A trade at `price`: each pending trailing stop it reaches is reached (triggered
        once the command's trades are done); the others trail it if it is their best."""
        for order in self.orders.values():
            if order.type != "trailing_stop" or order.status != "pending" or order.reached or order.triggered:
                continue  # a triggered stop trading now no longer trails
            if price <= order.stop_price if order.side == "sell" else price >= order.stop_price:
                order.reached = True
            elif price > order.reference if order.side == "sell" else price < order.reference:
                event("a trailing stop moved")
                order.reference = price
                order.stop_price = self.trailing_stop_at(order, price)

    # GTD ---------------------------------------------------------------------------

    def expire_due(self, order):
        """A GTD order whose time has come expires: its hold released, out of the book."""
        self.release(order, order.held)
        order.status = "expired"

    def expire_due_orders(self):
        """The expiry job: one command, if any active GTD order is due."""
        due = [order for order in self.orders.values() if order.due and order.is_open]
        if due:
            self.seq += 1
        for order in due:
            self.expire_due(order)
        return sorted(order.id for order in due)

    def hold(self, order, amount):
        funds = self.balance(order.user, self.hold_asset(order.side))
        funds[0] -= amount
        funds[1] += amount
        order.held += amount

    def release(self, order, amount):
        self.hold(order, -amount)


# --- The machine ------------------------------------------------------------------------


def outcome_of(call):
    """What a trader sees of a command: ("ok", value) or ("refused", error class, code)."""
    try:
        return ("ok", call())
    except ServiceError as error:
        return ("refused", type(error).__name__, error.code)
    except Refused as refusal:
        return ("refused", *refusal.args)


traders = st.sampled_from(list(TRADERS))
sides = st.sampled_from(["buy", "sell"])
prices = st.sampled_from(PRICES)


class EngineMatchesReference(RuleBasedStateMachine):
    """One example is one session of trading on a fresh book; the database is rolled back after it.

    The full comparison runs after every step that changed the database, `reconcile()`
    after every RECONCILE_EVERY such steps and after the last. A refused command rolls its
    transaction back, so the checks after the step before still hold; and whatever it might
    have left behind would still be there at the next step's comparison, which is cumulative
    (balances, orders, the book sequence), and at the next reconcile, which reads every
    table whole.
    """

    users: dict  # username -> User, set up once by the test
    market: Market

    def __init__(self):
        super().__init__()
        self.atomic = transaction.atomic()
        self.atomic.__enter__()
        self.last_trade_id = Trade.objects.order_by("-id").values_list("id", flat=True).first() or 0
        self.reference = None
        self.changed = True
        self.unreconciled = 0  # steps that changed the database since the last reconcile()

    def teardown(self):
        try:
            # Hypothesis tears down in a `finally`: after a failed step the database is known
            # wrong, and a reconcile's failure here would take the place of the step's own.
            if self.unreconciled and sys.exc_info()[0] is None:
                assert reconcile() == []
        finally:
            transaction.set_rollback(True)
            self.atomic.__exit__(None, None, None)

    @initialize(maker_fee=st.sampled_from(RATES), taker_fee=st.sampled_from(RATES), price_band=st.sampled_from(BANDS))
    def open_the_market(self, maker_fee, taker_fee, price_band):
        Market.objects.filter(pk=self.market.pk).update(maker_fee=maker_fee, taker_fee=taker_fee, price_band=price_band)
        self.reference = ReferenceExchange(maker_fee, taker_fee, price_band)

    # Commands -----------------------------------------------------------------------

    def place(
        self,
        user,
        side,
        kind,
        quantity,
        price,
        time_in_force,
        post_only,
        stop_price=None,
        stp="expire_taker",
        display=None,
        trailing=None,
    ):
        expire_at = timezone.now() + timedelta(hours=1) if time_in_force == "GTD" else None
        engine = outcome_of(
            lambda: (
                order_place(
                    user=self.users[user],
                    market=self.market,
                    side=side,
                    type=kind,
                    quantity=quantity,
                    price=price,
                    time_in_force=time_in_force,
                    post_only=post_only,
                    stop_price=stop_price,
                    stp=stp,
                    expire_at=expire_at,
                    display_quantity=display,
                    **dict(zip(("trailing_delta", "trailing_percent", "limit_offset"), trailing or (), strict=False)),
                ).order
            )
        )
        order_id = engine[1].pk if engine[0] == "ok" else -1
        expected = outcome_of(
            lambda: self.reference.run(
                self.reference.place,
                order_id,
                user,
                side,
                kind,
                quantity,
                price,
                time_in_force,
                post_only,
                stop_price,
                stp,
                display,
                trailing,
            )
        )
        self.compare(engine, expected)

    @rule(user=traders, side=sides, price=prices, quantity=QUANTITIES)
    def place_resting_order(self, user, side, price, quantity):
        self.place(user, side, "limit", quantity, price, "GTC", False)

    @rule(
        user=traders,
        side=sides,
        price=prices,
        quantity=QUANTITIES,
        time_in_force=st.sampled_from(["GTC", "IOC", "FOK"]),
        post_only=st.booleans(),
        stp=st.sampled_from(STP_MODES),
    )
    def place_limit_order(self, user, side, price, quantity, time_in_force, post_only, stp):
        self.place(user, side, "limit", quantity, price, time_in_force, post_only and time_in_force == "GTC", stp=stp)

    @rule(
        user=traders,
        side=sides,
        quantity=QUANTITIES,
        time_in_force=st.sampled_from(["IOC", "FOK"]),
        stp=st.sampled_from(STP_MODES),
    )
    def place_market_order(self, user, side, quantity, time_in_force, stp):
        self.place(user, side, "market", quantity, None, time_in_force, False, stp=stp)

    @rule(
        user=traders,
        side=sides,
        stop_price=prices,
        price=prices,
        quantity=QUANTITIES,
        time_in_force=st.sampled_from(["GTC", "GTC", "IOC", "FOK"]),
        stp=st.sampled_from(STP_MODES),
    )
    def place_stop_limit_order(self, user, side, stop_price, price, quantity, time_in_force, stp):
        self.place(user, side, "stop_limit", quantity, price, time_in_force, False, stop_price, stp)

    @rule(
        user=traders,
        side=sides,
        stop_price=prices,
        quantity=QUANTITIES,
        time_in_force=st.sampled_from(["IOC", "FOK"]),
        stp=st.sampled_from(STP_MODES),
    )
    def place_stop_market_order(self, user, side, stop_price, quantity, time_in_force, stp):
        self.place(user, side, "stop_market", quantity, None, time_in_force, False, stop_price, stp)

    # GTD (orders.expiry): orders that rest until their time, time that comes, the expiry job.

    @rule(
        user=traders,
        side=sides,
        price=prices,
        quantity=QUANTITIES,
        post_only=st.booleans(),
        stp=st.sampled_from(STP_MODES),
        stop_price=st.one_of(st.none(), st.none(), prices),
    )
    def place_gtd_order(self, user, side, price, quantity, post_only, stp, stop_price):
        """A GTD limit order, or a GTD stop-limit with a stop price."""
        if stop_price is None:
            self.place(user, side, "limit", quantity, price, "GTD", post_only, stp=stp)
        else:
            self.place(user, side, "stop_limit", quantity, price, "GTD", False, stop_price, stp)

    def has_active_gtd(self):
        return self.reference is not None and any(
            o.time_in_force == "GTD" and o.is_open and not o.due for o in self.reference.orders.values()
        )

    @precondition(has_active_gtd)
    @rule(data=st.data())
    def gtd_time_comes(self, data):
        """Time passes for one active GTD order: it is due, the expiry job not run yet."""
        candidates = [
            o.id for o in self.reference.orders.values() if o.time_in_force == "GTD" and o.is_open and not o.due
        ]
        order_id = data.draw(st.sampled_from(candidates))
        Order.objects.filter(pk=order_id).update(expire_at=timezone.now() - timedelta(seconds=1))
        self.reference.orders[order_id].due = True
        self.changed = False

    @precondition(lambda self: self.reference is not None)
    @rule()
    def expiry_job_runs(self):
        engine = outcome_of(lambda: sorted(o.pk for orders in orders_expire_due().values() for o in orders))
        expected = outcome_of(lambda: self.reference.run(self.reference.expire_due_orders))
        if expected[1]:
            event("the expiry job expired GTD orders")
        self.compare(engine, expected)

    # Icebergs: limit orders that show a slice at a time (the slices small, to refill often).

    @rule(
        user=traders,
        side=sides,
        price=prices,
        quantity=QUANTITIES,
        display=st.integers(1, 8).map(lambda n: n * D("0.125")),
        time_in_force=st.sampled_from(["GTC", "GTC", "GTD"]),
        post_only=st.booleans(),
        stp=st.sampled_from(STP_MODES),
    )
    def place_iceberg_order(self, user, side, price, quantity, display, time_in_force, post_only, stp):
        self.place(user, side, "limit", quantity, price, time_in_force, post_only, stp=stp, display=display)

    @precondition(lambda self: self.reference is not None)
    @rule(
        user=traders,
        side=sides,
        # Ticks from the last trade (mostly on the side an OCO needs, now and then not).
        away=st.tuples(st.sampled_from([1, 1, 2, 3, -1, 0]), st.sampled_from([1, 1, 2, 3, -1, 0])),
        stop_limit_offset=st.one_of(st.none(), st.sampled_from([-2, 0, 1, 2])),
        quantity=QUANTITIES,
    )
    def place_oco(self, user, side, away, stop_limit_offset, quantity):
        last = self.reference.last_price or D("100.00")
        up, down = (1, -1) if side == "sell" else (-1, 1)
        price, stop_price = last + up * away[0] * TICK, last + down * away[1] * TICK
        stop_limit_price = None if stop_limit_offset is None else stop_price + stop_limit_offset * TICK
        engine = outcome_of(
            lambda: oco_place(
                user=self.users[user],
                market=self.market,
                side=side,
                quantity=quantity,
                price=price,
                stop_price=stop_price,
                stop_limit_price=stop_limit_price,
            )
        )
        ids = (-1, -1, -1)
        if engine[0] == "ok":
            result = engine[1]
            legs = {order.leg: order.pk for order in result.orders}
            ids = (result.order_list.pk, legs["limit"], legs["stop"])
            engine = ("ok", next(order for order in result.orders if order.leg == "limit"))
        expected = outcome_of(
            lambda: self.reference.run(
                self.reference.place_oco, ids, user, side, quantity, price, stop_price, stop_limit_price
            )
        )
        self.compare(engine, expected)

    # Trailing stops: a distance of a tick or a few, or a percent (some less than a tick).

    @rule(
        user=traders,
        side=sides,
        quantity=QUANTITIES,
        distance=st.one_of(
            st.sampled_from([D("0.01"), D("0.02"), D("0.03")]).map(lambda delta: (delta, None)),
            st.sampled_from([D("0.005"), D("0.01"), D("0.025")]).map(lambda percent: (None, percent)),
        ),
        offset=st.sampled_from([None, None, D("0.01"), D("0.02")]),
        time_in_force=st.sampled_from(["IOC", "FOK", "GTC", "GTD"]),
        stp=st.sampled_from(STP_MODES),
    )
    def place_trailing_stop(self, user, side, quantity, distance, offset, time_in_force, stp):
        if offset is None and time_in_force in ("GTC", "GTD"):
            time_in_force = "IOC"  # a market order never rests: refused, as other tests show
        self.place(
            user, side, "trailing_stop", quantity, None, time_in_force, False, stp=stp, trailing=(*distance, offset)
        )

    def some_order(self, data):
        """Mostly an open order; now and then any order, to meet the closed ones."""
        open_ids = [o.id for o in self.reference.orders.values() if o.is_open]
        pool = data.draw(st.sampled_from(["open", "open", "open", "any"])) if open_ids else "any"
        return data.draw(st.sampled_from(open_ids if pool == "open" else list(self.reference.orders)))

    def has_orders(self):
        return self.reference is not None and bool(self.reference.orders)

    @precondition(has_orders)
    @rule(data=st.data(), impostor=st.sampled_from([None, None, None, None, "alice", "dave"]))
    def cancel(self, data, impostor):
        order_id = self.some_order(data)
        user = impostor or self.reference.orders[order_id].user
        engine = outcome_of(lambda: order_cancel(user=self.users[user], order_id=order_id).status)
        expected = outcome_of(lambda: self.reference.run(self.reference.cancel, user, order_id).status)
        self.compare(engine, expected)

    @precondition(has_orders)
    @rule(data=st.data())
    def cancel_all(self, data):
        user = self.reference.orders[self.some_order(data)].user
        engine = outcome_of(lambda: sorted(o.pk for o in orders_cancel_all(user=self.users[user], market=self.market)))
        expected = outcome_of(lambda: sorted(o.id for o in self.reference.run(self.reference.cancel_all, user)))
        self.compare(engine, expected)

    @precondition(has_orders)
    @rule(
        data=st.data(),
        price=st.one_of(st.none(), prices),
        quantity=st.one_of(st.none(), QUANTITIES),
        stop_price=st.one_of(st.none(), st.none(), prices),
        impostor=st.sampled_from([None, None, None, None, None, "bob"]),
    )
    def amend(self, data, price, quantity, stop_price, impostor):
        order_id = self.some_order(data)
        if price is None and quantity is None and stop_price is None:
            quantity = D("1")
        user = impostor or self.reference.orders[order_id].user
        engine = outcome_of(
            lambda: (
                order_amend(
                    user=self.users[user], order_id=order_id, price=price, quantity=quantity, stop_price=stop_price
                ).order
            )
        )
        expected = outcome_of(
            lambda: self.reference.run(self.reference.amend, user, order_id, price, quantity, stop_price)
        )
        self.compare(engine, expected)

    # Comparing ----------------------------------------------------------------------

    def compare(self, engine, expected):
        if engine[0] == "ok" and expected[0] == "ok":
            got, want = engine[1], expected[1]
            if isinstance(want, RefOrder):
                assert (got.status, got.filled_quantity) == (want.status, want.filled), (got, want)
            else:
                assert got == want
        else:
            assert engine == expected, f"engine {engine}, reference {expected}"
        self.changed = engine[0] == "ok" and engine[1] != []
        if not self.changed:
            return
        trades = list(
            Trade.objects.filter(id__gt=self.last_trade_id)
            .order_by("id")
            .values_list("id", "price", "quantity", "maker_order_id", "taker_order_id", "taker_side")
        )
        if trades:
            self.last_trade_id = trades[-1][0]
        assert [trade[1:] for trade in trades] == self.reference.trades

    @precondition(lambda self: self.reference is not None)
    @invariant()
    def same_book_as_the_reference_and_balanced(self):
        if not self.changed:
            return
        seq = Market.objects.values_list("book_seq", flat=True).get(pk=self.market.pk)
        assert seq == self.reference.seq
        names = {user.pk: name for name, user in self.users.items()}
        balances = {
            (names[user_id], asset): [available, held]
            for user_id, asset, available, held in Balance.objects.values_list(
                "user_id", "asset_id", "available", "held"
            )
            if available or held
        }
        assert balances == {key: funds for key, funds in self.reference.balances.items() if any(funds)}
        orders = {
            pk: [*rest, visible if status in ("open", "partially_filled") else None]
            for pk, status, *rest, visible in Order.objects.values_list(
                "id",
                "status",
                "remaining_quantity",
                "held",
                "priority",
                "price",
                "quantity",
                "stop_price",
                "visible_quantity",
            )
        }
        triggered = set(Order.objects.filter(triggered_at__isnull=False).values_list("id", flat=True))
        assert orders == {
            o.id: [o.remaining, o.held, o.priority, o.price, o.quantity, o.stop_price, o.visible if o.in_book else None]
            for o in self.reference.orders.values()
        }
        statuses = dict(Order.objects.values_list("id", "status"))
        assert statuses == {o.id: o.status for o in self.reference.orders.values()}
        assert triggered == {o.id for o in self.reference.orders.values() if o.triggered}
        self.unreconciled += 1
        if self.unreconciled >= RECONCILE_EVERY:
            self.unreconciled = 0
            assert reconcile() == []

    @precondition(lambda self: self.reference is not None)
    @invariant()
    def lists_done_as_the_reference(self):
        """A list is done once none of its orders is open or pending."""
        if not self.changed:
            return
        expected = {}
        for order in self.reference.orders.values():
            if order.list_id is not None:
                expected[order.list_id] = expected.get(order.list_id, "done") if not order.is_open else "active"
        assert dict(OrderList.objects.values_list("id", "status")) == expected


@pytest.mark.slow
def test_the_engine_trades_like_the_reference_exchange(market, fees):
    market.tick_size, market.lot_size, market.min_notional = TICK, LOT, MIN_NOTIONAL
    market.save()
    users = {name: trader(name, **funds) for name, funds in TRADERS.items()}
    users[FEES] = fees
    EngineMatchesReference.users = users
    EngineMatchesReference.market = market

    # reconcile() walks its tables with .iterator(), which on PostgreSQL opens a server-side
    # cursor: three round trips instead of one, after every step. The tables here are tiny.
    previous = connection.settings_dict.get("DISABLE_SERVER_SIDE_CURSORS", False)
    connection.settings_dict["DISABLE_SERVER_SIDE_CURSORS"] = True
    try:
        run_state_machine_as_test(EngineMatchesReference, settings=settings(PROFILE))
    finally:
        connection.settings_dict["DISABLE_SERVER_SIDE_CURSORS"] = previous
