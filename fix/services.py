"""The gateway's writes and reads of its own rows: logons, sent messages, resends.

Each runs in a worker thread (the gateway's event loop never waits on the database) and
is one short transaction. The order commands are the engine's (`orders.services`); the
gateway only calls them (`fix.application`).
"""

import datetime
from dataclasses import dataclass, field

from django.db import transaction
from django.db.models import Max
from django.utils import timezone

from accounts.keys import api_key_authenticate
from accounts.models import ApiKey
from quantumtrades.core.errors import ServiceError

from .models import FixMessage, FixSession

# Exec ids a session remembers having reported (so a fill is reported once, whichever
# path saw it first): those of this long, read again at each logon.
EXEC_IDS_DAYS = 2
# A reconnecting session is sent the reports it missed since its last message, if that
# was at most this long ago (longer: the client asks with OrderStatusRequest).
CATCH_UP_HOURS = 24
# How long a gateway's hold on a session lasts unless renewed (every third of it, for all
# of a process's sessions in one UPDATE): a crashed gateway's sessions are free again
# after at most this long.
LEASE_SECONDS = 6.0


class LogonRefused(Exception):
    """The logon is answered with a Logout carrying this text, and the connection closed."""


@dataclass
class LogonResult:
    session_id: int
    user_id: int
    api_key: ApiKey
    kind: str
    generation: int
    next_in_seq: int
    next_out_seq: int
    catch_up_since: datetime.datetime | None
    exec_ids: set = field(default_factory=set)


def fix_session_logon(
    *, username: str, password: str, sender_comp_id: str, address, reset: bool, owner: str
) -> LogonResult:
    """Authenticate a Logon (A) and bind its SenderCompID to the key; LogonRefused if not.

    The key is the whole `password` (554); `username` (553) must be its prefix. A key with
    the trade scope opens an order-entry session, a read key a drop-copy session. A
    SenderCompID stays bound to the key that first logged on with it, unless that key is
    no longer usable and the new key is its user's. `owner` (the gateway process) holds
    the session until it logs out or stops renewing its hold.
    """
    try:
        key = api_key_authenticate(password, address)
    except ServiceError as exc:
        raise LogonRefused(f"{exc.code}: {exc.message}") from None
    if username != key.prefix:
        raise LogonRefused("API_KEY_INVALID: Username (553) must be the API key's prefix.")
    kind = FixSession.Kind.ORDER_ENTRY if key.can_trade else FixSession.Kind.DROP_COPY
    with transaction.atomic():
        session = FixSession.objects.select_for_update().filter(sender_comp_id=sender_comp_id).first()
        if session is None:
            session = FixSession.objects.create(sender_comp_id=sender_comp_id, api_key=key, user=key.user, kind=kind)
        elif session.api_key_id != key.pk:
            bound = ApiKey.objects.get_usable_keys().filter(pk=session.api_key_id).first()
            if bound is not None or session.user_id != key.user_id:
                raise LogonRefused(f"PERMISSION_DENIED: SenderCompID {sender_comp_id} is bound to another API key.")
            session.api_key = key
        now = timezone.now()
        if session.held_by and session.held_by != owner and session.held_until and session.held_until > now:
            raise LogonRefused(f"SenderCompID {sender_comp_id} is already logged on at another gateway.")
        session.held_by, session.held_until = owner, now + datetime.timedelta(seconds=LEASE_SECONDS)
        session.kind = kind
        if reset:
            session.generation += 1
            session.next_in_seq = 1
        session.logged_on_at = timezone.now()
        session.save()
        sent = FixMessage.objects.filter(session=session, generation=session.generation).aggregate(
            last_seq=Max("seq"), last_at=Max("created_at")
        )
    now = timezone.now()
    last_at = sent["last_at"]
    exec_ids = set(
        FixMessage.objects.filter(
            session=session, exec_id__isnull=False, created_at__gte=now - datetime.timedelta(days=EXEC_IDS_DAYS)
        ).values_list("exec_id", flat=True)
    )
    return LogonResult(
        session_id=session.pk,
        user_id=key.user_id,
        api_key=key,
        kind=kind,
        generation=session.generation,
        next_in_seq=session.next_in_seq,
        next_out_seq=(sent["last_seq"] or 0) + 1,
        catch_up_since=last_at if last_at and now - last_at < datetime.timedelta(hours=CATCH_UP_HOURS) else None,
        exec_ids=exec_ids,
    )


@dataclass
class Outgoing:
    """One message on its way out, sequenced, to be written before it is sent."""

    seq: int
    msg_type: str
    sending_time: str
    body: str
    exec_id: str | None = None


def fix_messages_store(
    *, session_id: int, generation: int, messages: list[Outgoing], next_in_seq: int, let_go: str | None = None
) -> None:
    """Write messages about to be sent, and the MsgSeqNum expected next from the client.

    `let_go`: the gateway process letting the session go with these messages (a Logout is
    among them), so a client that logs on again as soon as it reads the Logout is let in.
    """
    with transaction.atomic():
        if let_go is not None:
            FixSession.objects.filter(pk=session_id, held_by=let_go).update(
                held_by="", held_until=None, logged_out_at=timezone.now()
            )
        FixMessage.objects.bulk_create(
            [
                FixMessage(
                    session_id=session_id,
                    generation=generation,
                    seq=m.seq,
                    msg_type=m.msg_type,
                    sending_time=m.sending_time,
                    body=m.body,
                    exec_id=m.exec_id,
                )
                for m in messages
            ]
        )
        FixSession.objects.filter(pk=session_id).update(next_in_seq=next_in_seq)


def fix_session_progress(*, session_id: int, next_in_seq: int, logged_out_by: str | None = None) -> None:
    """Record the MsgSeqNum expected next (on heartbeats), and at logout let the hold go."""
    FixSession.objects.filter(pk=session_id).update(next_in_seq=next_in_seq)
    if logged_out_by is not None:
        FixSession.objects.filter(pk=session_id, held_by=logged_out_by).update(
            held_by="", held_until=None, logged_out_at=timezone.now()
        )


def fix_sessions_renew(*, owner: str) -> int:
    """Renew the hold of every session this gateway process holds (one UPDATE)."""
    until = timezone.now() + datetime.timedelta(seconds=LEASE_SECONDS)
    return FixSession.objects.filter(held_by=owner).update(held_until=until)


def fix_messages_between(*, session_id: int, generation: int, begin: int, end: int) -> list[FixMessage]:
    """The sent messages with MsgSeqNum in [begin, end], for a ResendRequest."""
    return list(
        FixMessage.objects.filter(session_id=session_id, generation=generation, seq__gte=begin, seq__lte=end).order_by(
            "seq"
        )
    )
