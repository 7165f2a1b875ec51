"""What an order must satisfy before it meets the book, what it holds and what it pays.

Pure rules: no database, no lock, nothing remembered. The REST API, the order ticket,
`/ws` and the engine all judge an order here, so an order refused in one place is refused
everywhere with the same words. A check that needs the book (the last trade, the resting
orders) runs in the command, under the book lock.

Money (docs/ARCHITECTURE.md, "Money"): a buy holds price x quantity plus the taker fee in the quote
asset; a sell holds the quantity in the base asset. Fees are charged in the quote asset
(the buyer pays notional + fee, the seller receives notional - fee) and credited to the
fee account. Fees actually charged round down, held fee reserves round up, so what an
order holds always covers what it can still spend. What executes at once settles
straight from available funds, after the whole order's hold was checked, so price
improvement is never held; what rests is held until it fills, is cancelled or expires.
A stop order holds from acceptance what it will need once triggered (`stop_hold_for`).
"""

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import ROUND_CEILING, ROUND_FLOOR, Decimal

from django.utils import timezone
from django.utils.dateparse import parse_datetime

from marketdata.models import Market, Side
from quantumtrades.core.errors import Conflict, ErrorCode, InsufficientFunds, InvalidInput
from quantumtrades.core.money import MONEY_MAX, money, money_ceil, money_checked, money_floor

from ..models import (
    ACTIVE_STATUSES,
    OPEN_STATUSES,
    PRICED_TYPES,
    STOP_TYPES,
    Leg,
    Order,
    OrderStatus,
    OrderType,
    SelfTradePrevention,
    TimeInForce,
)

# A stop-market buy has no price to size its hold by. It holds for its quantity at its
# stop price plus this margin (rounded up to the tick), plus the fee reserve; once
# triggered it buys, as a market order, what that hold pays for: when the price gaps past
# the margin it fills less, never more than it held, and what it does not spend is released.
STOP_MARKET_BUY_MARGIN = Decimal("0.05")
# The market's fields `order_validate` judges an order by. The engine checks an order
# against a copy of the market read before the book lock, and again under the lock when
# one of these changed meanwhile.
MARKET_RULES = ("tick_size", "lot_size", "min_notional", "max_order_quantity", "max_order_notional")
# The times in force of an order that may rest in the book.
RESTING_TIMES_IN_FORCE = (TimeInForce.GTC, TimeInForce.GTD)
# A GTD order's expire_at lies at least this far ahead when it is placed: an order that
# would expire before it could be seen is a mistake, not a strategy.
GTD_MIN_AHEAD = timedelta(seconds=5)
# A trailing stop's trailing_percent: above 0, at most this.
TRAILING_PERCENT_MAX = Decimal(50)


@dataclass(frozen=True)
class OrderRequest:
    """A validated order: every field checked against the market's rules."""

    market: Market
    side: str
    type: str
    quantity: Decimal
    price: Decimal | None
    time_in_force: str
    post_only: bool
    client_order_id: str | None
    stop_price: Decimal | None = None
    stp: str = SelfTradePrevention.EXPIRE_TAKER
    expire_at: datetime | None = None
    display_quantity: Decimal | None = None
    trailing_delta: Decimal | None = None
    trailing_percent: Decimal | None = None
    limit_offset: Decimal | None = None


# --- A new order ----------------------------------------------------------------------


def order_validate(
    *,
    market: Market,
    side,
    type=OrderType.LIMIT,
    quantity,
    price=None,
    time_in_force=None,
    post_only=False,
    client_order_id=None,
    stop_price=None,
    stp=SelfTradePrevention.EXPIRE_TAKER,
    expire_at=None,
    display_quantity=None,
    trailing_delta=None,
    trailing_percent=None,
    limit_offset=None,
    now: datetime | None = None,
) -> OrderRequest:
    """Check an order against the market's rules without touching the book.

    The checks run in a fixed order and the first that fails names the field: a client
    sees the same error for the same order whichever door it came through.
    """
    if side not in Side.values:
        raise InvalidInput("side must be 'buy' or 'sell'.", field="side")
    if type not in OrderType.values:
        raise InvalidInput(
            "type must be 'limit', 'market', 'stop_limit', 'stop_market' or 'trailing_stop'.", field="type"
        )
    trailing = (trailing_delta, trailing_percent, limit_offset)
    if type == OrderType.TRAILING_STOP:
        return _trailing_request(
            market,
            side,
            quantity,
            price,
            time_in_force,
            post_only,
            client_order_id,
            stop_price,
            stp,
            expire_at,
            display_quantity,
            *trailing,
            now,
        )
    for name, value in zip(("trailing_delta", "trailing_percent", "limit_offset"), trailing, strict=True):
        if value is not None:
            raise InvalidInput(f"Only trailing stops take a {name}.", field=name)
    stop_price = _stop_price_of(market, type, stop_price, post_only)
    time_in_force = _time_in_force_of(type, time_in_force)
    expire_at = _expire_at_of(time_in_force, expire_at, now)
    if not isinstance(post_only, bool):
        raise InvalidInput("post_only must be true or false.", field="post_only")
    quantity = amount(quantity, "quantity")
    multiple_of(quantity, market.lot_size, "quantity", "lot size")
    if type in PRICED_TYPES:
        price = _limit_price_of(market, type, price, quantity)
    else:
        _market_order_check(market, type, price, time_in_force, post_only, stop_price, quantity)
    # A market order's notional is judged under the book lock, at its band (`market_order_size_check`).
    size_check(market, quantity, price if type in PRICED_TYPES else stop_price)
    if post_only and time_in_force not in RESTING_TIMES_IN_FORCE:
        raise InvalidInput("A post-only order rests in the book: use GTC or GTD.", field="post_only")
    if display_quantity is not None:
        display_quantity = _display_quantity_of(market, type, time_in_force, display_quantity, quantity, price)
    _client_order_id_check(client_order_id)
    if stp not in SelfTradePrevention.values:
        raise InvalidInput("stp must be 'expire_taker', 'expire_maker' or 'expire_both'.", field="stp")
    return OrderRequest(
        market,
        side,
        type,
        quantity,
        price,
        time_in_force,
        post_only,
        client_order_id,
        stop_price,
        stp,
        expire_at,
        display_quantity,
    )


def _stop_price_of(market: Market, type: str, stop_price, post_only) -> Decimal | None:
    """A stop order's stop price, checked; only stop orders have one."""
    if type not in STOP_TYPES:
        if stop_price is not None:
            raise InvalidInput("Only stop orders take a stop_price.", field="stop_price")
        return None
    if stop_price is None:
        raise InvalidInput("A stop order needs a stop_price.", field="stop_price")
    stop_price = amount(stop_price, "stop_price")
    multiple_of(stop_price, market.tick_size, "stop_price", "tick size")
    if post_only:
        raise InvalidInput("A stop order cannot be post only.", field="post_only")
    return stop_price


def _time_in_force_of(type: str, time_in_force) -> str:
    """The order's time in force: GTC for a priced order, IOC for a market one, unless given."""
    if time_in_force is None:
        time_in_force = TimeInForce.GTC if type in PRICED_TYPES else TimeInForce.IOC
    if time_in_force not in TimeInForce.values:
        raise InvalidInput("time_in_force must be GTC, IOC, FOK or GTD.", field="time_in_force")
    if time_in_force == TimeInForce.GTD and type not in PRICED_TYPES:
        raise InvalidInput("GTD is for limit and stop-limit orders: they rest until expire_at.", field="time_in_force")
    return time_in_force


def _expire_at_of(time_in_force: str, expire_at, now: datetime | None) -> datetime | None:
    """A GTD order's expire_at (an ISO 8601 time, UTC unless it says otherwise), at least
    GTD_MIN_AHEAD from `now`; no other order takes one."""
    if time_in_force != TimeInForce.GTD:
        if expire_at is not None:
            raise InvalidInput("Only GTD orders take an expire_at (time_in_force GTD).", field="expire_at")
        return None
    if expire_at is None:
        raise InvalidInput("A GTD order needs an expire_at: when it expires.", field="expire_at")
    if isinstance(expire_at, str):
        try:
            parsed = parse_datetime(expire_at) if len(expire_at) <= 40 else None
        except (ValueError, OverflowError):
            parsed = None
        if parsed is None:
            raise InvalidInput("expire_at must be an ISO 8601 time, such as 2026-12-31T18:00:00Z.", field="expire_at")
        expire_at = parsed
    elif not isinstance(expire_at, datetime):
        raise InvalidInput("expire_at must be an ISO 8601 time, such as 2026-12-31T18:00:00Z.", field="expire_at")
    if timezone.is_naive(expire_at):
        expire_at = expire_at.replace(tzinfo=UTC)
    try:
        expire_at = expire_at.astimezone(UTC)
    except (ValueError, OverflowError):
        raise InvalidInput("expire_at is out of range.", field="expire_at") from None
    now = now or timezone.now()
    if expire_at < now + GTD_MIN_AHEAD:
        raise InvalidInput(
            f"expire_at must be at least {GTD_MIN_AHEAD.seconds} seconds ahead (it is now {now:%Y-%m-%dT%H:%M:%S}Z).",
            field="expire_at",
        )
    return expire_at


def _trailing_request(
    market,
    side,
    quantity,
    price,
    time_in_force,
    post_only,
    client_order_id,
    stop_price,
    stp,
    expire_at,
    display,
    delta,
    percent,
    offset,
    now,
) -> OrderRequest:
    """A trailing stop: a distance (`trailing_delta`, a price, or `trailing_percent`) and,
    to trigger as a limit order, a `limit_offset`. Its stop price follows the market from
    the last trade (set under the book lock, `stops.accept`), so it takes no stop_price and
    no price, and its notional is judged there, at its first stop."""
    if stop_price is not None:
        raise InvalidInput(
            "A trailing stop's stop_price follows the market: give trailing_delta or trailing_percent.",
            field="stop_price",
        )
    if price is not None:
        raise InvalidInput(
            "A trailing stop takes no price: with a limit_offset it triggers as a limit that far beyond its stop.",
            field="price",
        )
    if (delta is None) == (percent is None):
        raise InvalidInput("A trailing stop needs one of trailing_delta or trailing_percent.", field="trailing_delta")
    if delta is not None:
        delta = amount(delta, "trailing_delta")
        multiple_of(delta, market.tick_size, "trailing_delta", "tick size")
    else:
        percent = money_checked(percent, "trailing_percent")
        if not 0 < percent <= TRAILING_PERCENT_MAX or percent != percent.quantize(Decimal("0.001")):
            raise InvalidInput(
                f"trailing_percent must be above 0 and at most {TRAILING_PERCENT_MAX}, with at most 3 decimals.",
                field="trailing_percent",
            )
    if offset is not None:
        offset = amount(offset, "limit_offset")
        multiple_of(offset, market.tick_size, "limit_offset", "tick size")
    if time_in_force is None:
        time_in_force = TimeInForce.GTC if offset is not None else TimeInForce.IOC
    if time_in_force not in TimeInForce.values:
        raise InvalidInput("time_in_force must be GTC, IOC, FOK or GTD.", field="time_in_force")
    if offset is None and time_in_force in RESTING_TIMES_IN_FORCE:
        raise InvalidInput(
            "A trailing stop without a limit_offset triggers as a market order, which never rests: use IOC or FOK.",
            field="time_in_force",
        )
    expire_at = _expire_at_of(time_in_force, expire_at, now)
    if post_only:
        raise InvalidInput("A stop order cannot be post only.", field="post_only")
    if display is not None:
        raise InvalidInput("Only a limit order can be an iceberg.", field="display_quantity")
    quantity = amount(quantity, "quantity")
    multiple_of(quantity, market.lot_size, "quantity", "lot size")
    size_check(market, quantity, None)
    _client_order_id_check(client_order_id)
    if stp not in SelfTradePrevention.values:
        raise InvalidInput("stp must be 'expire_taker', 'expire_maker' or 'expire_both'.", field="stp")
    return OrderRequest(
        market,
        side,
        OrderType.TRAILING_STOP,
        quantity,
        None,
        time_in_force,
        False,
        client_order_id,
        None,
        stp,
        expire_at,
        None,
        delta,
        percent,
        offset,
    )


def trailing_stop_price(side: str, reference: Decimal, delta, percent, tick: Decimal) -> Decimal:
    """A trailing stop's stop price when the best trade price since it was accepted is
    `reference`: a sell's below it, a buy's above, by `delta`, or by `percent` rounded to
    the tick towards the reference (but a tick at least). The engine moves stops by the same rule in SQL
    (`stops.trailing_move`)."""
    if delta is not None:
        return reference - delta if side == Side.SELL else reference + delta
    # Never nearer than a tick: a percent that rounds to nothing would trigger on the very
    # price it trails.
    if side == Side.SELL:
        ticks = (reference * (100 - percent) / 100 / tick).to_integral_value(rounding=ROUND_CEILING)
        return money(min(ticks * tick, reference - tick))
    ticks = (reference * (100 + percent) / 100 / tick).to_integral_value(rounding=ROUND_FLOOR)
    return money(max(ticks * tick, reference + tick))


def trailing_limit_price(side: str, stop_price: Decimal, offset: Decimal) -> Decimal:
    """The limit a triggered trailing stop with a limit_offset trades at: that far beyond its stop."""
    return stop_price + offset if side == Side.BUY else stop_price - offset


def _display_quantity_of(market: Market, type: str, time_in_force: str, display, quantity, price) -> Decimal:
    """An iceberg's display quantity: a limit order that rests (GTC or GTD), showing a
    whole number of lots at a time, no more than its quantity, each slice worth at least
    the minimum notional (a slice too small to be an order would not be one in the book)."""
    if type != OrderType.LIMIT or time_in_force not in RESTING_TIMES_IN_FORCE:
        raise InvalidInput(
            "Only a limit order that rests (GTC or GTD) can be an iceberg with a display_quantity.",
            field="display_quantity",
        )
    display = amount(display, "display_quantity")
    multiple_of(display, market.lot_size, "display_quantity", "lot size")
    if display > quantity:
        raise InvalidInput("display_quantity must be at most the order's quantity.", field="display_quantity")
    if price * display < market.min_notional:
        raise InvalidInput(
            f"price x display_quantity is {(price * display).normalize():f}, below the minimum notional "
            f"of {market.min_notional.normalize():f} {market.quote_id}: each slice shown must reach it.",
            field="display_quantity",
        )
    return display


def _limit_price_of(market: Market, type: str, price, quantity: Decimal) -> Decimal:
    """A limit or stop-limit order's price, checked with its notional."""
    if price is None:
        raise InvalidInput(f"A {type.replace('_', '-')} order needs a price.", field="price")
    price = amount(price, "price")
    multiple_of(price, market.tick_size, "price", "tick size")
    notional = price * quantity
    if notional > MONEY_MAX:
        raise InvalidInput("price x quantity is too large.", field="quantity")
    if notional < market.min_notional:
        raise InvalidInput(
            f"price x quantity is {notional.normalize():f}, below the minimum notional "
            f"of {market.min_notional.normalize():f} {market.quote_id}.",
            field="quantity",
        )
    return price


def _market_order_check(market: Market, type: str, price, time_in_force: str, post_only, stop_price, quantity) -> None:
    """A market or stop-market order has no price and never rests."""
    if price is not None:
        raise InvalidInput(f"A {type.replace('_', '-')} order takes no price.", field="price")
    if time_in_force == TimeInForce.GTC:
        raise InvalidInput("A market order never rests: use IOC or FOK.", field="time_in_force")
    if post_only:
        raise InvalidInput("Only limit orders can be post only.", field="post_only")
    if type == OrderType.STOP_MARKET:
        stop_market_notional_check(market, stop_price, quantity)


def _client_order_id_check(client_order_id) -> None:
    if client_order_id is None:
        return
    if not isinstance(client_order_id, str) or not 1 <= len(client_order_id) <= 64:
        raise InvalidInput("client_order_id must be a string of 1 to 64 characters.", field="client_order_id")
    if not client_order_id.isprintable():
        raise InvalidInput("client_order_id must be printable text.", field="client_order_id")


def stop_market_notional_check(market: Market, stop_price: Decimal, quantity: Decimal) -> None:
    """A stop-market order is judged at its stop price: the price it expects to trade near."""
    if stop_market_buy_price(market, stop_price) * quantity > MONEY_MAX:
        raise InvalidInput("stop_price x quantity is too large.", field="quantity")
    notional = stop_price * quantity
    if notional < market.min_notional:
        raise InvalidInput(
            f"stop_price x quantity is {notional.normalize():f}, below the minimum notional "
            f"of {market.min_notional.normalize():f} {market.quote_id}.",
            field="quantity",
        )


def amount(value, name) -> Decimal:
    """`value` as a positive amount at the money precision, or the error that names `name`."""
    return money(money_checked(value, name))


def multiple_of(amount: Decimal, step: Decimal, name: str, rule: str) -> None:
    if amount % step != 0:
        raise InvalidInput(f"{name} must be a multiple of the {rule} {step.normalize():f}.", field=name)


# --- Size limits and the price band ---------------------------------------------------


def size_check(market: Market, quantity: Decimal, price: Decimal | None) -> None:
    """An order's size against the market's `max_order_quantity` and, when it has a price
    (a limit price, a stop-market's stop price), `max_order_notional` (docs/API.md, "Market
    integrity")."""
    largest = market.max_order_quantity
    if largest is not None and quantity > largest:
        raise InvalidInput(
            f"quantity {quantity.normalize():f} is above this market's limit of {largest.normalize():f} "
            f"{market.base_id} per order.",
            field="quantity",
            code=ErrorCode.ORDER_TOO_LARGE,
        )
    largest = market.max_order_notional
    if largest is not None and price is not None and price * quantity > largest:
        raise InvalidInput(
            f"price x quantity is {(price * quantity).normalize():f}, above this market's limit of "
            f"{largest.normalize():f} {market.quote_id} per order.",
            field="quantity",
            code=ErrorCode.ORDER_TOO_LARGE,
        )


@dataclass(frozen=True)
class Band:
    """The prices a market trades within now: its reference price x (1 +/- price_band),
    the bounds rounded inward to the tick (docs/API.md, "Price bands")."""

    reference: Decimal
    rate: Decimal
    low: Decimal
    high: Decimal
    tick: Decimal

    def limit_for(self, side: str) -> Decimal:
        """The furthest price a taker on `side` may trade at."""
        return self.high if side == Side.BUY else self.low

    def holds(self, price: Decimal) -> bool:
        return self.low <= price <= self.high

    def shown(self, price: Decimal) -> str:
        """A price as the market quotes it: to the tick's places (90.00 for a 0.01 tick)."""
        exponent = self.tick.normalize().as_tuple().exponent
        return f"{price.quantize(Decimal(1).scaleb(exponent)) if exponent < 0 else price.normalize():f}"

    def refusal(self, price: Decimal, name: str = "price") -> InvalidInput:
        return InvalidInput(
            f"{name} {self.shown(price)} is outside the price band: it must be within {self.shown(self.low)} and "
            f"{self.shown(self.high)} ({(self.rate * 100).normalize():f}% around the reference "
            f"{self.shown(self.reference)}).",
            field=name,
            code=ErrorCode.PRICE_OUT_OF_BAND,
        )


def band_of(market: Market, reference: Decimal | None) -> Band | None:
    """The market's band around `reference` (the last trade, else the middle of the book),
    or None: no band rule, or no reference to measure it from."""
    rate = market.price_band
    if rate is None or reference is None:
        return None
    tick = market.tick_size
    low = (reference * (1 - rate) / tick).to_integral_value(rounding=ROUND_CEILING) * tick
    high = (reference * (1 + rate) / tick).to_integral_value(rounding=ROUND_FLOOR) * tick
    return Band(reference, rate, money(low), money(high), tick)


def price_band_check(band: Band | None, price: Decimal | None) -> None:
    """A limit price (a new order's, an amend's new one) must lie within the band."""
    if band is not None and price is not None and not band.holds(price):
        raise band.refusal(price)


def market_order_size_check(market: Market, band: Band | None, side: str, quantity: Decimal) -> None:
    """A market order's notional (book lock held), judged at the band's bound it may trade
    up to, else at the last trade price, else not at all: without a reference there is no
    price to judge it at (docs/API.md, "Market integrity")."""
    price = band.limit_for(side) if band is not None else market.last_price
    size_check(market, quantity, price)


# --- An order in the book -------------------------------------------------------------


def refuse_done(status: str) -> None:
    """Only an order in the book or a pending stop can still be cancelled or amended."""
    if status not in ACTIVE_STATUSES:
        raise Conflict(f"The order is {status}, no longer open.", code=ErrorCode.ORDER_NOT_OPEN)


def amend_terms_check(market: Market, order: Order, price: Decimal, quantity: Decimal) -> Decimal:
    """Check a resting order's new terms; return its new remaining quantity."""
    if order.display_quantity is not None and quantity < order.display_quantity:
        raise InvalidInput(
            f"An iceberg's quantity can not fall below its display_quantity "
            f"{order.display_quantity.normalize():f}: cancel it and place a new one.",
            field="quantity",
        )
    if quantity <= order.filled_quantity:
        raise InvalidInput(
            f"The new quantity must exceed the {order.filled_quantity.normalize():f} already filled.",
            field="quantity",
        )
    remaining = quantity - order.filled_quantity
    size_check(market, quantity, price)
    # The same ceiling as `order_validate`: past it the hold can not even be computed.
    if price * quantity > MONEY_MAX:
        raise InvalidInput("price x quantity is too large.", field="quantity")
    if price * remaining < market.min_notional:
        raise InvalidInput(
            f"price x remaining quantity is below the minimum notional of {market.min_notional.normalize():f}.",
            field="quantity",
        )
    return remaining


def stop_amend_terms_check(market: Market, type: str, price, stop_price: Decimal, quantity: Decimal) -> None:
    """Check a pending stop's new terms as a new stop's would be."""
    if type == OrderType.STOP_MARKET:
        stop_market_notional_check(market, stop_price, quantity)
        size_check(market, quantity, stop_price)
        return
    size_check(market, quantity, price)
    if price * quantity > MONEY_MAX:
        raise InvalidInput("price x quantity is too large.", field="quantity")
    if price * quantity < market.min_notional:
        raise InvalidInput(
            f"price x quantity is below the minimum notional of {market.min_notional.normalize():f}.",
            field="quantity",
        )


# --- Holds and fees -------------------------------------------------------------------


def hold_for(*, market: Market, side: str, price: Decimal | None, quantity: Decimal) -> Decimal:
    """What a resting order of `quantity` at `price` must hold (docs/API.md, "Orders").

    The fee reserve is at the higher of the market's two rates: the order may take
    liquidity when it arrives, and pays the maker fee out of its hold when it rests.
    """
    if side == Side.SELL:
        return quantity
    notional = money(price * quantity)
    return notional + money_ceil(notional * max(market.taker_fee, market.maker_fee))


def fee_for(notional: Decimal, rate: Decimal) -> Decimal:
    return money_floor(notional * rate)


def stop_market_buy_price(market: Market, stop_price: Decimal) -> Decimal:
    """The price a pending stop-market buy holds for (STOP_MARKET_BUY_MARGIN above its stop)."""
    ticks = (stop_price * (1 + STOP_MARKET_BUY_MARGIN) / market.tick_size).to_integral_value(rounding=ROUND_CEILING)
    return money(ticks * market.tick_size)


def stop_hold_for(
    *, market: Market, side: str, type: str, price: Decimal | None, stop_price: Decimal, quantity: Decimal
) -> Decimal:
    """What a pending stop order of `quantity` holds: what it will need once triggered.

    A stop-limit holds like the limit order it becomes; a stop-market sell its quantity;
    a stop-market buy as if it were a limit buy at `stop_market_buy_price`.
    """
    if type == OrderType.STOP_MARKET and side == Side.BUY:
        price = stop_market_buy_price(market, stop_price)
    return hold_for(market=market, side=side, price=price, quantity=quantity)


def order_hold(order: Order) -> Decimal:
    """What an order in the book or a pending stop must hold now (`reconcile` checks it)."""
    if order.status == OrderStatus.PENDING and order.type == OrderType.TRAILING_STOP:
        price = order.trailing_hold_price  # fixed at acceptance: the stop only moves the cheaper way
        return hold_for(market=order.market, side=order.side, price=price, quantity=order.remaining_quantity)
    if order.status == OrderStatus.PENDING:
        return stop_hold_for(
            market=order.market,
            side=order.side,
            type=order.type,
            price=order.price,
            stop_price=order.stop_price,
            quantity=order.remaining_quantity,
        )
    return hold_for(market=order.market, side=order.side, price=order.price, quantity=order.remaining_quantity)


# An order list's pairs that share one hold (docs/API.md, "Order lists"): the leg in the
# book and the stop that would take its place, an OCO's or a bracket's exits.
LIST_PAIRS = {Leg.LIMIT: Leg.STOP, Leg.TAKE_PROFIT: Leg.STOP_LOSS}


def list_holds(orders) -> dict[int, Decimal]:
    """What each active order of one list must hold now, by id (`reconcile` checks it).

    While both orders of a pair wait, the one in the book holds the pair's need, the larger
    of the two orders' needs, and the pending stop nothing: only one of them will ever act.
    Any other order of the list (a bracket's entry, a pair's survivor) holds its own need.
    """
    holds = {order.pk: order_hold(order) for order in orders}
    by_leg = {order.leg: order for order in orders}
    for book_leg, stop_leg in LIST_PAIRS.items():
        in_book, stop = by_leg.get(book_leg), by_leg.get(stop_leg)
        if in_book is None or stop is None:
            continue
        if in_book.status in OPEN_STATUSES and stop.status == OrderStatus.PENDING:
            holds[in_book.pk] = max(holds[in_book.pk], holds[stop.pk])
            holds[stop.pk] = Decimal(0)
    return holds


def book_quantity(order: Order) -> Decimal:
    """What an order in the book shows at its level: an iceberg its visible slice, any
    other order its remaining quantity."""
    return order.remaining_quantity if order.visible_quantity is None else order.visible_quantity


def insufficient(asset, needed, available) -> InsufficientFunds:
    """The refusal of an order that needs more of `asset` than is available."""
    return InsufficientFunds(
        f"Not enough {asset}: the order needs {needed.normalize():f}, {available.normalize():f} is available.",
        field="quantity",
    )


def order_reference(order: Order) -> str:
    """What a ledger entry says it was for."""
    return f"order:{order.pk}"
