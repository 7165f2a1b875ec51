"""A trader's private live fragments: open orders, fills, balances and the book levels
that hold their orders.

The engine publishes events after commit (`quantumtrades.events`); `on_events` gets them
as one batch per command, works out which of each user's fragments changed, renders those
once per user and batch, and hands the HTML to the user's page sockets
(`marketdata.streams.stream_to_user`). The pages render the same partials on first load
and when a socket (re)connects, so what arrives later always replaces like with like.
"""

import logging
from collections import defaultdict

from django.conf import settings
from django.template.loader import render_to_string

from accounts.events import BalanceChanged
from accounts.models import User
from marketdata import streams

from .events import FillCreated, OrderChanged
from .portfolio import my_levels, portfolio_valuation
from .selectors import fills_for_user, orders_open_for_user

log = logging.getLogger(__name__)

OPEN_ORDERS_SHOWN = 50
FILLS_SHOWN = 20

ORDERS, FILLS, BALANCES = "orders", "fills", "balances"
ALL_KINDS = frozenset({ORDERS, FILLS, BALANCES})
# The partials of templates/orders/private.html that show each kind of change.
PARTIALS = {ORDERS: ("open_orders", "my_levels"), FILLS: ("fills",), BALANCES: ("balances",)}


def private_context(user, kinds=ALL_KINDS) -> dict:
    """What the private partials need, for the `kinds` of change asked for."""
    context = {}
    if ORDERS in kinds:
        orders = list(orders_open_for_user(user)[: OPEN_ORDERS_SHOWN + 1])
        context["open_orders"] = orders[:OPEN_ORDERS_SHOWN]
        context["open_orders_more"] = len(orders) > OPEN_ORDERS_SHOWN
        context["my_levels"] = my_levels(user)
    if FILLS in kinds:
        context["fills"] = list(fills_for_user(user)[:FILLS_SHOWN])
    if BALANCES in kinds:
        context["valuation"] = portfolio_valuation(user)
    return context


def private_fragments(user, kinds=ALL_KINDS, *, request=None) -> str:
    """The `kinds` of private fragments as out-of-band HTML, ready for a socket or a response."""
    context = private_context(user, kinds)
    names = [name for kind in sorted(kinds) for name in PARTIALS[kind]]
    return "".join(render_to_string(f"orders/private.html#{name}", context, request=request) for name in names)


def user_fragments(user_id: int) -> str:
    """All of a trader's private fragments as they are now: what a page socket gets when it
    (re)connects (registered with `marketdata.streams.register_user_fragments`)."""
    user = User.objects.filter(pk=user_id, is_active=True).first()
    return private_fragments(user) if user is not None else ""


def kinds_by_user(batch) -> dict[int, set[str]]:
    changed = defaultdict(set)
    for event in batch:
        if isinstance(event, OrderChanged):
            changed[event.user_id].add(ORDERS)
        elif isinstance(event, FillCreated):
            changed[event.user_id].add(FILLS)
        elif isinstance(event, BalanceChanged):
            changed[event.user_id].add(BALANCES)
    return changed


def on_events(batch) -> None:
    """Subscriber (orders.apps): render each affected trader's changed fragments once and stream them."""
    changed = kinds_by_user(batch)
    if not changed:
        return
    # Rendering for traders with no page open would be wasted work (the simulator's accounts).
    watched = {user_id: kinds for user_id, kinds in changed.items() if streams.user_is_watching(user_id)}
    if not watched:
        return
    users = User.objects.in_bulk(list(watched))
    for user_id, kinds in watched.items():
        user = users.get(user_id)
        if user is None or user.username == settings.FEE_ACCOUNT_USERNAME:
            continue
        try:
            html = private_fragments(user, kinds)
        except Exception:
            # One trader's broken fragment must not keep the others' from them.
            log.exception("could not render the private fragments of user %s", user_id)
            continue
        streams.stream_to_user(user_id, html)
