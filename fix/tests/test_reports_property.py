"""Whatever happens to a user's orders, and on whichever door, the session's execution
reports add up to the database: each fill reported once, CumQty the order's filled
quantity, the last OrdStatus the order's status. Generated with hypothesis."""

import itertools
from decimal import Decimal

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from orders.models import Fill, Order
from orders.selectors import reconcile

from .client import utc_now

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.timeout(300), pytest.mark.slow]

STATUS = {"open": "0", "partially_filled": "1", "filled": "2", "cancelled": "4", "expired": "C", "rejected": "8"}
prices = st.integers(min_value=97, max_value=103).map(str)
quantities = st.integers(min_value=1, max_value=4).map(str)
sides = st.sampled_from(["buy", "sell"])
commands = st.lists(
    st.one_of(
        st.tuples(st.just("fix"), sides, quantities, prices, st.sampled_from([None, "3"])),
        st.tuples(st.just("rest"), sides, quantities, prices),
        st.tuples(st.just("cancel"), st.integers(min_value=0, max_value=9)),
        st.tuples(st.just("replace"), st.integers(min_value=0, max_value=9), prices),
    ),
    min_size=1,
    max_size=12,
)
runs = itertools.count()


@settings(max_examples=8, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(commands=commands)
def test_the_reports_of_a_session_add_up_to_the_database(connect, trade_key, rest, commands):
    run = next(runs)
    client = connect(f"PROP{run}")
    client.logon(trade_key, reset=True)
    placed = []
    for step, command in enumerate(commands):
        if command[0] == "fix":
            _, side, quantity, price, tif = command
            tags = [(59, tif)] if tif else []
            client.new_order(f"p{run}-{step}", side, quantity, price, tags=tags)
            placed.append(f"p{run}-{step}")
        elif command[0] == "rest":
            _, side, quantity, price = command
            body = {"symbol": "QTX-USD", "side": side, "type": "limit", "price": price, "quantity": quantity}
            rest.post("/api/orders", body, format="json")
        elif placed:
            cl_ord_id = placed[command[1] % len(placed)]
            fields = [(41, cl_ord_id), (11, f"x{run}-{step}"), (55, "QTX-USD"), (54, 1), (60, utc_now())]
            if command[0] == "replace":
                client.send("G", [*fields, (40, 2), (44, command[2])])
            else:
                client.send("F", fields)
    reports = [m for m in client.quiet(1.5) if m.type == "8" and m.get(37) != "NONE"]
    client.logout()

    mine = Order.objects.filter(user__username="alice", client_order_id__startswith=f"p{run}-")
    for order in mine:
        of_order = [r for r in reports if r[37] == str(order.pk)]
        trades = [r for r in of_order if r[150] == "F"]
        assert sorted(r[17] for r in trades) == sorted(f"T{f.pk}" for f in Fill.objects.filter(order=order))
        assert sum((Decimal(r[32]) for r in trades), Decimal(0)) == order.filled_quantity
        assert Decimal(of_order[-1][14]) == order.filled_quantity
        assert of_order[-1][39] == STATUS[order.status]
    exec_ids = [r[17] for r in reports]
    assert len(exec_ids) == len(set(exec_ids))
    assert reconcile() == []
