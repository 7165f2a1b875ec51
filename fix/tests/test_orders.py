"""Order entry over FIX: the same engine, rules and error codes as REST, reported with
execution reports; and every order of the session's user reported, whatever door placed it."""

from decimal import Decimal

import pytest
from django.utils import timezone

from accounts.services import balance_deposit
from orders.expiry import orders_expire_due
from orders.models import Order
from orders.selectors import reconcile
from orders.services import oco_place, order_list_cancel, order_place

from .client import utc_now

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.timeout(120)]


@pytest.fixture
def alice_fix(connect, trade_key):
    client = connect("ALICE")
    client.logon(trade_key)
    return client


def rest_order(rest, **order):
    return rest.post("/api/orders", {"symbol": "QTX-USD", **order}, format="json")


def test_an_order_placed_over_fix_is_new_then_filled_against_a_resting_rest_order(alice_fix, rest):
    assert rest_order(rest, side="sell", type="limit", price="100", quantity="2").status_code == 201

    alice_fix.new_order("buy-1", "buy", "2", "101")
    new, trade = alice_fix.reports(2)

    assert (new[150], new[39], new[11], new[14], new[151]) == ("0", "0", "buy-1", "0", "2")
    assert (trade[150], trade[39], trade[31], trade[32], trade[14], trade[151], trade[6]) == (
        "F",
        "2",
        "100",
        "2",
        "2",
        "0",
        "100",
    )
    assert trade[37] == new[37] and trade[12] == "0.4" and trade[479] == "USD"  # taker fee 0.2% of 200
    order = Order.objects.get(pk=new[37])
    assert (order.source, order.client_order_id, order.status) == ("fix", "buy-1", "filled")
    assert reconcile() == []


def test_a_fill_made_by_someone_elses_rest_order_is_reported_on_fix(alice_fix, rest):
    alice_fix.new_order("rest-on-book", "sell", "3", "105")
    alice_fix.expect("8")

    assert rest_order(rest, side="buy", type="limit", price="105", quantity="1").status_code == 201

    trade = alice_fix.expect("8")
    assert (trade[150], trade[39], trade[11], trade[31], trade[32], trade[14], trade[151]) == (
        "F",
        "1",
        "rest-on-book",
        "105",
        "1",
        "1",
        "2",
    )
    assert trade[851] == "1"  # a maker


def test_an_order_of_the_same_user_placed_over_rest_is_reported_too(alice_fix, alice):
    order_place(user=alice, market="QTX-USD", side="buy", quantity=Decimal("1"), price=Decimal("50"))

    new = alice_fix.expect("8")
    assert (new[150], new[39], new[44], new[38]) == ("0", "0", "50", "1")
    assert 11 not in new.first  # placed without a client order id


def test_a_repeated_cl_ord_id_answers_with_the_original_order_and_places_nothing(alice_fix):
    alice_fix.new_order("once", "buy", "1", "90")
    new = alice_fix.expect("8")

    alice_fix.new_order("once", "buy", "5", "91")
    status = alice_fix.expect("8")

    assert (status[150], status[37], status[38], status[44]) == ("I", new[37], "1", "90")
    assert "Duplicate ClOrdID" in status[58]
    assert Order.objects.filter(client_order_id="once").count() == 1


@pytest.mark.parametrize(
    ("fields", "text"),
    [
        ({54: 1, 38: "1000", 44: "500"}, "INSUFFICIENT_FUNDS: "),
        ({54: 1, 38: "1", 44: "100.001"}, "INVALID: "),
        ({54: 3, 38: "1", 44: "100"}, "INVALID: "),
        ({54: 1, 38: "1", 44: "100", 59: "6"}, "INVALID: ExpireTime (126): A GTD order needs an expire_at"),
        ({54: 1, 38: "1", 44: "100", 59: "6", 126: "2030-01-01"}, "INVALID: ExpireTime (126) is a UTC time"),
        (
            {54: 1, 38: "1", 44: "100", 59: "6", 126: "20000101-00:00:00"},
            "INVALID: ExpireTime (126) must be at least 5 seconds ahead",
        ),
        ({54: 1, 38: "1", 44: "100", 1138: "2"}, "INVALID: DisplayQty (1138) must be at most"),
        ({54: 1, 38: "1", 44: "100", 18: "A"}, "ExecInst (18)"),
        ({54: 1, 38: "x", 44: "100"}, "INVALID: OrderQty (38)"),
    ],
)
def test_a_refused_order_is_an_execution_report_rejected_with_the_rest_code_in_text(alice_fix, fields, text):
    alice_fix.send("D", [(11, "bad"), (55, "QTX-USD"), (40, 2), (60, utc_now()), *fields.items()])

    report = alice_fix.expect("8")

    assert (report[150], report[39], report[37], report[11]) == ("8", "8", "NONE", "bad")
    assert text in report[58]
    assert not Order.objects.filter(client_order_id="bad").exists()


def test_a_gtd_order_carries_its_expire_time_and_is_reported_expired_when_it_comes(alice_fix):
    alice_fix.new_order("gtd", "buy", "1", "90", tags=[(59, 6), (126, "20991231-18:00:00.250")])

    new = alice_fix.expect("8")

    assert (new[150], new[39], new[59], new[126]) == ("0", "0", "6", "20991231-18:00:00.250")
    order = Order.objects.get(client_order_id="gtd")
    assert (order.time_in_force, order.expire_at.isoformat()) == ("GTD", "2099-12-31T18:00:00.250000+00:00")
    Order.objects.filter(pk=order.pk).update(expire_at=timezone.now())
    orders_expire_due()
    expired = alice_fix.expect("8")
    assert (expired[150], expired[39], expired[37], expired[151]) == ("C", "C", str(order.pk), "0")


def test_an_iceberg_order_carries_its_display_quantity(alice_fix):
    alice_fix.new_order("ice", "buy", "5", "90", tags=[(1138, "1")])

    new = alice_fix.expect("8")

    assert (new[150], new[38], new[1138], new[151]) == ("0", "5", "1", "5")
    assert Order.objects.get(client_order_id="ice").display_quantity == 1


def test_a_trailing_stop_placed_over_rest_is_reported_as_the_stop_it_is_now(alice_fix, rest, alice):
    assert rest_order(rest, side="sell", type="limit", price="100", quantity="1").status_code == 201
    alice_fix.new_order("tape", "buy", "1", "100")
    alice_fix.reports(2)  # new, filled: the tape at 100

    order_place(
        user=alice, market="QTX-USD", side="sell", type="trailing_stop", quantity=Decimal("1"), trailing_delta=2
    )

    new = alice_fix.expect("8")
    assert (new[150], new[39], new[40], new[99]) == ("0", "0", "3", "98")


def test_a_post_only_order_that_would_take_is_refused_with_its_code(alice_fix, rest):
    rest_order(rest, side="sell", type="limit", price="100", quantity="1")

    alice_fix.new_order("maker", "buy", "1", "100", tags=[(18, "6")])

    report = alice_fix.expect("8")
    assert report[150] == "8" and report[58].startswith("POST_ONLY_WOULD_TAKE: ")


def test_an_ioc_remainder_is_reported_expired(alice_fix, rest):
    rest_order(rest, side="sell", type="limit", price="100", quantity="1")

    alice_fix.new_order("ioc", "buy", "3", "100", tags=[(59, 3)])

    new, trade, expired = alice_fix.reports(3)
    assert [new[150], trade[150], expired[150]] == ["0", "F", "C"]
    assert (expired[39], expired[14], expired[151]) == ("C", "1", "0")


def test_cancel_replace_and_status_requests(alice_fix):
    alice_fix.new_order("c-1", "buy", "2", "90")
    order_id = alice_fix.expect("8")[37]

    alice_fix.send(
        "G",
        [(37, order_id), (41, "c-1"), (11, "c-1-r"), (55, "QTX-USD"), (54, 1), (40, 2)]
        + [(44, "91"), (38, "3"), (60, utc_now())],
    )
    replaced = alice_fix.expect("8")
    alice_fix.send("H", [(37, order_id), (11, "c-1"), (55, "QTX-USD"), (54, 1), (790, "st-1")])
    status = alice_fix.expect("8")
    alice_fix.send("F", [(41, "c-1"), (11, "c-1-x"), (55, "QTX-USD"), (54, 1), (60, utc_now())])
    cancelled = alice_fix.expect("8")

    assert (replaced[150], replaced[39], replaced[44], replaced[38], replaced[11], replaced[41]) == (
        "5",
        "0",
        "91",
        "3",
        "c-1-r",
        "c-1",
    )
    assert (status[150], status[39], status[790], status[44]) == ("I", "0", "st-1", "91")
    assert (cancelled[150], cancelled[39], cancelled[37], cancelled[151]) == ("4", "4", order_id, "0")
    assert Order.objects.get(pk=order_id).status == "cancelled"


def test_a_cancel_of_an_unknown_or_finished_order_is_an_order_cancel_reject(alice_fix):
    alice_fix.send("F", [(37, "999999"), (11, "x-1"), (41, "nope"), (55, "QTX-USD"), (54, 1), (60, utc_now())])
    unknown = alice_fix.expect("9")
    alice_fix.new_order("gone", "buy", "1", "90")
    order_id = alice_fix.expect("8")[37]
    alice_fix.send("F", [(37, order_id), (11, "x-2"), (55, "QTX-USD"), (54, 1), (60, utc_now())])
    alice_fix.expect("8")
    alice_fix.send("F", [(37, order_id), (11, "x-3"), (55, "QTX-USD"), (54, 1), (60, utc_now())])
    again = alice_fix.expect("9")

    assert (unknown[102], unknown[434], unknown[11]) == ("1", "1", "x-1") and unknown[58].startswith("NOT_FOUND: ")
    assert (again[102], again[37]) == ("0", order_id) and again[58].startswith("ORDER_NOT_OPEN: ")


def test_a_replace_the_book_refuses_is_an_order_cancel_reject_with_the_code(alice_fix):
    alice_fix.new_order("r-1", "buy", "1", "90")
    order_id = alice_fix.expect("8")[37]

    alice_fix.send("G", [(37, order_id), (11, "r-1b"), (55, "QTX-USD"), (54, 1), (40, 2), (44, "90"), (38, "100000")])

    reject = alice_fix.expect("9")
    assert (reject[434], reject[102]) == ("2", "99") and reject[58].startswith("INSUFFICIENT_FUNDS: ")


def test_mass_cancel_cancels_every_open_order_and_says_how_many(alice_fix):
    for index in range(3):
        alice_fix.new_order(f"m-{index}", "buy", "1", str(80 + index))
        alice_fix.expect("8")

    alice_fix.send("q", [(11, "mass-1"), (530, 1), (55, "QTX-USD"), (60, utc_now())])

    report = alice_fix.expect("r")
    cancels = alice_fix.reports(3)
    assert (report[11], report[530], report[531], report[533]) == ("mass-1", "1", "1", "3")
    assert {c[150] for c in cancels} == {"4"} and {c[11] for c in cancels} == {"m-0", "m-1", "m-2"}
    assert not Order.objects.filter(status="open").exists()


def test_a_mass_cancel_of_an_unknown_market_is_refused(alice_fix):
    alice_fix.send("q", [(11, "mass-2"), (530, 1), (55, "NOPE-USD"), (60, utc_now())])

    report = alice_fix.expect("r")
    assert (report[531], report[532]) == ("0", "99") and "NOPE-USD" in report[58]


def test_a_read_key_opens_a_drop_copy_session_that_receives_every_report_and_may_not_trade(
    connect, read_key, alice_fix, rest
):
    copy = connect("ALICE-COPY")
    copy.logon(read_key)

    alice_fix.new_order("dc-1", "sell", "1", "100")
    alice_fix.expect("8")
    rest_order(rest, side="buy", type="limit", price="100", quantity="1")
    # The drop copy hears of these only through the process's hub (no command of its own):
    # on a loaded machine the hub may still be subscribing, and the session then catches
    # up from the database when the hub says its stream was interrupted (Stream.send).
    copy_new, copy_trade = copy.reports(2, timeout=15.0)
    seq = copy.send("D", [(11, "dc-2"), (55, "QTX-USD"), (54, 1), (38, 1), (40, 2), (44, 90), (60, utc_now())])
    refused = copy.expect("j")

    assert (copy_new[150], copy_new[11], copy_trade[150], copy_trade[39]) == ("0", "dc-1", "F", "2")
    assert (refused[45], refused[372], refused[380]) == (str(seq), "D", "6")
    assert not Order.objects.filter(client_order_id="dc-2").exists()


def test_a_drop_copy_reports_the_new_of_an_order_that_traded_before_its_new_was_streamed(
    connect, read_key, alice_fix, rest, alice, settings
):
    # On Redis the publisher sends at most one message per PUBLISH_INTERVAL: the order's
    # acceptance and the trade that fills it reach the drop copy in the same round of the
    # stream. (The in-memory layer hands each command over on its own: two rounds.)
    settings.STREAMS = {**settings.STREAMS, "PUBLISH_INTERVAL": 3.0}
    copy = connect("ALICE-COPY")
    copy.logon(read_key)
    balance_deposit(user=alice, asset="USD", amount=Decimal("1"), reason="starts the publisher's interval")

    alice_fix.new_order("same-round", "sell", "1", "100")
    alice_fix.expect("8")
    rest_order(rest, side="buy", type="limit", price="100", quantity="1")
    reports = copy.reports(2, timeout=15.0)

    assert [(r[11], r[150], r[39], r[14], r[151]) for r in reports] == [
        ("same-round", "0", "0", "0", "1"),
        ("same-round", "F", "2", "1", "0"),
    ]
    assert copy.quiet(0.5) == []


def test_each_event_is_reported_once_though_both_paths_see_it(alice_fix, rest):
    rest_order(rest, side="sell", type="limit", price="100", quantity="1")
    alice_fix.new_order("once-only", "buy", "1", "100")

    reports = alice_fix.reports(2)

    assert [r[150] for r in reports] == ["0", "F"]
    assert alice_fix.quiet(0.8) == []


def test_order_commands_count_against_the_keys_rest_throttle(alice_fix, settings):
    from django.test import override_settings

    rates = {**settings.REST_FRAMEWORK["DEFAULT_THROTTLE_RATES"], "orders": "2/minute"}
    with override_settings(REST_FRAMEWORK={**settings.REST_FRAMEWORK, "DEFAULT_THROTTLE_RATES": rates}):
        for index in range(3):
            alice_fix.new_order(f"t-{index}", "buy", "1", str(90 + index))
        answers = alice_fix.reports(3)

    assert [a[150] for a in answers] == ["0", "0", "8"]
    assert answers[2][58].startswith("THROTTLED: Too many requests: retry in ")
    assert Order.objects.filter(client_order_id__startswith="t-").count() == 2


def test_a_kill_switch_mid_session_cancels_the_session_s_orders_and_refuses_new_ones(alice_fix, alice):
    from orders.controls import trading_disable

    alice_fix.new_order("resting", "buy", "1", "90")
    new = alice_fix.expect("8")

    switch = trading_disable(operator=None, user=alice, reason="runaway algo")

    cancelled = alice_fix.expect("8")
    assert [order.pk for order in switch.cancelled] == [int(new[37])]
    assert (cancelled[150], cancelled[39], cancelled[37], cancelled[11]) == ("4", "4", new[37], "resting")
    alice_fix.new_order("after", "buy", "1", "90")
    refused = alice_fix.expect("8")
    assert (refused[150], refused[39]) == ("8", "8")
    assert refused[58].startswith("TRADING_DISABLED: ")
    assert not Order.objects.filter(client_order_id="after").exists()
    assert reconcile() == []


def test_the_orders_of_an_oco_are_reported_like_any_other(alice_fix, alice, rest):
    """FIX places no lists, but a list's orders are orders of the user: each is reported."""
    assert rest_order(rest, side="buy", type="limit", price="90", quantity="1").status_code == 201
    assert rest_order(rest, side="sell", type="limit", price="110", quantity="1").status_code == 201
    placed = oco_place(
        user=alice, market="QTX-USD", side="buy", quantity=Decimal("1"), price=Decimal("95"), stop_price=Decimal("105")
    )
    new = {report[37]: report for report in alice_fix.reports(2)}
    assert {(r[150], r[39], r[40]) for r in new.values()} == {("0", "0", "2"), ("0", "0", "3")}
    assert set(new) == {str(order.pk) for order in placed.orders}

    order_list_cancel(user=alice, list_id=placed.order_list.pk)
    cancelled = alice_fix.reports(2)
    assert {(r[150], r[39]) for r in cancelled} == {("4", "4")}
    assert reconcile() == []
