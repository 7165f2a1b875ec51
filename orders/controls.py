"""Operators' controls over a trader: the kill switch (docs/API.md, "Kill switch").

`trading_disable` switches a user's trading off and cancels every order they have, on
every market; `trading_enable` switches it back on. Each is audited (accounts'
OperatorAction) in the transaction that flips the flag.

Why nothing slips through: the engine reads the flag fresh under each market's book lock
(`Command.begin`, `trader_check`), never from the request's user object, which may be a
few seconds old. An order whose command took the book lock before the switch committed
read the flag as it was and may still be accepted; the switch then cancels, on every
market under that market's book lock, what such a command left, since a book lock is
taken only after the last command holding it has committed. Every command after that
reads the flag off and is refused. So once `trading_disable` returns, the user has no
active order and can get none.
"""

from dataclasses import dataclass, field
from datetime import datetime

from django.db import transaction
from django.utils import timezone

from accounts.models import OperatorAction, User
from accounts.services import operator_action_record
from marketdata.models import Market
from quantumtrades.core.errors import InvalidInput

from .engine.command import Command
from .engine.transactions import book_command
from .models import Order
from .services import orders_cancel_all
from .services.orders import _cancel_one

REASON_MAX_LENGTH = User._meta.get_field("trading_disabled_reason").max_length


@dataclass
class SwitchResult:
    user: User
    # When the switch committed: every order accepted for the user was accepted before.
    switched_at: datetime
    cancelled: list[Order] = field(default_factory=list)


def trading_disable(*, operator: User | None, user: User, reason: str) -> SwitchResult:
    """Switch `user`'s trading off, then cancel all their open orders and pending stops,
    on every market (one engine command per market, under its book lock)."""
    reason = (reason or "").strip()
    if not reason:
        raise InvalidInput("Give the reason trading is disabled.", field="reason")
    if len(reason) > REASON_MAX_LENGTH:
        raise InvalidInput(f"reason must be at most {REASON_MAX_LENGTH} characters.", field="reason")
    with transaction.atomic():
        User.objects.filter(pk=user.pk).update(trading_enabled=False, trading_disabled_reason=reason)
        operator_action_record(operator=operator, kind=OperatorAction.Kind.TRADING_DISABLED, reason=reason, user=user)
    switched_at = timezone.now()
    user.trading_enabled, user.trading_disabled_reason = False, reason
    cancelled = []
    # Every market, not only those where the user has orders now: an order whose command
    # is under way on another market commits before its book lock is ours.
    for market_id in Market.objects.order_by("pk").values_list("pk", flat=True):
        cancelled += _cancel_everything_in(user, market_id)
    return SwitchResult(user=user, switched_at=switched_at, cancelled=cancelled)


def trading_enable(*, operator: User | None, user: User, reason: str = "") -> SwitchResult:
    """Switch `user`'s trading back on (audited)."""
    reason = (reason or "").strip()
    with transaction.atomic():
        User.objects.filter(pk=user.pk).update(trading_enabled=True, trading_disabled_reason="")
        operator_action_record(operator=operator, kind=OperatorAction.Kind.TRADING_ENABLED, reason=reason, user=user)
    user.trading_enabled, user.trading_disabled_reason = True, ""
    return SwitchResult(user=user, switched_at=timezone.now())


@book_command(lambda user, market_id: market_id)
def _cancel_everything_in(user: User, market_id: int) -> list[Order]:
    """Cancel the user's active orders on one market (book lock held). A market where they
    have none is left as it is: no book sequence, no event."""
    command = Command.begin(market_id)
    orders = list(Order.objects.active().filter(user=user, market_id=market_id).order_by("id"))
    if not orders:
        return []
    for order in orders:
        order.market = command.market
        _cancel_one(command, order)
    command.lock_balances({user.pk})
    command.finish(None)
    return orders


def trader_orders_cancel(*, operator: User, user: User, reason: str) -> list[Order]:
    """Cancel all of `user`'s open orders and pending stops on every market (their trading
    stays on: the kill switch is `trading_disable`), audited with the orders cancelled."""
    reason = (reason or "").strip()
    if not reason:
        raise InvalidInput("Give the reason: it is kept in the audit trail.", field="reason")
    cancelled = orders_cancel_all(user=user)
    # Recorded after the cancels, which commit one market at a time under each book lock.
    operator_action_record(
        operator=operator,
        kind=OperatorAction.Kind.ORDER_CANCELLED,
        user=user,
        reason=reason,
        details={"orders": [order.pk for order in cancelled]},
    )
    return cancelled
