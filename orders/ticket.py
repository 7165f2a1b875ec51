"""The order ticket's estimate: what an order would cost if placed now, without placing it.

The ticket shows it while the trader types. It walks the current book the way the engine
would (best price first, a taker pays the maker's price), so a market order is priced
from real depth and a limit order that crosses is split into what trades at once (taker
fee) and what rests (maker fee if it fills later). It is an estimate: the book can move
before the order arrives, and the engine decides.
"""

from dataclasses import dataclass
from decimal import Decimal

from marketdata.models import Market, Side
from marketdata.selectors import BookSnapshot
from quantumtrades.core.money import ZERO, money

from .engine.rules import (
    Band,
    OrderRequest,
    band_of,
    fee_for,
    hold_for,
    stop_hold_for,
    trailing_limit_price,
    trailing_stop_price,
)
from .models import STOP_TYPES, OrderType, TimeInForce


@dataclass(frozen=True)
class Estimate:
    asset_spent: str  # what the order pays with: quote for a buy, base for a sell
    asset_received: str
    takes_quantity: Decimal  # filled at once against the book
    takes_notional: Decimal
    rests_quantity: Decimal  # left in the book (limit GTC only)
    expires_quantity: Decimal  # neither trades nor rests (IOC/FOK/market remainder)
    fee: Decimal  # in the quote asset: taker fee on what takes, maker fee on what rests
    total: Decimal  # a buy's cost in quote (fees included), a sell's proceeds in quote (fees deducted)
    hold: Decimal  # what placing it needs available now (orders/engine/rules.py)
    average_price: Decimal | None  # of the part that trades at once
    post_only_would_take: bool
    fok_would_kill: bool
    # A stop order: nothing trades now; it waits for a trade at its stop price, holding `hold`.
    stop_price: Decimal | None = None


def trailing_stop_now(request: OrderRequest) -> Decimal | None:
    """Where a trailing stop's stop price would start if it arrived now, from the last trade
    (`rules.trailing_stop_price`, as the engine starts it); None when the market never
    traded (the engine refuses it then)."""
    market: Market = request.market
    if market.last_price is None:
        return None
    return trailing_stop_price(
        request.side, market.last_price, request.trailing_delta, request.trailing_percent, market.tick_size
    )


def _stop_estimate_terms(request: OrderRequest) -> tuple[str, Decimal | None, Decimal | None]:
    """The stop type, limit price and stop price a stop order holds for now. A trailing
    stop holds as the stop-market (or, with `limit_offset`, the stop-limit) it would be at
    its first stop price; a buy's stop only moves down, so that hold covers it later too."""
    if request.type != OrderType.TRAILING_STOP:
        return request.type, request.price, request.stop_price
    stop_price = trailing_stop_now(request)
    if stop_price is None or request.limit_offset is None:
        return OrderType.STOP_MARKET, None, stop_price
    return OrderType.STOP_LIMIT, trailing_limit_price(request.side, stop_price, request.limit_offset), stop_price


def ticket_estimate(*, request: OrderRequest, snapshot: BookSnapshot) -> Estimate:
    market: Market = request.market
    buying = request.side == Side.BUY
    if request.type in STOP_TYPES:
        stop_type, price, stop_price = _stop_estimate_terms(request)
        if stop_price is None:
            hold = request.quantity if not buying else ZERO
        else:
            hold = stop_hold_for(
                market=market,
                side=request.side,
                type=stop_type,
                price=price,
                stop_price=stop_price,
                quantity=request.quantity,
            )
        return Estimate(
            asset_spent=market.quote_id if buying else market.base_id,
            asset_received=market.base_id if buying else market.quote_id,
            takes_quantity=ZERO,
            takes_notional=ZERO,
            rests_quantity=ZERO,
            expires_quantity=ZERO,
            fee=ZERO,
            total=ZERO,
            hold=hold,
            average_price=None,
            post_only_would_take=False,
            fok_would_kill=False,
            stop_price=stop_price,
        )
    levels = snapshot.asks if buying else snapshot.bids
    limit = request.price

    takes_quantity, takes_notional = ZERO, ZERO
    for price, quantity in levels:
        if limit is not None and (price > limit if buying else price < limit):
            break
        wanted = request.quantity - takes_quantity
        if wanted <= 0:
            break
        size = min(wanted, quantity)
        takes_quantity += size
        takes_notional += money(price * size)

    remaining = request.quantity - takes_quantity
    post_only_would_take = request.post_only and takes_quantity > 0
    fok_would_kill = request.time_in_force == TimeInForce.FOK and remaining > 0
    if post_only_would_take or fok_would_kill:
        # The engine refuses the order outright: nothing trades, nothing rests.
        takes_quantity, takes_notional, remaining = ZERO, ZERO, request.quantity

    rests = request.type == OrderType.LIMIT and request.time_in_force in (TimeInForce.GTC, TimeInForce.GTD)
    if post_only_would_take or fok_would_kill:
        rests = False
    rests_quantity = remaining if rests else ZERO
    expires_quantity = ZERO if rests else remaining
    rests_notional = money(limit * rests_quantity) if rests_quantity else ZERO

    taker_fee = fee_for(takes_notional, market.taker_fee)
    maker_fee = fee_for(rests_notional, market.maker_fee)
    fee = taker_fee + maker_fee
    notional = takes_notional + rests_notional
    total = notional + fee if buying else notional - fee

    if buying and request.type == OrderType.LIMIT:
        hold = hold_for(market=market, side=Side.BUY, price=limit, quantity=request.quantity)
    elif buying:
        hold = takes_notional + taker_fee
    else:
        hold = request.quantity
    return Estimate(
        asset_spent=market.quote_id if buying else market.base_id,
        asset_received=market.base_id if buying else market.quote_id,
        takes_quantity=takes_quantity,
        takes_notional=takes_notional,
        rests_quantity=rests_quantity,
        expires_quantity=expires_quantity,
        fee=fee,
        total=total,
        hold=hold,
        average_price=(takes_notional / takes_quantity) if takes_quantity else None,
        post_only_would_take=post_only_would_take,
        fok_would_kill=fok_would_kill,
    )


def oco_hold(*, market: Market, side: str, quantity: Decimal, price: Decimal, stop_price, stop_limit_price) -> Decimal:
    """What an OCO holds: one hold for both orders, the larger of the two's needs."""
    limit = hold_for(market=market, side=side, price=price, quantity=quantity)
    stop_type = OrderType.STOP_LIMIT if stop_limit_price is not None else OrderType.STOP_MARKET
    stop = stop_hold_for(
        market=market, side=side, type=stop_type, price=stop_limit_price, stop_price=stop_price, quantity=quantity
    )
    return max(limit, stop)


def ticket_band(*, market: Market, snapshot: BookSnapshot | None) -> Band | None:
    """The price band the ticket shows before the trader submits: around the last trade,
    else the middle of the book (`snapshot`), as the engine will judge it (orders.engine.
    rules.band_of); None when the market has no band or nothing to measure it from."""
    if market.price_band is None:
        return None
    reference = market.last_price
    if reference is None and snapshot is not None and snapshot.best_bid is not None and snapshot.best_ask is not None:
        reference = money((snapshot.best_bid + snapshot.best_ask) / 2)
    return band_of(market, reference)


# The ticket's quick sizes: these fractions of what is available.
SIZE_FRACTIONS = (Decimal("0.25"), Decimal("0.5"), Decimal("0.75"), Decimal("1"))


def parse_price(text) -> Decimal | None:
    """A positive, finite price typed into the ticket, or None (the engine judges its tick later)."""
    try:
        price = Decimal(str(text or "").strip())
    except ArithmeticError:
        return None
    # Beyond these magnitudes no market lists a price, and the arithmetic would only grow.
    return price if price.is_finite() and price > 0 and -12 <= price.adjusted() <= 15 else None


def _lots(quantity: Decimal, lot: Decimal) -> Decimal:
    """`quantity` rounded down to a whole number of lots."""
    return (quantity // lot) * lot if quantity > 0 else ZERO


def ticket_size(
    *, market: Market, side: str, price: Decimal | None, fraction: Decimal, available: Decimal, snapshot: BookSnapshot
) -> Decimal:
    """The largest quantity on the lot grid that `fraction` of `available` pays for.

    A sell spends the base asset itself. A buy at a price must hold price x quantity plus
    the fee reserve (`hold_for`); a buy at market walks the asks as the engine would, each
    unit at its level's price plus the taker fee. Zero when nothing fits.
    """
    budget = available * fraction
    lot = market.lot_size
    if side == Side.SELL:
        return _lots(budget, lot)
    if price is not None:
        rate = max(market.taker_fee, market.maker_fee)
        quantity = _lots(budget / (price * (1 + rate)), lot)
        # The reserve rounds up to the cent: step back the odd lot that tips it over.
        while quantity > 0 and hold_for(market=market, side=Side.BUY, price=price, quantity=quantity) > budget:
            quantity -= lot
        return quantity
    quantity, spent = ZERO, ZERO
    for level_price, level_quantity in snapshot.asks:
        unit = level_price * (1 + market.taker_fee)
        take = min(level_quantity, _lots((budget - spent) / unit, lot))
        if take <= 0:
            break
        quantity += take
        spent += money(level_price * take) + fee_for(money(level_price * take), market.taker_fee)
        if take < level_quantity:
            break
    return quantity
