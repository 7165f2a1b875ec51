"""Operators' actions on a trader's account that need nothing above accounts: sign out
everywhere, revoke an API key, adjust a balance. Each is audited (OperatorAction) in the
transaction that does it, so the action and its record commit together. The actions that
need the engine (the kill switch, cancelling orders) are in orders.controls.
"""

from decimal import Decimal

from django.db import transaction

from quantumtrades.core.errors import InvalidInput

from . import keys, security
from .models import ApiKey, LedgerEntry, OperatorAction, User
from .services import balance_adjust, operator_action_record


def _reason(reason: str) -> str:
    reason = (reason or "").strip()
    if not reason:
        raise InvalidInput("Give the reason: it is kept in the audit trail.", field="reason")
    return reason


@transaction.atomic
def trader_sign_out(*, operator: User, user: User, reason: str) -> int:
    """End every web session and API login of `user` (their API keys stay: revoke those one
    by one). Answers how many web sessions ended."""
    reason = _reason(reason)
    ended = security.sessions_end_others(user=user, keep_session_key=None)
    operator_action_record(
        operator=operator, kind=OperatorAction.Kind.SIGNED_OUT, user=user, reason=reason, details={"sessions": ended}
    )
    return ended


@transaction.atomic
def trader_api_key_revoke(*, operator: User, user: User, key_id: int, reason: str) -> ApiKey:
    """Revoke one of `user`'s API keys (NotFound when it is not theirs or already revoked)."""
    reason = _reason(reason)
    key = keys.api_key_revoke(user=user, key_id=key_id)
    operator_action_record(
        operator=operator,
        kind=OperatorAction.Kind.API_KEY_REVOKED,
        user=user,
        reason=reason,
        details={"key": key.prefix, "name": key.name},
    )
    return key


@transaction.atomic
def trader_balance_adjust(*, operator: User, user: User, asset: str, amount: Decimal, reason: str) -> LedgerEntry:
    """Credit (positive) or debit (negative) `user`'s available `asset` through an adjustment
    entry in the ledger, never by editing the number."""
    reason = _reason(reason)
    entry = balance_adjust(user=user, asset=asset, amount=amount, reason=reason, created_by=operator)
    operator_action_record(
        operator=operator,
        kind=OperatorAction.Kind.BALANCE_ADJUSTED,
        user=user,
        reason=reason,
        details={"asset": entry.asset_id, "amount": str(amount), "ledger_entry": entry.pk},
    )
    return entry
