"""What protects a trader whose program stops: the dead man's switch and cancel on
disconnect (docs/API.md, section 8). Both cancel orders when nobody is there to do it, in
whichever server process is alive: the state is in the database, and every process runs
the jobs that act on it (`quantumtrades.core.scheduler`, registered in `OrdersConfig.ready`).

Dead man's switch. `dead_mans_switch_arm` stores `User.cancel_orders_at`; a program arms
it again and again (a heartbeat), and when it stops, `dead_mans_switches_fire` (every
DEAD_MANS_SWITCH_TICK s, in every process) cancels all the user's open orders and pending
stops within a second of that time.

Cancel on disconnect. A `/ws` socket that authenticated with `"cancel_on_disconnect": true`
gets a `LiveSocket` row when it first places an order (`live_socket_open`), and every order
it places carries the row's id (`Order.socket_id`). When the socket closes, its consumer
cancels those orders and deletes the row (`live_socket_close`). When its process dies,
nobody does that: so each process refreshes `seen_at` of its own rows every
CANCEL_ON_DISCONNECT_SECONDS / 5 (`live_sockets_refresh`), and every process sweeps the
rows nobody refreshed for 0.6 x CANCEL_ON_DISCONNECT_SECONDS (`live_sockets_sweep`):
orders are cancelled within CANCEL_ON_DISCONNECT_SECONDS of the death.

How a job takes its work, so that two processes never do it twice and a process that dies
halfway loses nothing: one conditional UPDATE claims the rows that are due (`_claim`, with
`FOR NO KEY UPDATE SKIP LOCKED` where the database has it, so a process never waits on
rows another is taking) and moves their time forward, as a lease; the orders are then cancelled,
one book command per market as `orders_cancel_all` does; last, a second conditional
statement ends the lease, only if the row still holds it. So a process that dies after its
claim leaves a row that is due again once the lease runs out, and the next process cancels
what is left (cancelling is idempotent: an order already cancelled is no longer active); and
a trader who arms the switch again while it fires keeps the new time, since the lease only
ends where it is still the row's time.
"""

import logging
import os
import socket
import threading
from datetime import datetime, timedelta

from django.conf import settings
from django.db import connection
from django.utils import timezone

from accounts.models import User
from quantumtrades.core import unavailable
from quantumtrades.core.errors import InvalidInput

from .models import LiveSocket, Order
from .services import orders_cancel_all

log = logging.getLogger(__name__)

# The switch is armed for 0 (disarmed) or this many seconds.
CANCEL_AFTER_MIN_SECONDS = 5
CANCEL_AFTER_MAX_SECONDS = 600
# How often every process looks for switches that are due: well within the second allowed.
DEAD_MANS_SWITCH_TICK = 0.25
# How long a claim holds a switch or a socket before another process may take it over (the
# claimant died halfway): much longer than cancelling a trader's orders takes.
CLAIM_SECONDS = 5.0
# How often every process looks for sockets whose process stopped refreshing them.
SWEEP_SECONDS = 1.0
# Rows claimed per statement; a job takes the rest at its next turn.
CLAIM_BATCH = 100


# --- Dead man's switch --------------------------------------------------------------------------


def dead_mans_switch_arm(*, user: User, seconds) -> datetime | None:
    """Arm the user's dead man's switch for `seconds` from now (0 disarms it) and return
    when it fires, or None. Arming again replaces the earlier time."""
    if isinstance(seconds, bool) or not isinstance(seconds, int):
        raise InvalidInput("seconds must be a whole number.", field="seconds")
    if seconds != 0 and not CANCEL_AFTER_MIN_SECONDS <= seconds <= CANCEL_AFTER_MAX_SECONDS:
        raise InvalidInput(
            f"seconds must be 0 (to disarm) or from {CANCEL_AFTER_MIN_SECONDS} to {CANCEL_AFTER_MAX_SECONDS}.",
            field="seconds",
        )
    armed_until = timezone.now() + timedelta(seconds=seconds) if seconds else None
    User.objects.filter(pk=user.pk).update(cancel_orders_at=armed_until)
    user.cancel_orders_at = armed_until
    return armed_until


def dead_mans_switches_fire() -> dict[int, list[Order]]:
    """Cancel the open orders and pending stops of every user whose switch is due; return
    what was cancelled, by user id (a scheduler job, in every process)."""
    now = timezone.now()
    lease = now + timedelta(seconds=CLAIM_SECONDS)
    claimed = [user_id for (user_id,) in _claim(User, "cancel_orders_at", due=("<=", now), to=lease)]
    fired = {}
    for user in User.objects.filter(pk__in=claimed):
        try:
            fired[user.pk] = orders_cancel_all(user=user)
        except Exception as exc:  # the others still fire; this one is due again when the lease ends
            if unavailable.is_unavailable(exc):
                raise  # the others cannot fire either: the scheduler recovers and retries
            log.exception("dead man's switch of user %s: the cancel failed", user.pk)
            continue
        # Disarmed, unless the trader armed it again meanwhile: then the new time stands.
        User.objects.filter(pk=user.pk, cancel_orders_at=lease).update(cancel_orders_at=None)
        log.info("dead man's switch of user %s fired: %d orders cancelled", user.pk, len(fired[user.pk]))
    return fired


# --- Cancel on disconnect -----------------------------------------------------------------------

# This process's cancel-on-disconnect sockets: LiveSocket id -> user id. Worker threads add
# and remove them, the scheduler's thread refreshes them.
_sockets: dict[int, int] = {}
_sockets_lock = threading.Lock()


def process_name() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"[:64]


def live_socket_open(*, user: User) -> int:
    """A cancel-on-disconnect socket of this process, acting for `user`: its id, for the
    orders it places (`order_place(socket_id=...)`)."""
    row = LiveSocket.objects.create(user=user, process=process_name(), seen_at=timezone.now())
    with _sockets_lock:
        _sockets[row.pk] = user.pk
    return row.pk


def live_socket_close(*, socket_id: int) -> list[Order]:
    """The socket closed: cancel its orders that are still active, and forget it."""
    with _sockets_lock:
        user_id = _sockets.pop(socket_id, None)
    # From here this process no longer refreshes the row: should the cancel fail (the
    # database is away), the row goes stale and a sweeper finishes the work.
    if user_id is None:
        user_id = LiveSocket.objects.filter(pk=socket_id).values_list("user_id", flat=True).first()
        if user_id is None:
            return []
    cancelled = orders_cancel_all(user=User(pk=user_id), socket_id=socket_id)
    # Only after the cancel: a process that dies in between leaves the row to the sweepers.
    LiveSocket.objects.filter(pk=socket_id).delete()
    return cancelled


def live_sockets_mine() -> dict[int, int]:
    """This process's cancel-on-disconnect sockets (LiveSocket id -> user id)."""
    with _sockets_lock:
        return dict(_sockets)


def live_sockets_refresh() -> None:
    """Tell the other processes that this one still holds its sockets (a scheduler job)."""
    mine = live_sockets_mine()
    if not mine:
        return
    now = timezone.now()
    refreshed = LiveSocket.objects.filter(pk__in=mine).update(seen_at=now)
    if refreshed < len(mine):
        # Swept while this process was alive (it stalled for longer than the sweepers
        # wait, or the database was away): their orders were cancelled as if it had died.
        # The sockets are still open, and protect the orders they place from now on.
        present = set(LiveSocket.objects.filter(pk__in=mine).values_list("pk", flat=True))
        gone = {pk: user_id for pk, user_id in mine.items() if pk not in present}
        log.warning("cancel on disconnect: sockets %s were swept while open; their orders were cancelled", sorted(gone))
        LiveSocket.objects.bulk_create(
            [LiveSocket(pk=pk, user_id=user_id, process=process_name(), seen_at=now) for pk, user_id in gone.items()],
            ignore_conflicts=True,
        )


def live_sockets_sweep() -> dict[int, list[Order]]:
    """Cancel the orders of the sockets whose process stopped refreshing them (it died),
    and delete the sockets; return what was cancelled, by socket id (a scheduler job)."""
    now = timezone.now()
    stale = now - timedelta(seconds=settings.CANCEL_ON_DISCONNECT_SECONDS * 0.6)
    # The claim makes the row look seen now: should this process die too, the row is
    # stale again in 0.6 x CANCEL_ON_DISCONNECT_SECONDS, and another process takes it.
    claimed = _claim(LiveSocket, "seen_at", due=("<", stale), to=now, returning="id, user_id")
    swept = {}
    for socket_id, user_id in claimed:
        try:
            swept[socket_id] = orders_cancel_all(user=User(pk=user_id), socket_id=socket_id)
        except Exception as exc:
            if unavailable.is_unavailable(exc):
                raise
            log.exception("cancel on disconnect: the orders of socket %s could not be cancelled", socket_id)
            continue
        LiveSocket.objects.filter(pk=socket_id, seen_at=now).delete()
        log.info("cancel on disconnect: socket %s went silent; %d orders cancelled", socket_id, len(swept[socket_id]))
    return swept


# --- Claims ---------------------------------------------------------------------------------------


def _claim(model, column: str, *, due: tuple[str, datetime], to: datetime, returning: str = "id") -> list[tuple]:
    """Set `column` to `to` on the rows whose `column` is due (`due`: an operator and a time),
    at most CLAIM_BATCH of them, and return (`returning`) of those: the rows this process
    now holds. One statement: the rows another process claimed at the same moment are no
    longer due when it re-checks them (PostgreSQL re-evaluates the condition on a row it
    waited for; SQLite runs one writer at a time), and with `SKIP LOCKED` it does not even
    wait for them."""
    operator, time = due
    assert operator in ("<", "<=")
    # Almost always nothing is due: a read says so without a write (on SQLite an UPDATE
    # takes the database's one write lock even when it changes no row).
    if not model.objects.filter(**{f"{column}__{'lt' if operator == '<' else 'lte'}": time}).exists():
        return []
    table = connection.ops.quote_name(model._meta.db_table)
    skip_locked = ""
    if connection.features.has_select_for_update_skip_locked:
        # NO KEY: a plain FOR UPDATE would also skip the rows that other transactions
        # merely reference: every order a trader is placing holds a key-share lock on
        # their user row until it commits, and a busy trader's switch would never fire.
        no_key = " NO KEY" if connection.features.has_select_for_no_key_update else ""
        skip_locked = f" FOR{no_key} UPDATE SKIP LOCKED"
    condition = f"{column} IS NOT NULL AND {column} {operator} %s"
    now_value = connection.ops.adapt_datetimefield_value(time)
    with connection.cursor() as cursor:  # one statement: atomic by itself
        cursor.execute(
            f"UPDATE {table} SET {column} = %s WHERE {condition} AND id IN "
            f"(SELECT id FROM {table} WHERE {condition} ORDER BY {column} LIMIT {CLAIM_BATCH}{skip_locked}) "
            f"RETURNING {returning}",
            [connection.ops.adapt_datetimefield_value(to), now_value, now_value],
        )
        return cursor.fetchall()
