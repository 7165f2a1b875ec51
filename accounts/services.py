"""Every movement of money, each one written to the ledger in the same transaction.

A balance changes only through `ledger_post`, which applies a list of postings to rows
the caller has locked with `balances_lock`, refuses any that would go negative, and writes
one LedgerEntry per posting. Deposits (the paper grant) and operators' adjustments are the
named doors for single movements; the matching engine builds its postings (hold, release,
trade, fee) and posts them in one go while it holds the market lock.

Lock order (docs/ARCHITECTURE.md, "The engine's transaction"): a caller that also locks a market locks it first; balance
rows are always locked together, in ascending (user, asset) order, by `balances_lock`.
"""

from collections.abc import Iterable
from dataclasses import dataclass
from decimal import Decimal

from django.conf import settings
from django.db import connection, transaction
from django.utils import timezone

from quantumtrades.core import metrics
from quantumtrades.core.errors import InsufficientFunds, InvalidInput
from quantumtrades.core.events import publish_on_commit
from quantumtrades.core.money import MONEY_MAX, ZERO, money_checked
from quantumtrades.core.sql import for_update, insert_rows, select_models, update_and_insert_rows, update_rows

from .events import BalanceChanged
from .models import Asset, Balance, LedgerEntry, OperatorAction, User

Kind = LedgerEntry.Kind
LEDGER_FIELDS = [
    "user", "asset", "kind", "available_delta", "held_delta", "available_after", "held_after", "reference", "reason",
    "created_by", "created_at",
]  # fmt: skip
LEDGER_ATTRS = [LedgerEntry._meta.get_field(name).attname for name in LEDGER_FIELDS]
BalanceKey = tuple[int, str]  # (user id, asset code)


@dataclass(frozen=True)
class Posting:
    """One intended change to one balance; becomes one LedgerEntry."""

    user_id: int
    asset_id: str
    kind: str
    available_delta: Decimal = ZERO
    held_delta: Decimal = ZERO
    reference: str = ""
    reason: str = ""
    created_by_id: int | None = None

    @property
    def key(self) -> BalanceKey:
        return (self.user_id, self.asset_id)


def balances_lock(keys: Iterable[BalanceKey]) -> dict[BalanceKey, Balance]:
    """Lock the balance rows for `keys` (creating missing ones) and return them by key.

    Rows are locked in one statement ordered by (user, asset), the global lock order,
    so two transactions that need overlapping balances queue instead of deadlocking.
    Must run inside a transaction; a caller that locks a market has done so already.
    """
    wanted = set(keys)
    balances = _select_for_update(wanted)
    missing = wanted - balances.keys()
    if missing:
        Balance.objects.bulk_create(
            [Balance(user_id=user_id, asset_id=asset_id) for user_id, asset_id in sorted(missing)],
            ignore_conflicts=True,
        )
        balances = _select_for_update(wanted)
    return balances


def _select_for_update(keys: set[BalanceKey]) -> dict[BalanceKey, Balance]:
    if not keys:
        return {}
    rows = balances_lock_for({user_id for user_id, _ in keys}, {asset_id for _, asset_id in keys})()
    # The filter is a cross product of users and assets; keep only the rows asked for.
    # Locking the few extra rows it may catch is harmless: they are taken in the same order.
    return {key: balance for key, balance in rows.items() if key in keys}


def balances_lock_for(user_ids, asset_ids, *, also=None):
    """Send the lock of the balances of `user_ids` in `asset_ids` (every pair of the cross
    product), and of the users that `also` (SQL selecting user ids, params) names, in one
    statement ordered by (user, asset), the global lock order; return a function that reads
    them by key once sent (`quantumtrades.core.sql.pipeline`).

    The engine sends it with the book lock and its first look at the book, `also` being
    the makers of that look, so most commands lock every balance they need without a
    round trip of their own. Rows that do not exist yet are not created here: what is
    missing is locked (and created) by `balances_lock` afterwards.
    """
    users, assets = sorted(set(user_ids)), sorted(set(asset_ids))
    listed = ", ".join(["%s"] * len(users))
    if also is None:
        who = f"user_id IN ({listed})"
    elif connection.vendor == "postgresql":
        # One array of every user, so that the plan, a prepared statement's generic one
        # included, looks each (user, asset) up in balance_user_asset_unique. Written as
        # `IN (...) OR IN (subquery)`, it read every balance of the two assets.
        who = f"user_id = ANY(ARRAY[{listed}]::bigint[] || ARRAY({also[0]}))"
    else:
        who = f"(user_id IN ({listed}) OR user_id IN ({also[0]}))"
    where = f"asset_id IN ({', '.join(['%s'] * len(assets))}) AND {who}"
    params = [*assets, *users, *(also[1] if also is not None else ())]
    rows = select_models(Balance, where, params, tail="ORDER BY user_id, asset_id" + for_update(), later=True)
    return lambda: {(b.user_id, b.asset_id): b for b in rows()}


def ledger_post(
    postings: Iterable[Posting],
    balances: dict[BalanceKey, Balance],
    *,
    events: list | None = None,
    with_ids: bool = True,
    field: str = "quantity",
) -> list[LedgerEntry]:
    """Apply postings to locked balances and write their ledger entries.

    Raises InsufficientFunds, and changes nothing, if any balance would go negative.
    The caller holds the locks on every balance in `balances` (see `balances_lock`).
    The balances' new states are published after commit, or appended to `events` for a
    caller that publishes one batch for its whole command. `with_ids=False` returns no
    entries but a function that returns those events (call it once the caller's pipeline
    has ended), so a caller in a pipeline does not wait for the entries' ids. Each event's
    `version` is the id of the last entry written to its balance: ids are drawn while the
    caller holds the balance's lock, so they grow in the commit order of its changes (the
    live streams drop an older state that arrives late). `field` is
    the input a shortfall is blamed on: an order's quantity, or an operator's amount.
    """
    now = timezone.now()
    rows = []  # in the order of LEDGER_FIELDS
    touched = {}
    for posting in postings:
        if not (posting.available_delta or posting.held_delta):
            continue
        balance = balances[posting.key]
        available = balance.available + posting.available_delta
        held = balance.held + posting.held_delta
        if available > MONEY_MAX or held > MONEY_MAX:
            # The column's bound: past it the database would refuse the row (numeric
            # overflow), and that is the input's fault, not the server's.
            raise InvalidInput(
                f"That would take the {posting.asset_id} balance past the largest a balance holds ({MONEY_MAX}).",
                field=field,
            )
        if available < 0:
            raise InsufficientFunds(
                f"Not enough {posting.asset_id} available: needs {-posting.available_delta}, has {balance.available}.",
                field=field,
            )
        if held < 0:
            # Releasing more than is held: a caller's mistake (the engine never does it).
            raise InsufficientFunds(
                f"Not enough {posting.asset_id} held: releases {-posting.held_delta}, holds {balance.held}.",
                field=field,
            )
        balance.available, balance.held = available, held
        touched[posting.key] = balance
        rows.append(
            (
                posting.user_id,
                posting.asset_id,
                posting.kind,
                posting.available_delta,
                posting.held_delta,
                available,
                held,
                posting.reference,
                posting.reason,
                posting.created_by_id,
                now,
            )
        )
    if not rows:
        return [] if with_ids else list
    balance_rows = [(b.pk, b.available, b.held) for b in touched.values()]
    states = [(b.user_id, b.asset_id, b.available, b.held) for b in touched.values()]

    def changed(ids) -> list[BalanceChanged]:
        last = {}  # (user, asset) -> the id of its last entry
        for pk, row in zip(ids, rows, strict=True):
            last[row[0], row[1]] = max(pk, last.get((row[0], row[1]), 0))
        return [
            BalanceChanged(user_id=user_id, asset=asset, available=available, held=held, version=last[user_id, asset])
            for user_id, asset, available, held in states
        ]

    if not with_ids:
        # The engine's path: balances and their entries in one statement on PostgreSQL.
        read_ids = update_and_insert_rows(
            (Balance, ["available", "held"], balance_rows), (LedgerEntry, LEDGER_FIELDS, rows), returning="id"
        )
        return lambda: changed(read_ids())
    update_rows(Balance, ["available", "held"], balance_rows)
    ids = insert_rows(LedgerEntry, LEDGER_FIELDS, rows, returning="id")
    entries = [LedgerEntry.from_db(None, ["id", *LEDGER_ATTRS], [pk, *row]) for pk, row in zip(ids, rows, strict=True)]
    if events is None:
        publish_on_commit(changed(ids))
    else:
        events.extend(changed(ids))
    return entries


def _post_one(posting: Posting) -> LedgerEntry:
    balances = balances_lock([posting.key])
    [entry] = ledger_post([posting], balances, field="amount")
    return entry


def _checked_amount(amount, *, allow_negative=False) -> Decimal:
    # "ten", None, NaN: bad input from a door, never an exception that escapes as a 500.
    return money_checked(amount, "amount", signed=allow_negative)


@transaction.atomic
def balance_deposit(*, user: User, asset: Asset | str, amount, reference="", reason="", created_by=None) -> LedgerEntry:
    amount = _checked_amount(amount)
    return _post_one(
        Posting(
            user.pk,
            _code(asset),
            Kind.DEPOSIT,
            available_delta=amount,
            reference=reference,
            reason=reason,
            created_by_id=created_by.pk if created_by else None,
        )
    )


@transaction.atomic
def balance_adjust(*, user: User, asset: Asset | str, amount, reason: str, created_by: User) -> LedgerEntry:
    """An operator's correction: a positive amount credits, a negative one debits available funds."""
    amount = _checked_amount(amount, allow_negative=True)
    if not reason or not reason.strip():
        raise InvalidInput("An adjustment needs a reason.", field="reason")
    return _post_one(
        Posting(
            user.pk,
            _code(asset),
            Kind.ADJUSTMENT,
            available_delta=amount,
            reason=reason.strip(),
            created_by_id=created_by.pk,
        )
    )


@transaction.atomic
def user_register(*, username: str, email: str = "", password: str | None = None, **extra) -> User:
    """Create a trader and deposit the paper-trading grant (settings.PAPER_GRANT)."""
    user = User.objects.create_user(username=username, email=email, password=password, **extra)
    paper_grant_deposit(user=user)
    return user


def paper_grant_deposit(*, user: User) -> None:
    grant = {code: Decimal(amount) for code, amount in settings.PAPER_GRANT.items()}
    existing = set(Asset.objects.filter(code__in=grant).values_list("code", flat=True))
    for code in sorted(existing):
        balance_deposit(user=user, asset=code, amount=grant[code], reason="paper-trading grant")


def operator_action_record(
    *,
    operator: User | None,
    kind: str,
    reason: str = "",
    user: User | None = None,
    market: str = "",
    details: dict | None = None,
) -> OperatorAction:
    """Record what an operator (None: the venue itself) did, and why: the audit trail the
    admin shows. Call it inside the transaction of the action, so the two commit together."""
    # Counted once it commits (quantumtrades/core/metrics.py); the venue's own action by its trigger.
    venue_trigger = (details or {}).get("trigger") if operator is None else None
    metrics.count_on_commit(metrics.OPERATOR_ACTIONS, venue_trigger or kind, market)
    return OperatorAction.objects.create(
        operator=operator,
        kind=kind,
        user=user,
        market=market,
        reason=(reason or "").strip(),
        details=details or {},
    )


def fee_account() -> User:
    """The system user that receives trading fees (created by migration accounts.0002)."""
    return User.objects.get(username=settings.FEE_ACCOUNT_USERNAME)


def _code(asset: Asset | str) -> str:
    return asset.code if isinstance(asset, Asset) else asset
