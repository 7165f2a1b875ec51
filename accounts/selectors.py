"""Reads over balances and the ledger: statements and the money invariants of DESIGN section 3."""

from dataclasses import dataclass
from decimal import Decimal

from django.db.models import Sum

from .models import Balance, LedgerEntry
from .money import ZERO, money


@dataclass(frozen=True)
class Breach:
    invariant: int
    subject: str
    detail: str

    def __str__(self):
        return f"invariant {self.invariant}: {self.subject}: {self.detail}"


def summed(value) -> Decimal:
    """A database SUM of money at the platform's precision. SQLite adds decimals as floats
    (9899.9 + ... comes back as 9899.90000000000 and a zero as 2.8E-15), and Django does not
    round aggregates back, so an unrounded sum would report breaches that are not there."""
    return money(value) if value is not None else ZERO


def ledger_breaches() -> list[Breach]:
    """Invariant 1: each balance equals the sum of its ledger entries."""
    sums = {
        (row["user_id"], row["asset_id"]): (summed(row["available"]), summed(row["held"]))
        for row in LedgerEntry.objects.values("user_id", "asset_id").annotate(
            available=Sum("available_delta"), held=Sum("held_delta")
        )
    }
    breaches = []
    for balance in Balance.objects.all().iterator():
        key = (balance.user_id, balance.asset_id)
        available, held = sums.pop(key, (ZERO, ZERO))
        if (balance.available, balance.held) != (available, held):
            breaches.append(
                Breach(
                    1,
                    f"user {balance.user_id} {balance.asset_id}",
                    f"balance {balance.available}/{balance.held} but ledger sums to {available}/{held}",
                )
            )
    for (user_id, asset_id), (available, held) in sums.items():
        if available or held:
            breaches.append(Breach(1, f"user {user_id} {asset_id}", "ledger entries without a balance row"))
    return breaches


def supply_breaches() -> list[Breach]:
    """Invariant 2: per asset, all balances together equal deposits minus withdrawals."""
    held_by_users = {
        row["asset_id"]: summed(row["available"]) + summed(row["held"])
        for row in Balance.objects.values("asset_id").annotate(available=Sum("available"), held=Sum("held"))
    }
    brought_in = {
        row["asset_id"]: summed(row["net"])
        for row in LedgerEntry.objects.external().values("asset_id").annotate(net=Sum("available_delta"))
    }
    breaches = []
    for asset in sorted(held_by_users.keys() | brought_in.keys()):
        total, net = held_by_users.get(asset, ZERO), brought_in.get(asset, ZERO)
        if total != net:
            breaches.append(Breach(2, asset, f"balances total {total} but deposits minus withdrawals is {net}"))
    return breaches


def balances_for_user(user) -> list[Balance]:
    return list(Balance.objects.filter(user=user).select_related("asset").order_by("asset_id"))
