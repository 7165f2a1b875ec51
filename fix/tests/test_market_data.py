"""Market data over FIX: a snapshot (W), then incremental refreshes (X) carrying the book's
sequence in RptSeq (83), or a MarketDataRequestReject (Y)."""

from decimal import Decimal

import pytest

from marketdata.models import Market
from orders.services import order_place

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.timeout(120)]


@pytest.fixture
def alice_fix(connect, read_key):
    client = connect("ALICE-MD")
    client.logon(read_key)  # market data needs no trade scope
    return client


def place(user, side, quantity, price):
    return order_place(user=user, market="QTX-USD", side=side, quantity=Decimal(quantity), price=Decimal(price))


def request(client, req_id, kind, types=("0", "1", "2"), symbols=("QTX-USD",), depth=0):
    fields = [(262, req_id), (263, kind), (264, depth), (265, 1), (267, len(types))]
    fields += [(269, t) for t in types]
    fields += [(146, len(symbols))] + [(55, s) for s in symbols]
    client.send("V", fields)


def entries(message) -> list[tuple]:
    """(action, type, price, size) of each entry, in order (action None in a snapshot)."""
    out, current = [], None
    for tag, value in message.fields:
        if tag in (279, 269) and (current is None or tag in current):
            current = {}
            out.append(current)
        if current is not None and tag in (279, 269, 270, 271):
            current[tag] = value
    return [(e.get(279), e.get(269), e.get(270), e.get(271)) for e in out]


def test_a_snapshot_request_answers_the_book_with_its_sequence(alice_fix, bob):
    place(bob, "buy", "2", "99")
    place(bob, "buy", "1", "98")
    place(bob, "sell", "3", "101")

    request(alice_fix, "snap-1", 0, types=("0", "1"))
    snapshot = alice_fix.expect("W")

    assert (snapshot[262], snapshot[55], snapshot[268]) == ("snap-1", "QTX-USD", "3")
    assert snapshot[83] == str(Market.objects.get(symbol="QTX-USD").book_seq)
    assert entries(snapshot) == [(None, "0", "99", "2"), (None, "0", "98", "1"), (None, "1", "101", "3")]
    assert alice_fix.quiet(0.5) == []  # a snapshot only: no refreshes follow


def test_a_subscription_gets_a_snapshot_then_refreshes_of_levels_and_trades(alice_fix, alice, bob):
    place(bob, "sell", "3", "101")
    request(alice_fix, "sub-1", 1)
    snapshot = alice_fix.expect("W")
    assert entries(snapshot) == [(None, "1", "101", "3")]

    place(bob, "buy", "2", "99")
    new_level = alice_fix.expect("X")
    place(alice, "buy", "1", "101")
    refreshes = [alice_fix.expect("X"), alice_fix.expect("X")]

    assert entries(new_level) == [("0", "0", "99", "2")]
    assert int(new_level[83]) == int(snapshot[83]) + 1
    changes = [entry for message in refreshes for entry in entries(message)]
    assert ("1", "1", "101", "2") in changes  # the offer's level now holds 2
    assert ("0", "2", "101", "1") in changes  # the trade
    trade = next(m for m in refreshes if m.get(269) == "2")
    assert trade[54] == "1" and trade[1003].isdigit()


def test_a_level_that_empties_is_deleted(alice_fix, alice, bob):
    place(bob, "sell", "1", "101")
    request(alice_fix, "sub-2", 1, types=("1",))
    alice_fix.expect("W")

    place(alice, "buy", "1", "101")

    assert entries(alice_fix.expect("X")) == [("2", "1", "101", None)]


def test_an_unsubscribed_request_gets_nothing_more(alice_fix, bob):
    request(alice_fix, "sub-3", 1, types=("0",))
    alice_fix.expect("W")

    request(alice_fix, "sub-3", 2)
    place(bob, "buy", "1", "99")

    assert alice_fix.quiet(0.6) == []


@pytest.mark.parametrize(
    ("options", "reason", "text"),
    [
        ({"symbols": ("NOPE-USD",)}, "0", "NOT_FOUND: "),
        ({"types": ("7",)}, "8", "MDEntryType"),
        ({"kind": 5}, "4", "SubscriptionRequestType"),
    ],
)
def test_a_request_the_venue_can_not_serve_is_rejected(alice_fix, options, reason, text):
    request(alice_fix, "bad-1", options.pop("kind", 1), **options)

    reject = alice_fix.expect("Y")
    assert (reject[262], reject[281]) == ("bad-1", reason) and text in reject[58]


def test_a_request_id_in_use_is_rejected(alice_fix):
    request(alice_fix, "dup", 1, types=("0",))
    alice_fix.expect("W")

    request(alice_fix, "dup", 1, types=("0",))

    assert alice_fix.expect("Y")[281] == "1"
