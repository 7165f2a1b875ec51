"""Publishing: from committed events to the channel layer, without blocking the committer."""

import asyncio
import atexit
import collections
import contextlib
import logging
import os
import threading
import time

from channels.layers import InMemoryChannelLayer, get_channel_layer
from django.conf import settings
from django.core.cache import cache

from quantumtrades.core import metrics

from .messages import RESYNC, Batch, Item, UserFragments, streams_message
from .options import GROUP, option

log = logging.getLogger(__name__)

# --- Publishing (any thread, after commit) ----------------------------------------------


def publish_events(batch: list) -> None:
    """Event bus subscriber (`quantumtrades.core.events`): one command's events, after commit.

    Never blocks and never raises into the engine. Events are `messages.PublicEvent` or
    `messages.PrivateEvent`, told apart by their attributes: the streams import no app.
    """
    publisher.put(("events", time.time(), batch))


def stream_to_user(user_id: int, fragments_html: str) -> None:
    """Send rendered HTML fragments to every live page socket of one user, on every process.

    For the pages' private parts (open orders, fills, balances), which the orders app
    renders from its own events. `fragments_html` is one or more elements, each with an
    `id` and `hx-swap-oob="true"`; htmx swaps each into the element with that id.

    Call it after commit (from an event subscriber, `transaction.on_commit`, any thread):
    it only queues the fragments and returns at once; it never raises for a missing or
    unreachable channel layer (that is logged). Only sockets on `/ws/live/...` whose
    session belongs to `user_id` receive it; integrators' JSON sockets never do.
    """
    publisher.put(("user_html", int(user_id), str(fragments_html)))


def request_resync() -> None:
    """Ask every hub to reload its books from the database (after an operator's repair)."""
    publisher.put(("resync",))


user_fragments = None


def register_user_fragments(render) -> None:
    """Register `render(user_id) -> html`: all of a user's private fragments as they are now.

    Sent to a signed-in page socket when it connects (so a reconnected page is current)
    and again after the channel layer was lost and came back. Called in a worker thread
    with database access.
    """
    global user_fragments
    user_fragments = render


def user_is_watching(user_id: int) -> bool:
    """Whether the user has a page socket open on any process (as of the last minute)."""
    return user_id in users_watching([user_id])


def users_watching(user_ids) -> set[int]:
    """Those of `user_ids` with a page socket open on any process, in one cache round trip.

    Lets a renderer of private fragments skip users nobody is looking at. Errs on the side
    of watching when it cannot tell.
    """
    user_ids = list(user_ids)
    try:
        found = cache.get_many([_presence_key(user_id) for user_id in user_ids])
    except Exception:
        return set(user_ids)
    return {user_id for user_id in user_ids if _presence_key(user_id) in found}


def _presence_key(user_id) -> str:
    return f"{settings.CHANNEL_LAYER_PREFIX}watching.{user_id}"


def mark_present(user_ids) -> None:
    cache.set_many({_presence_key(user_id): 1 for user_id in user_ids}, timeout=option("PRESENCE_TTL"))


def wire_items(entries) -> list[Item]:
    """Queue entries as the items of a `messages.StreamsMessage`. Runs in the publisher's
    thread, so the committing thread never spends its time formatting messages."""
    out = []
    for entry in entries:
        if entry[0] == "events":
            _, committed, events = entry
            public, private = [], []
            for event in events:
                try:
                    message = event.as_message()
                except Exception:
                    log.exception("stream: %r has no usable as_message(); not streamed", event)
                    continue
                user_id = getattr(event, "user_id", None)
                if user_id is not None:
                    version = getattr(event, "stream_version", None)
                    private.append((user_id, message, *(version or (None, None, False))))
                elif getattr(event, "market_id", None) is not None:
                    seq = getattr(event, "seq", None)
                    public.append(
                        {**message, "market_id": event.market_id, **({"seq": seq} if seq is not None else {})}
                    )
            if public or private:
                out.append(Batch(kind="batch", committed=committed, public=public, private=private))
        elif entry[0] == "user_html":
            out.append(UserFragments(kind="user_fragments", user_id=entry[1], html=entry[2]))
        elif entry[0] == "resync":
            out.append(RESYNC)
    return out


class LayerHealth:
    """This process's view of the channel layer, told by the publisher and the hub.

    Either may notice first that Redis went away or came back; the log gets one warning
    when it goes and one line when it is back, not a line per batch, ping or socket.
    """

    def __init__(self):
        self._lock = threading.Lock()
        self.down_since = None

    @property
    def up(self) -> bool:
        return self.down_since is None

    def lost(self, exc) -> None:
        with self._lock:
            if self.down_since is not None:
                return
            self.down_since = time.monotonic()
        reason = f"{exc.__class__.__name__}: {exc}" if isinstance(exc, BaseException) else str(exc)
        log.warning(
            "stream: channel layer unreachable (%s); live updates paused, orders and pages are not affected", reason
        )

    def back(self) -> None:
        with self._lock:
            if self.down_since is None:
                return
            since, self.down_since = self.down_since, None
        log.warning(
            "stream: channel layer back after %.1f s; live streams resync from the database", time.monotonic() - since
        )


layer_health = LayerHealth()


def layer_is_local(layer) -> bool:
    return layer is None or isinstance(layer, InMemoryChannelLayer)


class Publisher:
    """Carries queued batches to the channel layer from one background thread.

    `put` only appends to a bounded queue, so the committing thread never waits on the
    network. The thread has its own event loop (and so its own Redis connection). It sends
    at most one message per PUBLISH_INTERVAL: the first batch after a quiet spell goes at
    once, and batches committed within the interval after a message wait for the next one
    and go out together. A message cost the process 0.7-0.9 ms of CPU (waking the thread,
    a round of its event loop, the round trip to Redis), a tenth of an order's when every
    command had one of its own (docs/BENCHMARKS.md, "After-commit work").
    """

    def __init__(self):
        self._items = collections.deque()
        self._lock = threading.Lock()
        self._wake = threading.Event()
        self._thread = None
        self._pid = None
        self._busy = False
        self._overflow = 0
        self._down_since = None
        self._next_try = 0.0
        self._lost = 0
        self._sent_at = 0.0
        self.sent = 0

    def put(self, item) -> None:
        try:
            layer = get_channel_layer()
        except Exception:
            log.exception("stream: channel layer misconfigured; %s not streamed", item[0])
            return
        if layer_is_local(layer):
            deliver_local(wire_items([item]))
            return
        with self._lock:
            if len(self._items) >= option("PUBLISH_QUEUE"):
                self._items.popleft()
                self._overflow += 1
            self._items.append(item)
            if self._thread is None or self._pid != os.getpid() or not self._thread.is_alive():
                self._start()
        self._wake.set()

    def _start(self):
        self._pid = os.getpid()
        self._thread = threading.Thread(target=self._run, name="stream-publisher", daemon=True)
        self._thread.start()

    def _run(self):
        loop = asyncio.new_event_loop()
        while True:
            # While the layer is down, wake up by itself to try again: the hubs hear of
            # the recovery (a resync) even if nothing else is published for a while.
            woken = self._wake.wait(option("PUBLISH_RETRY") if self._down_since is not None else None)
            if not woken:
                with contextlib.suppress(Exception):
                    loop.run_until_complete(self._send([RESYNC]))
                continue
            pause = self._sent_at + option("PUBLISH_INTERVAL") - time.monotonic()
            if pause > 0:
                time.sleep(pause)
            with self._lock:
                items = list(self._items)
                self._items.clear()
                self._wake.clear()
                overflow, self._overflow = self._overflow, 0
                self._busy = bool(items)
            if overflow:
                metrics.STREAM_BATCHES_DROPPED.labels("queue_full").inc(overflow)
                log.warning(
                    "stream: publish queue full; dropped the %d oldest batches (streams resync by sequence)", overflow
                )
                items.append(("resync",))
            try:
                if items:
                    self._sent_at = time.monotonic()
                    loop.run_until_complete(self._send(wire_items(items)))
            except Exception:
                log.exception("stream: publisher failed on %d batches", len(items))
            finally:
                self._busy = False

    async def _send(self, payloads):
        if not payloads:
            return
        now = time.monotonic()
        if self._down_since is not None and now < self._next_try:
            self._lost += len(payloads)
            metrics.STREAM_BATCHES_DROPPED.labels("layer_down").inc(len(payloads))
            return
        layer = get_channel_layer()
        timeout = option("PUBLISH_TIMEOUT")
        chunk = 100
        for start in range(0, len(payloads), chunk):
            try:
                await asyncio.wait_for(
                    layer.group_send(GROUP, streams_message(payloads[start : start + chunk])), timeout
                )
            except Exception as exc:
                self._lost += len(payloads) - start
                metrics.STREAM_BATCHES_DROPPED.labels("layer_down").inc(len(payloads) - start)
                self._next_try = time.monotonic() + option("PUBLISH_RETRY")
                if self._down_since is None:
                    self._down_since = now
                layer_health.lost(exc)
                return
            self.sent += 1
        if self._down_since is not None:
            log.info("stream: %d batches were not published while the layer was down", self._lost)
            self._down_since = None
            self._lost = 0
            layer_health.back()
            if any(payload["kind"] == "resync" for payload in payloads):
                return
            try:
                await asyncio.wait_for(layer.group_send(GROUP, streams_message([RESYNC])), timeout)
            except Exception:
                log.warning("stream: could not announce the resync; hubs find the gap by sequence")

    def flush(self, timeout: float = 2.0) -> bool:
        """Wait until everything queued so far went out (tests, process exit)."""
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            with self._lock:
                idle = not self._items and not self._busy
            if idle:
                return True
            time.sleep(0.005)
        return False


publisher = Publisher()
atexit.register(publisher.flush, 1.0)


def deliver_local(payloads) -> None:
    """In-memory layer: hand payloads to every hub of this process, each in its own loop."""
    if not payloads:
        return
    with hubs_lock:
        local = list(hubs.values())
    for hub in local:
        if not hub.stopped and not hub.loop.is_closed():
            with contextlib.suppress(RuntimeError):  # the loop closed meanwhile
                hub.loop.call_soon_threadsafe(hub.receive_items, payloads)


# The hubs of this process, by event loop (`hub.get_hub` keeps it): where the in-memory
# layer's payloads go, and what `deliver_local` reads from any thread.
hubs: dict = {}
hubs_lock = threading.Lock()
