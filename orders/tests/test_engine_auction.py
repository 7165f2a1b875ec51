"""Call auctions in the engine: the circuit breaker that opens one, what an auction accepts,
the uncross that ends it (docs/API.md, "Call auctions"). `reconcile` is clean after each."""

from datetime import timedelta
from decimal import Decimal

import pytest
from django.core.management import call_command
from django.utils import timezone

from accounts.models import OperatorAction
from marketdata.models import Market, Trade
from marketdata.services import market_halt, market_resume
from orders.auctions import auction_end, auctions_end_due
from orders.models import Fill, Order
from orders.selectors import reconcile
from orders.services import order_amend, order_cancel
from quantumtrades.core import scheduler
from quantumtrades.core.errors import Conflict, ErrorCode

from .stories import STARTING_QTX, STARTING_USD, available, buy, held, sell, stop_buy

D = Decimal


def clean():
    assert reconcile() == []
    call_command("reconcile")


def in_auction(market, *, seconds=30) -> Market:
    """Put `market` in a call auction that ends in `seconds`."""
    Market.objects.filter(pk=market.pk).update(
        status=Market.Status.AUCTION, auction_ends_at=timezone.now() + timedelta(seconds=seconds)
    )
    market.refresh_from_db()
    return market


def end_now(market) -> bool:
    Market.objects.filter(pk=market.pk).update(auction_ends_at=timezone.now() - timedelta(seconds=1))
    return auction_end(market_id=market.pk)


def status(market) -> Market:
    market.refresh_from_db()
    return market


# --- The circuit breaker ----------------------------------------------------------------


@pytest.fixture
def breaker_market(market):
    Market.objects.filter(pk=market.pk).update(circuit_breaker=D("0.05"), auction_seconds=30)
    market.refresh_from_db()
    return market


def test_a_trade_past_the_breaker_is_not_made_and_opens_an_auction(breaker_market, alice, bob, carol):
    sell(alice, "1", at="100")
    buy(bob, "1", at="100")  # the reference: 100
    sell(alice, "1", at="101")
    sell(alice, "1", at="106")  # 6 % away: past the 5 % breaker
    result = buy(carol, "3", at="110")
    # The trade at 101 stands; the one at 106 is not made; the rest of carol's GTC order rests.
    assert [(f.price, f.quantity) for f in result.fills] == [(D("101.00000000"), D("1.00000000"))]
    assert result.order.status == "partially_filled"
    assert result.order.remaining_quantity == D("2")
    market = status(breaker_market)
    assert market.status == Market.Status.AUCTION
    ends = market.auction_ends_at - timezone.now()
    assert timedelta(seconds=28) < ends <= timedelta(seconds=30)
    # The book is crossed: carol's bid at 110 above alice's ask at 106.
    assert Order.objects.bids(market).first().price == D("110")
    assert Order.objects.asks(market).first().price == D("106")
    action = OperatorAction.objects.get(kind=OperatorAction.Kind.MARKET_HALTED)
    assert action.operator is None and action.market == "QTX-USD"
    assert action.details["trigger"] == "circuit_breaker" and action.details["reference"] == "100"
    assert "Circuit breaker" in action.reason
    clean()


def test_an_ioc_remainder_expires_when_the_breaker_trips(breaker_market, alice, bob, carol):
    sell(alice, "1", at="100")
    buy(bob, "1", at="100")
    sell(alice, "1", at="120")
    result = buy(carol, "1", at="120", time_in_force="IOC")
    assert result.fills == [] and result.order.status == "expired"
    assert status(breaker_market).status == Market.Status.AUCTION
    clean()


def test_a_market_order_stops_at_the_breaker(breaker_market, alice, bob, carol):
    sell(alice, "1", at="100")
    buy(bob, "1", at="100")
    sell(alice, "1", at="104")
    sell(alice, "1", at="130")
    result = buy(carol, "2")
    assert [f.price for f in result.fills] == [D("104.00000000")]
    assert result.order.status == "expired"
    assert status(breaker_market).status == Market.Status.AUCTION
    clean()


def test_fill_or_kill_stopped_by_the_breaker_trades_nothing(breaker_market, alice, bob, carol):
    sell(alice, "1", at="100")
    buy(bob, "1", at="100")
    sell(alice, "1", at="101")
    sell(alice, "1", at="120")
    result = buy(carol, "2", at="120", time_in_force="FOK")
    assert result.fills == [] and result.order.status == "expired"
    assert status(breaker_market).status == Market.Status.AUCTION
    clean()


def test_within_the_breaker_nothing_happens(breaker_market, alice, bob):
    sell(alice, "1", at="100")
    buy(bob, "1", at="100")
    sell(alice, "1", at="105")  # exactly 5 %: allowed
    assert buy(bob, "1", at="105").order.status == "filled"
    assert status(breaker_market).status == Market.Status.TRADING


def test_the_reference_is_the_first_trade_of_the_window(breaker_market, alice, bob):
    sell(alice, "1", at="100")
    buy(bob, "1", at="100")
    Trade.objects.update(created_at=timezone.now() - timedelta(seconds=600))  # before the window
    sell(alice, "1", at="104")
    buy(bob, "1", at="104")  # the window's first trade: 104
    sell(alice, "1", at="108")  # 3.8 % from 104, 8 % from 100
    assert buy(bob, "1", at="108").order.status == "filled"
    assert status(breaker_market).status == Market.Status.TRADING


def test_without_trades_in_the_window_the_last_trade_before_is_the_reference(breaker_market, alice, bob):
    sell(alice, "1", at="100")
    buy(bob, "1", at="100")
    Trade.objects.update(created_at=timezone.now() - timedelta(seconds=600))
    sell(alice, "1", at="110")
    assert buy(bob, "1", at="110").order.status == "open"
    assert status(breaker_market).status == Market.Status.AUCTION


def test_stops_crossed_before_the_breaker_wait_for_the_uncross(breaker_market, alice, bob, carol):
    sell(alice, "1", at="100")
    buy(bob, "1", at="100")
    stop = stop_buy(carol, "1", "102", at="103").order
    sell(alice, "1", at="102")
    sell(alice, "1", at="120")
    buy(bob, "2", at="120")  # 102 trades and crosses the stop, 120 trips the breaker
    market = status(breaker_market)
    assert market.status == Market.Status.AUCTION
    stop.refresh_from_db()
    assert stop.status == "pending" and stop.triggered_at is not None
    assert end_now(market)
    stop.refresh_from_db()
    assert stop.status != "pending"  # triggered once the market trades again
    clean()


# --- During an auction ------------------------------------------------------------------


def test_limit_orders_rest_without_matching_and_the_book_may_cross(market, alice, bob):
    in_auction(market)
    a = sell(alice, "1", at="100")
    b = buy(bob, "1", at="105")
    assert a.fills == [] and b.fills == []
    assert a.order.status == b.order.status == "open"
    assert held(bob, "USD") == D("105.21")  # 105 + the fee reserve at the higher rate
    assert held(alice, "QTX") == D("1")
    clean()


def test_post_only_rests_in_an_auction(market, alice, bob):
    in_auction(market)
    sell(alice, "1", at="100")
    assert buy(bob, "1", at="105", post_only=True).order.status == "open"


@pytest.mark.parametrize(
    "options",
    [{"at": None}, {"at": "100", "time_in_force": "IOC"}, {"at": "100", "time_in_force": "FOK"}],
    ids=["market", "IOC", "FOK"],
)
def test_market_ioc_and_fok_orders_are_refused_in_an_auction(market, bob, options):
    in_auction(market)
    with pytest.raises(Conflict) as refused:
        buy(bob, "1", **options)
    assert refused.value.code == ErrorCode.MARKET_IN_AUCTION
    assert "call auction" in refused.value.message
    assert not Order.objects.exists()


def test_stops_are_accepted_in_an_auction_and_do_not_trigger(market, alice, bob, carol):
    sell(alice, "1", at="100")
    buy(bob, "1", at="100")
    in_auction(market)
    assert stop_buy(carol, "1", "101", at="102").order.status == "pending"
    sell(alice, "1", at="101")
    buy(bob, "1", at="101")  # crosses in the book, no trade, nothing triggers
    assert Order.objects.filter(status="pending").count() == 1


def test_cancel_and_amend_work_in_an_auction(market, alice, bob):
    in_auction(market)
    sell(alice, "2", at="100")
    order = buy(bob, "1", at="90").order
    amended = order_amend(user=bob, order_id=order.pk, price=D("101"))
    assert amended.fills == [] and amended.order.price == D("101") and amended.order.status == "open"
    assert held(bob, "USD") == D("101.20200000")  # 101 + 0.2 % reserve
    order_cancel(user=bob, order_id=order.pk)
    assert held(bob, "USD") == 0
    clean()


def test_an_amend_in_an_auction_is_refused_without_funds(market, alice, make_trader):
    poor = make_trader("poor", USD="100")
    in_auction(market)
    order = buy(poor, "0.5", at="100").order
    with pytest.raises(Exception) as refused:
        order_amend(user=poor, order_id=order.pk, quantity=D("1"))
    assert refused.value.code == ErrorCode.INSUFFICIENT_FUNDS


# --- The uncross --------------------------------------------------------------------------


def test_the_uncross_fills_both_sides_at_one_price_in_price_time_priority(market, alice, bob, carol, fees):
    sell(alice, "1", at="100")  # before the auction: a resting ask
    in_auction(market)
    sell(alice, "1", at="101")
    b1 = buy(bob, "1", at="103").order
    b2 = buy(carol, "2", at="102").order
    # Candidates: 100 (vol min(3,1)=1), 101 (min(3,2)=2), 102 (min(3,2)=2), 103 (min(1,2)=1).
    # Most volume 2 at 101 and 102; surplus +1 at both: buyers over -> the higher, 102.
    assert end_now(market)
    market = status(market)
    assert market.status == Market.Status.TRADING and market.auction_ends_at is None
    assert market.last_price == D("102")
    trades = list(Trade.objects.order_by("id"))
    assert [(t.price, t.quantity) for t in trades] == [(D("102"), D("1")), (D("102"), D("1"))]
    b1.refresh_from_db()
    b2.refresh_from_db()
    assert b1.status == "filled" and b1.filled_notional == D("102")
    assert b2.status == "partially_filled" and b2.filled_quantity == D("1")
    # bob bid 103 and paid 102 + the taker fee (his order came later than alice's asks):
    # the improvement was released.
    assert available(bob, "USD") == STARTING_USD - D("102") - D("0.204")
    assert held(bob, "USD") == 0
    assert available(alice, "QTX") == STARTING_QTX - 2
    # alice's asks came first: makers, 0.1 % each.
    assert available(alice, "USD") == STARTING_USD + 2 * (D("102") - D("0.102"))
    assert all(f.role == Fill.Role.MAKER for f in Fill.objects.filter(user=alice))
    assert all(f.role == Fill.Role.TAKER for f in Fill.objects.filter(user__in=[bob, carol]))
    # The book is no longer crossed: carol's remaining 1 at 102, nothing on the ask.
    assert Order.objects.bids(market).first().price == D("102")
    assert not Order.objects.asks(market).exists()
    clean()


def test_the_later_order_of_a_pair_is_the_taker(market, alice, bob):
    in_auction(market)
    buy(bob, "1", at="101")
    sell(alice, "1", at="100")
    assert end_now(market)
    trade = Trade.objects.get()
    # No surplus at 100 or 101, no reference price: the lower.
    assert trade.taker_side == "sell" and trade.price == D("100")
    assert Fill.objects.get(user=alice).role == Fill.Role.TAKER
    clean()


def test_an_auction_without_a_cross_just_ends(market, alice, bob):
    in_auction(market)
    sell(alice, "1", at="101")
    buy(bob, "1", at="100")
    assert end_now(market)
    market = status(market)
    assert market.status == Market.Status.TRADING and market.last_price is None
    assert not Trade.objects.exists()
    clean()


def test_the_uncross_waits_for_its_time(market, alice, bob):
    in_auction(market, seconds=30)
    sell(alice, "1", at="100")
    buy(bob, "1", at="100")
    assert auction_end(market_id=market.pk) is False
    assert auctions_end_due() == []
    assert status(market).status == Market.Status.AUCTION


def test_the_scheduler_job_ends_due_auctions_once(market, alice, bob):
    in_auction(market)
    sell(alice, "1", at="100")
    buy(bob, "1", at="100")
    Market.objects.filter(pk=market.pk).update(auction_ends_at=timezone.now() - timedelta(seconds=1))
    assert "orders.auctions_end_due" in scheduler.run_due()
    assert status(market).status == Market.Status.TRADING
    assert Trade.objects.count() == 1
    assert auctions_end_due() == []  # nothing left: a second process finds nothing
    assert auction_end(market_id=market.pk) is False
    assert Trade.objects.count() == 1
    clean()


def test_a_self_trade_in_the_uncross_expires_the_later_order(market, alice, bob):
    in_auction(market)
    first = sell(alice, "1", at="100").order
    later = buy(alice, "1", at="101").order
    buy(bob, "1", at="100")
    assert end_now(market)
    first.refresh_from_db()
    later.refresh_from_db()
    assert later.status == "expired"
    assert first.status == "filled"  # with bob instead
    assert Trade.objects.get().price == D("100")
    clean()


def test_an_uncross_crosses_stops(market, alice, bob, carol):
    sell(alice, "1", at="100")
    buy(bob, "1", at="100")
    stop = stop_buy(carol, "1", "104", at="110").order
    in_auction(market)
    sell(alice, "2", at="104")
    buy(bob, "1", at="105")
    assert end_now(market)
    stop.refresh_from_db()
    assert stop.status == "filled" and stop.filled_notional == D("104")
    clean()


def test_the_market_trades_continuously_after_the_uncross(market, alice, bob):
    in_auction(market)
    assert end_now(market)
    sell(alice, "1", at="100")
    assert buy(bob, "1", at="100").order.status == "filled"


# --- Halt and resume ---------------------------------------------------------------------


def test_resume_opens_an_auction_and_both_are_audited(market, alice, bob, make_trader):
    operator = make_trader("ops")
    market_halt(market=market, operator=operator, reason="news")
    assert status(market).status == Market.Status.HALTED
    with pytest.raises(Conflict) as refused:
        sell(alice, "1", at="100")
    assert refused.value.code == ErrorCode.MARKET_HALTED
    market_resume(market=market, operator=operator, reason="news out")
    market = status(market)
    assert market.status == Market.Status.AUCTION
    assert market.auction_ends_at > timezone.now() + timedelta(seconds=25)
    kinds = list(OperatorAction.objects.order_by("id").values_list("kind", "operator__username", "reason"))
    assert kinds == [("market_halted", "ops", "news"), ("market_resumed", "ops", "news out")]
    # Orders rest; the auction uncrosses at its end.
    sell(alice, "1", at="100")
    buy(bob, "1", at="100")
    assert not Trade.objects.exists()
    assert end_now(market)
    assert Trade.objects.count() == 1
    clean()


def test_a_market_in_auction_halts(market):
    in_auction(market)
    market_halt(market=market)
    market = status(market)
    assert market.status == Market.Status.HALTED and market.auction_ends_at is None
    assert auction_end(market_id=market.pk) is False


def test_a_stop_that_trips_the_breaker_leaves_the_cascade_for_the_uncross(breaker_market, alice, bob, carol):
    sell(alice, "1", at="100")
    buy(bob, "1", at="100")
    first = stop_buy(carol, "1", "101", at="120").order  # triggers, then meets 106: past the breaker
    second = stop_buy(carol, "1", "101", at="125").order  # crossed too, waits for the uncross
    sell(alice, "1", at="101")
    sell(alice, "1", at="106")
    buy(bob, "1", at="101")
    market = status(breaker_market)
    assert market.status == Market.Status.AUCTION
    first.refresh_from_db()
    second.refresh_from_db()
    assert first.status == "open" and first.price == D("120")  # triggered: rests in the auction
    assert second.status == "pending" and second.triggered_at is not None
    clean()
