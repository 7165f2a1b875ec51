"""Call auctions (docs/API.md, "Call auctions"): the circuit breaker that opens one, the
orders that rest during one, and the uncross that ends it (book lock held throughout).

- The circuit breaker (`breaker_stops`): before each trade, `matching.match` asks whether
  its price is further than `market.circuit_breaker` from the reference price (the first
  trade of the last `circuit_window_seconds`, else the last trade before them). If so the
  trade is not made, the market enters status `auction` until now + `auction_seconds`
  (`trip`), the trades before it in the command stand, and the taker's remainder rests
  if it is a GTC limit order, else expires. The stops its trades crossed wait for the
  uncross (`stops.run_crossed`). A new order reads the reference with the book lock, in
  the same round trip (`Command.begin`); any other command reads it when it first trades.
- During the auction (`place`, `rest`): limit GTC orders rest without matching, post-only
  ones too (the book may cross); market orders and IOC/FOK are refused 409
  MARKET_IN_AUCTION; stops are accepted and wait; cancels work; an amend re-rests.
- The uncross (`uncross`), run by a scheduler job when `auction_ends_at` has come
  (`orders.auctions`): one price for the whole book (`marketdata.auction.uncross_price`),
  orders filled in price-time priority at that price on both sides, then continuous
  trading again, `last_price` set, and the stops crossed by the price triggered.

Fees of an uncross: each trade pairs a buy with a sell, and the later-arriving of the two
(the higher priority number) is the taker and pays the taker fee, the earlier one the maker
fee: the order that crossed the book is the one that would have taken liquidity had the
market been trading, so a trader pays what continuous trading would have charged. Each
trade keeps exactly one taker and one maker fill, like any other. Every resting buy holds
its fee reserve at the higher of the two rates (`rules.hold_for`), so either is covered.

Self-trade prevention in the uncross: when a buy and a sell paired by the uncross belong to
one user, the later-arriving order's `stp` decides, as in continuous trading (it is the
taker): expire_taker expires it, expire_maker cancels the earlier one, expire_both both;
then the price is computed again on the rest of the book.
"""

from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import TYPE_CHECKING

from django.db import connection
from django.utils import timezone
from django.utils.dateparse import parse_datetime

from accounts.models import LedgerEntry, OperatorAction
from accounts.services import operator_action_record
from marketdata.auction import uncross_price
from marketdata.models import Market, Side, Trade
from quantumtrades.core.errors import Conflict, ErrorCode
from quantumtrades.core.money import ZERO, money
from quantumtrades.core.sql import answer, select_models, send

from ..models import OPEN_STATUSES, Fill, Order, OrderStatus, OrderType, SelfTradePrevention
from . import lists
from .caches import window_firsts
from .rules import RESTING_TIMES_IN_FORCE, book_quantity, fee_for, hold_for, insufficient, order_reference

if TYPE_CHECKING:
    from .command import Command

Kind = LedgerEntry.Kind
# What a command writes back to the market row when it changes the market's state.
MARKET_STATE_FIELDS = ["status", "auction_ends_at", "last_price"]
UNREAD = object()  # the breaker's reference, not read yet

_IN_BOOK_SQL = "status IN (" + ", ".join(f"'{status}'" for status in OPEN_STATUSES) + ")"


# --- The circuit breaker --------------------------------------------------------------


def breaker_since(market: Market, now: datetime) -> datetime | None:
    """The start of the circuit breaker's window, or None when the market has no breaker."""
    if market.circuit_breaker is None or not market.is_trading:
        return None
    return now - timedelta(seconds=market.circuit_window_seconds)


def breaker_reference_read(market_id: int, since: datetime, *, later: bool = False):
    """The first trade of the breaker's window, read: (price, time), or None when none was
    made since `since` (the reference is then the last trade before them, the market's
    `last_price`, which comes with the locked row: `_remember`). One index seek
    (trade_market_time); with `later`, sent now and read by the returned function."""
    table = Trade._meta.db_table
    statement = send(
        f"SELECT price, created_at FROM {table} WHERE market_id = %s AND created_at >= %s "
        "ORDER BY created_at, id LIMIT 1",
        [market_id, Trade._meta.get_field("created_at").get_db_prep_value(since, connection)],
    )

    def read() -> tuple[Decimal, datetime] | None:
        rows = answer(statement)
        if not rows:
            return None
        price, first_at = rows[0]
        return money(Decimal(str(price))), _aware(first_at)

    return read if later else read()


def _aware(value) -> datetime:
    """A trade's time as the raw cursor hands it back (SQLite: text) as an aware datetime."""
    if isinstance(value, str):
        value = parse_datetime(value)
    return value if timezone.is_aware(value) else timezone.make_aware(value, UTC)


def breaker_reference_remembered(market: Market, since: datetime | None):
    """The reference from this process's memory of the window's first trade, or UNREAD.

    A market's trades are made one command at a time under its book lock, each later than
    the one before, so the first trade of the window stays the first until it leaves the
    window: while it is in, a busy market's reference costs no read. Remembered per window
    length; a market that changed its window is read again."""
    if since is None:
        return UNREAD
    entry = window_firsts.get((connection.alias, market.pk, market.circuit_window_seconds))
    if entry is not None and entry[0] >= since:
        return entry[1]
    return UNREAD


def breaker_reference_of(command: "Command", since: datetime, read) -> Decimal | None:
    """The reference read (or remembered) with the lock, or UNREAD if the market's window
    changed since. A first trade of the window read now is remembered (`window_firsts`)."""
    found = read()
    market = command.market
    expected = breaker_since(market, command.now)
    if expected is None or abs((expected - since).total_seconds()) > 1:
        return UNREAD
    return _remember(market, found)


def _remember(market: Market, found) -> Decimal | None:
    """The reference from what was read (or remembered): a first trade of the window is
    remembered (`window_firsts`); with none in the window, the last trade before it."""
    if found is None:
        return market.last_price
    if not isinstance(found, tuple):
        return found  # a remembered price
    price, first_at = found
    window_firsts[(connection.alias, market.pk, market.circuit_window_seconds)] = (first_at, price)
    return price


def _reference(command: "Command") -> Decimal | None:
    """The command's reference, read now unless it was with the lock or is remembered."""
    if command.breaker_reference is UNREAD:
        market = command.market
        since = breaker_since(market, command.now)
        remembered = breaker_reference_remembered(market, since)
        if remembered is UNREAD:
            remembered = _remember(market, breaker_reference_read(market.pk, since))
        command.breaker_reference = remembered
    return command.breaker_reference


def breaker_stops(command: "Command", price: Decimal) -> bool:
    """Whether a trade at `price` may not be made: the market is in an auction already (the
    breaker tripped earlier in this command), or the price is past the circuit breaker, in
    which case the market enters an auction now (`trip`)."""
    if command.market.in_auction:
        return True
    if not _past_breaker(command, price):
        return False
    trip(command, price, _reference(command))
    return True


def breaker_prefix(command: "Command", makers: list[Order]) -> list[Order]:
    """The makers a fill-or-kill order may trade with before the breaker would stop it."""
    for index, maker in enumerate(makers):
        if _past_breaker(command, maker.price):
            return makers[:index]
    return makers


def _past_breaker(command: "Command", price: Decimal) -> bool:
    market = command.market
    if market.circuit_breaker is None or not market.is_trading:
        return False
    reference = _reference(command)
    return reference is not None and abs(price - reference) > reference * market.circuit_breaker


def trip(command: "Command", price: Decimal, reference: Decimal) -> None:
    """Put the market in a call auction (book lock held): written with the command's stage
    (`Command.flush`), announced after commit, and audited as the venue's own action."""
    market = command.market
    market.status = Market.Status.AUCTION
    market.auction_ends_at = command.now + timedelta(seconds=market.auction_seconds)
    command.market_changed = True
    move = (price - reference) / reference
    operator_action_record(
        operator=None,
        kind=OperatorAction.Kind.MARKET_HALTED,
        market=market.symbol,
        reason=f"Circuit breaker: a trade at {price.normalize():f} would have moved {move:+.2%} from the "
        f"reference {reference.normalize():f}; call auction until {market.auction_ends_at:%H:%M:%S} UTC.",
        details={
            "trigger": "circuit_breaker",
            "price": f"{price.normalize():f}",
            "reference": f"{reference.normalize():f}",
            "circuit_breaker": f"{market.circuit_breaker.normalize():f}",
            "auction_ends_at": market.auction_ends_at.isoformat(),
        },
    )


# --- During the auction ---------------------------------------------------------------


def place(command: "Command", order: Order) -> list[Fill]:
    """A new order on a market in auction (book lock held): a limit GTC order rests without
    matching; a market order or an IOC/FOK one is refused."""
    if order.type == OrderType.MARKET or order.time_in_force not in RESTING_TIMES_IN_FORCE:
        raise Conflict(
            f"{command.market.symbol} is in a call auction until "
            f"{command.market.auction_ends_at:%H:%M:%S} UTC: only limit GTC or GTD orders are accepted until it uncrosses.",
            code=ErrorCode.MARKET_IN_AUCTION,
            field="time_in_force" if order.type != OrderType.MARKET else "type",
        )
    return rest(command, order)


def rest(command: "Command", order: Order) -> list[Fill]:
    """Put `order` in the book at its price without matching, holding for it (book lock
    held). An amended order gives back its old hold first; its old level is already off."""
    market = command.market
    balances = command.lock_balances({order.user_id})
    asset = market.quote_id if order.side == Side.BUY else market.base_id
    needed = hold_for(market=market, side=order.side, price=order.price, quantity=order.remaining_quantity)
    available = balances[(order.user_id, asset)].available + order.held
    if available < needed:
        raise insufficient(asset, needed, available)
    if order.held:
        command.release(order, order.held)
    command.hold(order, needed)
    if order.display_quantity is not None:  # an iceberg shows its first slice
        order.visible_quantity = min(order.display_quantity, order.remaining_quantity)
    command.level_deltas[(order.side, order.price)] += book_quantity(order)
    if order.status not in OPEN_STATUSES:
        order.status = OrderStatus.OPEN
    order.updated_at = command.now
    return command.finish(order)


# --- The uncross ----------------------------------------------------------------------


def uncross(command: "Command") -> bool:
    """End the market's auction if its time has come (book lock held): one price, every
    order that executes at it filled in price-time priority, the market trading again.
    Returns False, having changed nothing, when the market is not in an auction that is
    due. The caller then writes the command (`orders.auctions`)."""
    market = command.market
    if not market.in_auction or market.auction_ends_at > command.now:
        return False
    book = select_models(Order, f"market_id = %s AND {_IN_BOOK_SQL}", [market.pk], tail="ORDER BY priority")
    for order in book:
        order.market = market
    # GTD orders whose time came during the auction expire before it uncrosses.
    due = [order for order in book if order.expire_at is not None and order.expire_at <= command.now]
    if due:
        for order in due:
            _take_off(command, order, OrderStatus.EXPIRED)  # balances locked with the others below
        book = [order for order in book if order.status in OPEN_STATUSES]
    # The reference is the last trade (the tape's, as GET /api/markets and the streams
    # read it for the indicative price).
    reference = market.last_price
    while True:
        plan = _plan(book, reference)
        price, pairs, conflict = plan if plan is not None else (None, [], None)
        if conflict is None:
            break
        taker = conflict_taker(conflict)
        for order in _self_trade_losers(*conflict):
            _take_off(command, order, OrderStatus.EXPIRED if order is taker else OrderStatus.CANCELLED)
            book.remove(order)
    users = {order.user_id for order in command.changed_orders.values()}
    users.update(order.user_id for buy, sell, _ in pairs for order in (buy, sell))
    command.lock_balances(users)
    for buy, sell, quantity in pairs:
        _trade(command, buy, sell, quantity, price)
    market.status = Market.Status.TRADING
    market.auction_ends_at = None
    if pairs:
        market.last_price = price
    command.market_changed = True
    return True


def _plan(book: list[Order], reference):
    """(price, [(buy, sell, quantity)], conflict) for the book, or None if nothing crosses.
    `conflict` is the first (buy, sell) pair of one user, which stops the plan."""
    bids, asks = {}, {}
    for order in book:
        levels = bids if order.side == Side.BUY else asks
        levels[order.price] = levels.get(order.price, 0) + order.remaining_quantity
    found = uncross_price(bids.items(), asks.items(), reference)
    if found is None:
        return None
    price = found.price
    buys = sorted((o for o in book if o.side == Side.BUY and o.price >= price), key=lambda o: (-o.price, o.priority))
    sells = sorted((o for o in book if o.side == Side.SELL and o.price <= price), key=lambda o: (o.price, o.priority))
    pairs = []
    left = found.volume
    b = s = 0
    buy_left = sell_left = None
    while left > 0:
        buy, sell = buys[b], sells[s]
        if buy.user_id == sell.user_id:
            return price, pairs, (buy, sell)
        buy_left = buy.remaining_quantity if buy_left is None else buy_left
        sell_left = sell.remaining_quantity if sell_left is None else sell_left
        quantity = min(buy_left, sell_left, left)
        pairs.append((buy, sell, quantity))
        left -= quantity
        buy_left -= quantity
        sell_left -= quantity
        if buy_left == 0:
            b, buy_left = b + 1, None
        if sell_left == 0:
            s, sell_left = s + 1, None
    return price, pairs, None


def conflict_taker(conflict: tuple[Order, Order]) -> Order:
    """The later-arriving order of a pair: the one continuous trading would call the taker."""
    buy, sell = conflict
    return buy if buy.priority > sell.priority else sell


def _self_trade_losers(buy: Order, sell: Order) -> list[Order]:
    taker = conflict_taker((buy, sell))
    maker = sell if taker is buy else buy
    if taker.stp == SelfTradePrevention.EXPIRE_MAKER:
        return [maker]
    if taker.stp == SelfTradePrevention.EXPIRE_BOTH:
        return [taker, maker]
    return [taker]


def _take_off(command: "Command", order: Order, status: str) -> None:
    """Take an order out of the book, releasing its hold (self-trade prevention)."""
    command.release(order, order.held)
    command.level_deltas[(order.side, order.price)] -= book_quantity(order)
    order.status = status
    order.updated_at = command.now
    command.changed_orders[order.pk] = order
    if order.order_list_id:
        lists.leg_cancelled(command, order)


def _trade(command: "Command", buy: Order, sell: Order, quantity: Decimal, price: Decimal) -> None:
    """Settle one uncross trade of `quantity` at `price`: both orders rested, so both pay
    from their holds, and a buy priced above `price` gets the improvement released."""
    market = command.market
    taker = buy if buy.priority > sell.priority else sell
    maker = sell if taker is buy else buy
    notional = money(price * quantity)
    fees = {taker.pk: fee_for(notional, market.taker_fee), maker.pk: fee_for(notional, market.maker_fee)}
    base, quote = market.base_id, market.quote_id
    post = command.post

    buy_ref, old_hold = order_reference(buy), buy.held
    _apply_fill(buy, quantity, notional, command.now)
    buy.held = hold_for(market=market, side=Side.BUY, price=buy.price, quantity=buy.remaining_quantity)
    released = old_hold - buy.held - notional - fees[buy.pk]
    post(buy.user_id, quote, Kind.TRADE, held=-notional, reference=buy_ref)
    post(buy.user_id, quote, Kind.FEE, held=-fees[buy.pk], reference=buy_ref)
    post(buy.user_id, quote, Kind.RELEASE, available=released, held=-released, reference=buy_ref)
    post(buy.user_id, base, Kind.TRADE, available=quantity, reference=buy_ref)

    sell_ref = order_reference(sell)
    _apply_fill(sell, quantity, notional, command.now)
    sell.held -= quantity
    post(sell.user_id, base, Kind.TRADE, held=-quantity, reference=sell_ref)
    post(sell.user_id, quote, Kind.TRADE, available=notional, reference=sell_ref)
    post(sell.user_id, quote, Kind.FEE, available=-fees[sell.pk], reference=sell_ref)

    command.fee_total += fees[buy.pk] + fees[sell.pk]
    for order in (buy, sell):
        if order.visible_quantity is None:
            command.level_deltas[(order.side, order.price)] -= quantity
        else:  # all of an iceberg may trade in the uncross, hidden part included
            iceberg_filled(command, order, quantity)
        command.changed_orders[order.pk] = order
    command.trades.append(
        Trade(
            market=market,
            price=price,
            quantity=quantity,
            taker_side=taker.side,
            maker_order_id=maker.pk,
            taker_order_id=taker.pk,
            seq=command.seq,
            created_at=command.now,
        )
    )
    # Taker first, then maker: `Command._ids_and_fees` pairs fills with trades so.
    for order, role in ((taker, Fill.Role.TAKER), (maker, Fill.Role.MAKER)):
        command.fills.append(
            Fill(
                order=order,
                user_id=order.user_id,
                market=market,
                side=order.side,
                role=role,
                price=price,
                quantity=quantity,
                fee=fees[order.pk],
                created_at=command.now,
            )
        )
    for order in (buy, sell):
        if order.order_list_id:
            lists.filled(command, order, quantity)


def iceberg_filled(command: "Command", order: Order, quantity: Decimal) -> bool:
    """An iceberg in the book has just traded `quantity` (its remaining quantity already
    reduced): show what is left of its slice, or, once the slice is gone, the next one,
    min(display_quantity, remaining), with a new time priority, and move its level by the
    difference. A quantity larger than the slice took the next slices in turn. Returns
    whether a new slice showed."""
    shown = order.visible_quantity
    if quantity < shown:
        order.visible_quantity = shown - quantity
    elif order.remaining_quantity == 0:
        order.visible_quantity = ZERO
    else:
        display = order.display_quantity
        order.visible_quantity = min(display - (quantity - shown) % display, order.remaining_quantity)
        order.priority = command.next_priority()
    command.level_deltas[(order.side, order.price)] += order.visible_quantity - shown
    return quantity >= shown and order.remaining_quantity > 0


def _apply_fill(order: Order, quantity: Decimal, notional: Decimal, now) -> None:
    order.filled_quantity += quantity
    order.remaining_quantity -= quantity
    order.filled_notional += notional
    order.status = OrderStatus.FILLED if order.remaining_quantity == 0 else OrderStatus.PARTIALLY_FILLED
    order.updated_at = now
