"""Brackets and OCOs among random trading: what the lists promise holds after every step.

Generated sessions place brackets and OCOs among limit, market and stop orders of other
traders, fill them in parts, trigger their stops and cancel orders and lists. After each
step, besides `reconcile()` (each list's one hold included):
- a bracket's exits, once placed, are for what its entry filled until one of them acts,
  and sell exactly that: the take-profit's and the stop-loss's quantities both equal the
  entry's filled quantity while neither has acted;
- at most one order of a pair ever acts (fills, or triggers);
- once an exit acted, the entry is no longer open; a list is done exactly when none of its
  orders is open or pending.

The orders are priced on a narrow grid around 100, so they cross often. The reference
exchange (`test_engine_property`) checks every trade of OCOs against a model; this test
checks the brackets' promises, whose exits the engine places itself.
"""

from decimal import Decimal

import pytest
from django.db import connection, transaction
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    initialize,
    invariant,
    precondition,
    rule,
    run_state_machine_as_test,
)

from orders.models import ACTIVE_STATUSES, OPEN_STATUSES, Leg, Order, OrderList
from orders.selectors import reconcile
from orders.services import (
    bracket_place,
    oco_place,
    order_cancel,
    order_list_cancel,
    order_place,
)
from quantumtrades.core.errors import ServiceError

from .stories import trader

D = Decimal
TICK = D("0.01")
PRICES = [D("99.97"), D("99.98"), D("99.99"), D("100.00"), D("100.01"), D("100.02"), D("100.03")]
QUANTITIES = st.integers(1, 12).map(lambda n: n * D("0.25"))
TRADERS = ["alice", "bob", "carol"]
SETTINGS = settings(
    max_examples=15,
    stateful_step_count=25,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)


def attempt(call):
    try:
        return call()
    except ServiceError:
        return None


class ListsKeepTheirPromises(RuleBasedStateMachine):
    users: dict
    market = None

    def __init__(self):
        super().__init__()
        self.atomic = transaction.atomic()
        self.atomic.__enter__()

    def teardown(self):
        transaction.set_rollback(True)
        self.atomic.__exit__(None, None, None)

    @initialize()
    def a_trade_at_100(self):
        order_place(user=self.users["carol"], market=self.market, side="sell", quantity=D("1"), price=D("100.00"))
        order_place(user=self.users["bob"], market=self.market, side="buy", quantity=D("1"), price=D("100.00"))

    def last(self):
        self.market.refresh_from_db(fields=["last_price"])
        return self.market.last_price or D("100.00")

    @rule(
        user=st.sampled_from(TRADERS),
        price=st.sampled_from(PRICES),
        quantity=QUANTITIES,
        exits=st.tuples(st.sampled_from([1, 1, 2]), st.sampled_from([1, 1, 2])),
        stop_limit=st.booleans(),
        time_in_force=st.sampled_from(["GTC", "GTC", "IOC"]),
    )
    def place_bracket(self, user, price, quantity, exits, stop_limit, time_in_force):
        stop = price - exits[1] * TICK
        placed = attempt(
            lambda: bracket_place(
                user=self.users[user],
                market=self.market,
                side="buy",
                quantity=quantity,
                price=price,
                time_in_force=time_in_force,
                take_profit_price=price + exits[0] * TICK,
                stop_loss_stop_price=stop,
                stop_loss_price=stop - TICK if stop_limit else None,
            )
        )
        if placed is not None and placed.orders[0].status in OPEN_STATUSES:
            # Someone sells into part of the entry: its exits are placed.
            seller = next(name for name in TRADERS if name != user)
            attempt(
                lambda: order_place(
                    user=self.users[seller], market=self.market, side="sell", quantity=D("0.25"), price=price
                )
            )

    @rule(user=st.sampled_from(TRADERS), side=st.sampled_from(["buy", "sell"]), quantity=st.sampled_from(["1", "3"]))
    def sweep(self, user, side, quantity):
        """A market order through several levels: it fills take-profits or reaches stop-losses."""
        attempt(
            lambda: order_place(
                user=self.users[user], market=self.market, side=side, type="market", quantity=D(quantity)
            )
        )

    @rule(user=st.sampled_from(TRADERS), side=st.sampled_from(["buy", "sell"]), quantity=QUANTITIES)
    def place_oco(self, user, side, quantity):
        last = self.last()
        away = TICK if side == "sell" else -TICK
        attempt(
            lambda: oco_place(
                user=self.users[user],
                market=self.market,
                side=side,
                quantity=quantity,
                price=last + 2 * away,
                stop_price=last - away,
            )
        )

    @rule(
        user=st.sampled_from(TRADERS),
        side=st.sampled_from(["buy", "sell"]),
        price=st.one_of(st.none(), st.sampled_from(PRICES), st.sampled_from(PRICES)),
        quantity=QUANTITIES,
    )
    def place_order(self, user, side, price, quantity):
        attempt(
            lambda: order_place(
                user=self.users[user],
                market=self.market,
                side=side,
                type="limit" if price is not None else "market",
                quantity=quantity,
                price=price,
            )
        )

    @rule(user=st.sampled_from(TRADERS), side=st.sampled_from(["buy", "sell"]), stop=st.sampled_from(PRICES))
    def place_stop(self, user, side, stop):
        attempt(
            lambda: order_place(
                user=self.users[user],
                market=self.market,
                side=side,
                type="stop_market",
                quantity=D("1"),
                stop_price=stop,
            )
        )

    def active_orders(self):
        return list(Order.objects.active().values_list("pk", "user_id"))

    @precondition(lambda self: Order.objects.active().exists())
    @rule(data=st.data())
    def cancel_order(self, data):
        pk, user_id = data.draw(st.sampled_from(sorted(self.active_orders())))
        owner = next(user for user in self.users.values() if user.pk == user_id)
        attempt(lambda: order_cancel(user=owner, order_id=pk))

    @precondition(lambda self: OrderList.objects.filter(status="active").exists())
    @rule(data=st.data())
    def cancel_list(self, data):
        order_list = data.draw(st.sampled_from(list(OrderList.objects.filter(status="active").order_by("pk"))))
        owner = next(user for user in self.users.values() if user.pk == order_list.user_id)
        attempt(lambda: order_list_cancel(user=owner, list_id=order_list.pk))

    @invariant()
    def lists_keep_their_promises(self):
        assert reconcile() == []
        for order_list in OrderList.objects.all():
            orders = list(Order.objects.filter(order_list=order_list))
            legs = {order.leg: order for order in orders}
            active = any(order.status in ACTIVE_STATUSES for order in orders)
            assert order_list.status == ("active" if active else "done"), (order_list, orders)
            book_leg, stop_leg = (
                (Leg.TAKE_PROFIT, Leg.STOP_LOSS) if order_list.kind == "bracket" else (Leg.LIMIT, Leg.STOP)
            )
            in_book, stop = legs.get(book_leg), legs.get(stop_leg)
            if in_book is None:
                assert order_list.kind == "bracket" and legs[Leg.ENTRY].filled_quantity == 0
                continue
            took = in_book.filled_quantity > 0
            triggered = stop.triggered_at is not None
            assert not (took and triggered), (in_book, stop)
            if order_list.kind != "bracket":
                continue
            entry = legs[Leg.ENTRY]
            if took or triggered:
                assert entry.status not in ACTIVE_STATUSES, (entry, in_book, stop)
            elif in_book.status in OPEN_STATUSES:
                assert in_book.quantity == stop.quantity == entry.filled_quantity, (entry, in_book, stop)


@pytest.mark.slow
def test_lists_keep_their_promises_among_random_trading(market, fees):
    market.lot_size = D("0.25")
    market.save()
    users = {name: trader(name, USD="2000", QTX="20") for name in TRADERS}
    ListsKeepTheirPromises.users = users
    ListsKeepTheirPromises.market = market
    previous = connection.settings_dict.get("DISABLE_SERVER_SIDE_CURSORS", False)
    connection.settings_dict["DISABLE_SERVER_SIDE_CURSORS"] = True
    try:
        run_state_machine_as_test(ListsKeepTheirPromises, settings=SETTINGS)
    finally:
        connection.settings_dict["DISABLE_SERVER_SIDE_CURSORS"] = previous
