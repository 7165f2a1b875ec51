"""OCOs under real concurrency, on PostgreSQL: threads with their own connections, released
together. Buyers reach for each OCO's limit while a seller's sweep reaches every OCO's stop:
whichever comes first acts, and the other order of its list never does. `reconcile()` is
clean afterwards (each list's one hold included).
"""

from decimal import Decimal

import pytest

from orders.models import Leg, Order
from orders.selectors import reconcile
from orders.services import oco_place

from .stories import buy, print_trade, sell, trader
from .test_concurrency import no_negative_balances, no_overfills, together

D = Decimal

pytestmark = [pytest.mark.postgres, pytest.mark.django_db(transaction=True), pytest.mark.timeout(300)]


@pytest.fixture(autouse=True)
def postgres_only(on_postgres):
    pass


def test_an_ocos_fill_racing_its_stops_trigger_acts_once(market, bob, carol):
    print_trade(bob, carol, "100")
    owners = [trader(f"owner{index}", QTX="1") for index in range(6)]
    lists = [
        oco_place(user=owner, market="QTX-USD", side="sell", quantity=D("1"), price=D("101"), stop_price=D("99"))
        for owner in owners
    ]
    buyers = [trader(f"buyer{index}", USD="1000") for index in range(len(owners))]
    for step in range(12):
        buy(bob, "1", at=str(D("99") - D("0.10") * step))

    def work(index):
        if index == len(owners):
            return sell(carol, "1", at="99")  # the trade at 99 that reaches every stop
        return buy(buyers[index], "1", at="101")  # each meets one OCO's limit, if still there

    together(len(owners) + 1, work)

    for placed in lists:
        legs = {order.leg: order for order in Order.objects.filter(order_list=placed.order_list)}
        limit, stop = legs[Leg.LIMIT], legs[Leg.STOP]
        if limit.filled_quantity:
            assert (stop.status, stop.triggered_at) == ("cancelled", None)
        else:
            assert stop.triggered_at is not None and limit.status == "cancelled"
            assert stop.filled_quantity == 1
    assert no_negative_balances() and no_overfills()
    assert reconcile() == []
