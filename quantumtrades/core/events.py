"""In-process events, delivered only after the transaction that caused them commits.

Services call `publish_on_commit(events)`; the live streams (and anything else) register
with `subscribe`. Nothing is announced that did not happen: a rolled-back transaction
drops its events with it. A failing subscriber is logged and never reaches the caller,
so a broken stream can not fail an order that already committed.
"""

import logging
from collections.abc import Callable, Iterable

from django.db import transaction

log = logging.getLogger(__name__)

Subscriber = Callable[[list], None]
_subscribers: list[Subscriber] = []


def subscribe(subscriber: Subscriber) -> Subscriber:
    if subscriber not in _subscribers:
        _subscribers.append(subscriber)
    return subscriber


def unsubscribe(subscriber: Subscriber) -> None:
    if subscriber in _subscribers:
        _subscribers.remove(subscriber)


def publish_on_commit(events: Iterable, *, using=None) -> None:
    batch = list(events)
    if batch:
        transaction.on_commit(lambda: deliver(batch), using=using)


def publish_built_on_commit(build: Callable[[], list], *, using=None) -> None:
    """Like `publish_on_commit`, but the events are built by `build()` after the commit:
    a caller holding a lock (the engine) need not spend its lock time formatting them.
    `build` must read only objects nothing changes between commit and callback."""
    transaction.on_commit(lambda: deliver(build()), using=using)


def deliver(batch: list) -> None:
    if not batch:
        return
    for subscriber in list(_subscribers):
        try:
            subscriber(batch)
        except Exception:
            log.exception("event subscriber %r failed; %d events not delivered to it", subscriber, len(batch))
