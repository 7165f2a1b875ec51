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


def deliver(batch: list) -> None:
    for subscriber in list(_subscribers):
        try:
            subscriber(batch)
        except Exception:
            log.exception("event subscriber %r failed; %d events not delivered to it", subscriber, len(batch))
