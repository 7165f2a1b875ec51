"""Reads over balances and the ledger: statements and the money invariants of docs/ARCHITECTURE.md, "Money"."""

from dataclasses import dataclass
from decimal import Decimal

from django.db import connection
from django.db.models import Sum
from django.db.models.functions import Collate

from quantumtrades.core.money import ZERO, money

from .models import Asset, Balance, LedgerEntry, User

# Rows per round trip when reconcile streams a table.
STREAM_CHUNK = 5000


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
    """Invariant 1: each balance equals the sum of its ledger entries.

    Streams: the database sums the entries per (user, asset) in key order and both that
    and the balances come through a cursor side by side (a merge join), so memory stays
    flat however long the ledger is.
    """
    # Both streams sort asset codes by code point, as Python compares them (a locale's
    # collation might not).
    by_code_point = Collate("asset_id", "C" if connection.vendor == "postgresql" else "BINARY")
    sums = (
        LedgerEntry.objects.values("user_id", "asset_id")
        .annotate(available=Sum("available_delta"), held=Sum("held_delta"))
        .order_by("user_id", by_code_point)
        .values_list("user_id", "asset_id", "available", "held")
        .iterator(chunk_size=STREAM_CHUNK)
    )
    balances = (
        Balance.objects.order_by("user_id", by_code_point)
        .values_list("user_id", "asset_id", "available", "held")
        .iterator(chunk_size=STREAM_CHUNK)
    )
    breaches = []
    entry, balance = next(sums, None), next(balances, None)
    while entry is not None or balance is not None:
        entry_key = entry[:2] if entry is not None else None
        balance_key = balance[:2] if balance is not None else None
        if balance is None or (entry is not None and entry_key < balance_key):
            # Entries without a balance row: a breach unless they sum to nothing.
            if summed(entry[2]) or summed(entry[3]):
                breaches.append(Breach(1, f"user {entry[0]} {entry[1]}", "ledger entries without a balance row"))
            entry = next(sums, None)
            continue
        available, held = ZERO, ZERO
        if entry is not None and entry_key == balance_key:
            available, held = summed(entry[2]), summed(entry[3])
            entry = next(sums, None)
        if (balance[2], balance[3]) != (available, held):
            breaches.append(
                Breach(
                    1,
                    f"user {balance[0]} {balance[1]}",
                    f"balance {balance[2]}/{balance[3]} but ledger sums to {available}/{held}",
                )
            )
        balance = next(balances, None)
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


def ledger_for_user(user, *, asset=None, kind=None):
    """A trader's statement, newest first (keyset pages on the (user, -id) index)."""
    entries = LedgerEntry.objects.filter(user=user).order_by("-id")
    if asset is not None:
        entries = entries.filter(asset_id=asset)
    if kind is not None:
        entries = entries.filter(kind=kind)
    return entries


def ledger_after(user, after_id: int, limit: int) -> list[LedgerEntry]:
    """The next `limit` entries of a trader's statement after `after_id`, oldest first."""
    return list(LedgerEntry.objects.filter(user=user, id__gt=after_id).order_by("id")[:limit])


def user_named(username: str) -> User | None:
    """The user of that name, in any case (usernames are one per person whatever the case)."""
    return User.objects.named(username).first()


def active_user(user_id) -> User | None:
    return User.objects.filter(pk=user_id, is_active=True).first()


def asset_exists(code: str) -> bool:
    return Asset.objects.filter(code=code).exists()
