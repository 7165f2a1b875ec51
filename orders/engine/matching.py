"""One order against the book: what it may trade, at which prices, and how each trade
settles (book lock held).

`execute` takes an order through its matching: the price band, post-only, funds,
fill-or-kill, the trades (`match`), then what rests or expires. `match` walks the resting
orders best first, price then time. Meeting an order of the taker's own user, self-trade
prevention acts as the taker's `stp` says: `expire_taker` stops there and the rest of the
taker expires, the maker untouched; `expire_maker` cancels the maker and goes on;
`expire_both` cancels the maker and expires the taker's rest. `_trade` settles one trade
in memory, as postings, fills and a trade for the command to write.

A market order, or a triggered stop-market, never trades outside the market's price band
(`Command.band`): the band's bound is its price limit, and what it could not trade there
expires. A triggered stop-limit whose limit lies outside the band expires.
"""

from decimal import Decimal
from typing import TYPE_CHECKING

from accounts.models import LedgerEntry
from marketdata.models import Side, Trade
from quantumtrades.core.errors import Conflict, ErrorCode
from quantumtrades.core.money import MONEY_QUANTUM, ZERO, money

from ..models import OPEN_STATUSES, Fill, Order, OrderStatus, SelfTradePrevention, TimeInForce
from . import lists
from .auction import breaker_prefix, breaker_stops, iceberg_filled
from .rules import RESTING_TIMES_IN_FORCE, book_quantity, fee_for, hold_for, insufficient, order_reference

if TYPE_CHECKING:
    from .command import Command

Kind = LedgerEntry.Kind


def execute(command: "Command", taker: Order, *, new: bool, triggered: bool = False) -> list[Fill]:
    """Match `taker` against the book, hold for what rests, write it all (book lock held).

    `taker.held` is what the order already holds (an amended order, a triggered stop); a
    new order holds nothing yet. A triggered stop's stage is written, not finished: the
    command that triggered it finishes (`stops.run_crossed`). It trades on what it held
    since acceptance and is never refused: what it cannot pay for expires.
    """
    market = command.market
    command.met_own_order = False
    opposite = Side.SELL if taker.side == Side.BUY else Side.BUY
    limit = taker.price
    if market.price_band is not None and command.band is not None:
        if taker.price is None:  # a market order, a triggered stop-market or trailing stop
            limit = command.band.limit_for(taker.side)
        elif triggered and not command.band.holds(taker.price):  # a stop-limit, a trailing stop's limit
            # It can no longer be refused: it expires, and what it held is released.
            command.lock_balances({taker.user_id})
            command.release(taker, taker.held)
            _rest_or_expire(command, taker, False)
            return command.flush(taker)
    own = taker.user_id if taker.stp == SelfTradePrevention.EXPIRE_MAKER else None
    makers = command.resting(opposite, limit, taker.remaining_quantity, own=own)

    if taker.post_only and _live(command, makers):
        if new:
            taker.status = OrderStatus.REJECTED
            return command.finish(taker)
        raise Conflict(
            "The new price would take liquidity, which a post-only order may not.", code=ErrorCode.POST_ONLY_WOULD_TAKE
        )

    balances = command.lock_balances({taker.user_id, *(m.user_id for m in makers)})
    hold_asset = market.quote_id if taker.side == Side.BUY else market.base_id
    available = balances[(taker.user_id, hold_asset)].available + taker.held

    budget, needed = _spending(market, taker, available, triggered)
    if available < needed:
        if not triggered:
            raise insufficient(hold_asset, needed, available)
        # Only when the market's fees rose since the stop was accepted: it cannot pay.
        makers = []

    if taker.time_in_force == TimeInForce.FOK and not _fills_completely(
        command, taker, allowed := breaker_prefix(command, makers), budget
    ):
        if len(allowed) < len(makers) and _fills_completely(command, taker, makers, budget):
            breaker_stops(command, makers[len(allowed)].price)  # the circuit breaker stopped it
        makers = []  # kill: no trade at all
    # An amended order gives back its old hold first; what still rests is held again below.
    if taker.held:
        command.release(taker, taker.held)
    filled = match(command, taker, makers, budget=budget)
    others = (
        [maker for maker in _live(command, makers) if maker.user_id != taker.user_id]
        if budget is not None and not filled
        else []
    )
    if others and not command.met_own_order and not triggered and not market.in_auction:
        # There was something to buy, but not even one lot of it was affordable (fee included,
        # or the message would claim a need below what is available).
        one_lot = money(others[0].price * market.lot_size)
        raise insufficient(hold_asset, one_lot + fee_for(one_lot, market.taker_fee), available)

    # Self-trade prevention (expire_taker, expire_both): having met its owner's resting
    # order, the rest expires.
    rests = (
        taker.price is not None
        and taker.time_in_force in RESTING_TIMES_IN_FORCE
        and taker.remaining_quantity > 0
        and not command.met_own_order
        and available >= needed
    )
    _rest_or_expire(command, taker, rests)
    return command.flush(taker) if triggered else command.finish(taker)


def _spending(market, taker: Order, available: Decimal, triggered: bool) -> tuple[Decimal | None, Decimal]:
    """(budget, needed): what a market buy may spend, or what any other order needs available."""
    if taker.price is not None:  # limit, stop-limit, a trailing stop triggered as a limit
        return None, hold_for(market=market, side=taker.side, price=taker.price, quantity=taker.remaining_quantity)
    if taker.side == Side.BUY:
        # A market buy spends at most what is available; a triggered stop-market buy at
        # most what it held (see rules.STOP_MARKET_BUY_MARGIN).
        return (taker.held if triggered else available), ZERO
    return None, taker.remaining_quantity


def _rest_or_expire(command: "Command", taker: Order, rests: bool) -> None:
    """Put what is left of `taker` in the book, holding for it, or expire it."""
    if rests:
        command.hold(
            taker,
            hold_for(
                market=command.market,
                side=taker.side,
                price=taker.price,
                quantity=taker.remaining_quantity,
            ),
        )
        if taker.display_quantity is not None:  # an iceberg shows its first slice
            taker.visible_quantity = min(taker.display_quantity, taker.remaining_quantity)
        command.level_deltas[(taker.side, taker.price)] += book_quantity(taker)
        if taker.status not in OPEN_STATUSES:
            taker.status = OrderStatus.OPEN
    elif taker.remaining_quantity > 0:
        taker.status = OrderStatus.EXPIRED
    if not rests and taker.visible_quantity is not None:
        taker.visible_quantity = ZERO  # out of the book: shows nothing
    taker.updated_at = command.now
    if taker.order_list_id:
        lists.rested(command, taker)


def _fills_completely(command: "Command", taker: Order, makers: list[Order], budget) -> bool:
    """Whether `taker` would fill completely against `makers`: fill-or-kill's test."""
    market = command.market
    wanted, budget_left = taker.remaining_quantity, budget
    # What `match` would do, on copies: an iceberg's slices as it would meet them.
    if any(maker.visible_quantity is not None for maker in makers):
        makers = [_IcebergView(maker) if maker.visible_quantity is not None else maker for maker in makers]
    for index, maker in enumerate(makers):
        if maker.expire_at is not None and maker.expire_at <= command.now:
            continue  # a GTD order past its time: expired on the way (`_expire_due_maker`)
        if maker.user_id == taker.user_id:
            if taker.stp == SelfTradePrevention.EXPIRE_MAKER:
                continue  # cancelled on the way, and matching goes on
            return False
        reach = maker.remaining_quantity if maker.visible_quantity is None else _reach(makers, index)
        quantity = min(wanted, reach)
        if budget_left is not None:
            quantity = min(quantity, _affordable(market, maker.price, budget_left))
            notional = money(maker.price * quantity)
            budget_left -= notional + fee_for(notional, market.taker_fee)
            if quantity < min(wanted, reach):
                return False
        wanted -= quantity
        if wanted <= 0:
            return True
        if maker.visible_quantity is not None and maker.take(quantity):
            _requeue(makers, index)
    return wanted <= 0


class _IcebergView:
    """An iceberg as fill-or-kill's test walks it: its slices taken on a copy."""

    def __init__(self, order: Order):
        self.order = order
        self.user_id, self.price, self.expire_at = order.user_id, order.price, order.expire_at
        self.display_quantity = order.display_quantity
        self.visible_quantity, self.remaining_quantity = order.visible_quantity, order.remaining_quantity

    def take(self, quantity: Decimal) -> bool:
        """Take `quantity`; True when the next slice shows (it goes behind its price's orders)."""
        shown = self.visible_quantity
        self.remaining_quantity -= quantity
        if quantity < shown:
            self.visible_quantity = shown - quantity
            return False
        if self.remaining_quantity == 0:
            self.visible_quantity = ZERO
            return False
        left = self.display_quantity - (quantity - shown) % self.display_quantity
        self.visible_quantity = min(left, self.remaining_quantity)
        return True


def match(command: "Command", taker: Order, makers: list[Order], *, budget: Decimal | None = None) -> Decimal:
    """Trade `taker` against `makers` (best first) in memory; return the quantity filled.

    Meets an order of the taker's own user as the taker's `stp` says (self-trade
    prevention, see the module's docstring), and, for a market buy, stops where `budget`
    (quote funds) runs out.
    """
    market = command.market
    filled = ZERO
    # An iceberg that refills goes back in `makers` behind the orders at its price (`_requeue`).
    for index, maker in enumerate(makers):
        # `_trade` has already taken earlier fills off the taker's remaining quantity.
        remaining = taker.remaining_quantity
        if remaining <= 0:
            break
        if maker.expire_at is not None and maker.expire_at <= command.now:
            _expire_due_maker(command, maker)
            continue
        if maker.user_id == taker.user_id:
            if taker.stp != SelfTradePrevention.EXPIRE_TAKER:
                _cancel_maker(command, maker)
            if taker.stp == SelfTradePrevention.EXPIRE_MAKER:
                continue
            command.met_own_order = True
            break
        quantity = min(remaining, maker.remaining_quantity if maker.visible_quantity is None else _reach(makers, index))
        if budget is not None:
            quantity = min(quantity, _affordable(market, maker.price, budget))
            if quantity <= 0:
                break
        if breaker_stops(command, maker.price):
            break  # not made: the market is in a call auction from here (`auction`)
        if budget is not None:
            notional = money(maker.price * quantity)
            budget -= notional + fee_for(notional, market.taker_fee)
        _trade(command, taker, maker, quantity)
        filled += quantity
        if maker.visible_quantity is not None and iceberg_filled(command, maker, quantity):
            _requeue(makers, index)
    return filled


# --- Icebergs ---------------------------------------------------------------------------
# An iceberg in the book shows `visible_quantity` (a slice of at most `display_quantity`);
# a taker takes at most that slice, and the next slice shows with a new time priority
# (`auction.iceberg_filled`), behind every order already at its price. When no other order
# at its price stands behind it, the next slices would meet the same taker at once: the
# taker takes them in the same trade, as many as it wants (one trade, one new priority).


def _reach(makers: list[Order], index: int) -> Decimal:
    """What the iceberg `makers[index]` can give a taker now: its shown slice, or all of it
    when no other order at its price comes after it."""
    maker = makers[index]
    if index + 1 < len(makers) and makers[index + 1].price == maker.price:
        return maker.visible_quantity
    return maker.remaining_quantity


def _requeue(makers: list[Order], index: int) -> None:
    """Put the refilled iceberg `makers[index]` back behind the orders at its price."""
    maker = makers[index]
    after = index + 1
    while after < len(makers) and makers[after].price == maker.price:
        after += 1
    if after > index + 1:
        makers.insert(after, maker)


def _cancel_maker(command: "Command", maker: Order) -> None:
    """Self-trade prevention's cancel of the taker's own resting order: its hold released,
    its level reduced, as if its owner had cancelled it."""
    command.release(maker, maker.held)
    command.level_deltas[(maker.side, maker.price)] -= book_quantity(maker)
    maker.status = OrderStatus.CANCELLED
    maker.updated_at = command.now
    command.changed_orders[maker.pk] = maker
    if maker.order_list_id:
        lists.leg_cancelled(command, maker)


def _live(command: "Command", makers: list[Order]) -> list[Order]:
    """The makers that are not GTD orders past their time (those expire when met)."""
    return [maker for maker in makers if maker.expire_at is None or maker.expire_at > command.now]


def _expire_due_maker(command: "Command", maker: Order) -> None:
    """A GTD order met past its expire_at, before the expiry job got to it: it expires
    (its hold released, its level reduced) instead of trading, and matching goes on."""
    command.release(maker, maker.held)
    command.level_deltas[(maker.side, maker.price)] -= book_quantity(maker)
    maker.status = OrderStatus.EXPIRED
    maker.updated_at = command.now
    command.changed_orders[maker.pk] = maker


def _affordable(market, price: Decimal, budget: Decimal) -> Decimal:
    """The largest whole number of lots a market buy can pay for at `price`, fee included."""
    lot = market.lot_size
    # An upper bound to count down from: the fee charged rounds down, by less than one
    # quantum, so a budget up to one quantum short of the exact-fee cost still pays.
    lots = ((budget + MONEY_QUANTUM) / (price * (1 + market.taker_fee))) // lot
    quantity = money(lots * lot)
    while quantity > 0:
        notional = money(price * quantity)
        if notional + fee_for(notional, market.taker_fee) <= budget:
            return quantity
        quantity -= lot
    return ZERO


def _trade(command: "Command", taker: Order, maker: Order, quantity: Decimal) -> None:
    """Settle one trade of `quantity` at the maker's price, in the command's stage."""
    market = command.market
    price = maker.price
    notional = money(price * quantity)
    taker_fee = fee_for(notional, market.taker_fee)
    maker_fee = fee_for(notional, market.maker_fee)
    base, quote = market.base_id, market.quote_id
    now = command.now
    post = command.post

    # The maker: its hold pays for its side of the trade, the rest of the hold that
    # this quantity no longer needs is released.
    old_hold = maker.held
    _apply_fill(maker, quantity, notional, now)
    maker.held = hold_for(
        market=market,
        side=maker.side,
        price=maker.price,
        quantity=maker.remaining_quantity,
    )
    maker_ref = order_reference(maker)
    if maker.side == Side.BUY:
        spent = notional + maker_fee
        released = old_hold - maker.held - spent
        post(maker.user_id, quote, Kind.TRADE, held=-notional, reference=maker_ref)
        post(maker.user_id, quote, Kind.FEE, held=-maker_fee, reference=maker_ref)
        post(maker.user_id, quote, Kind.RELEASE, available=released, held=-released, reference=maker_ref)
        post(maker.user_id, base, Kind.TRADE, available=quantity, reference=maker_ref)
    else:
        post(maker.user_id, base, Kind.TRADE, held=-quantity, reference=maker_ref)
        post(maker.user_id, quote, Kind.TRADE, available=notional, reference=maker_ref)
        post(maker.user_id, quote, Kind.FEE, available=-maker_fee, reference=maker_ref)

    # The taker settles from available funds (its hold was checked, see `rules`).
    _apply_fill(taker, quantity, notional, now)
    taker_ref = order_reference(taker)
    if taker.side == Side.BUY:
        post(taker.user_id, quote, Kind.TRADE, available=-notional, reference=taker_ref)
        post(taker.user_id, quote, Kind.FEE, available=-taker_fee, reference=taker_ref)
        post(taker.user_id, base, Kind.TRADE, available=quantity, reference=taker_ref)
    else:
        post(taker.user_id, base, Kind.TRADE, available=-quantity, reference=taker_ref)
        post(taker.user_id, quote, Kind.TRADE, available=notional, reference=taker_ref)
        post(taker.user_id, quote, Kind.FEE, available=-taker_fee, reference=taker_ref)

    command.fee_total += taker_fee + maker_fee
    if maker.visible_quantity is None:  # an iceberg's level follows its slices (`match`)
        command.level_deltas[(maker.side, maker.price)] -= quantity
    command.changed_orders[maker.pk] = maker
    trade = Trade(
        market=market,
        price=price,
        quantity=quantity,
        taker_side=taker.side,
        maker_order_id=maker.pk,
        taker_order_id=0,  # set once the taker is saved
        seq=command.seq,
        created_at=now,
    )
    command.trades.append(trade)
    for order, role, fee in ((taker, Fill.Role.TAKER, taker_fee), (maker, Fill.Role.MAKER, maker_fee)):
        command.fills.append(
            Fill(
                order=order,
                user_id=order.user_id,
                market=market,
                side=order.side,
                role=role,
                price=price,
                quantity=quantity,
                fee=fee,
                created_at=now,
            )
        )
    # An order list's orders act on each other (`lists`).
    if taker.order_list_id:
        lists.filled(command, taker, quantity)
    if maker.order_list_id:
        lists.filled(command, maker, quantity)


def _apply_fill(order: Order, quantity: Decimal, notional: Decimal, now) -> None:
    order.filled_quantity += quantity
    order.remaining_quantity -= quantity
    order.filled_notional += notional
    if order.remaining_quantity == 0:
        order.status = OrderStatus.FILLED
    else:
        order.status = OrderStatus.PARTIALLY_FILLED
    order.updated_at = now  # the command's time, as every change it makes
