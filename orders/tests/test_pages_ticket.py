"""The order ticket's estimate, from a book as the trader sees it (no database)."""

from decimal import Decimal as D

from hypothesis import given, settings
from hypothesis import strategies as st

from marketdata.models import Market
from marketdata.selectors import BookSnapshot
from orders.services import OrderRequest, hold_for
from orders.ticket import SIZE_FRACTIONS, ticket_estimate, ticket_size

MARKET = Market(
    symbol="QTX-USD",
    base_id="QTX",
    quote_id="USD",
    tick_size=D("0.01"),
    lot_size=D("0.01"),
    min_notional=D("1"),
    maker_fee=D("0.001"),
    taker_fee=D("0.002"),
)
BOOK = BookSnapshot(
    symbol="QTX-USD",
    seq=7,
    bids=[(D("99"), D("1")), (D("98"), D("2"))],
    asks=[(D("101"), D("1")), (D("102"), D("2"))],
)


def order(side, quantity, price=None, *, type="limit", time_in_force="GTC", post_only=False):
    return OrderRequest(MARKET, side, type, D(quantity), D(price) if price else None, time_in_force, post_only, None)


def test_a_resting_bid_costs_its_notional_and_the_maker_fee():
    estimate = ticket_estimate(request=order("buy", "2", "100"), snapshot=BOOK)

    assert (estimate.takes_quantity, estimate.rests_quantity) == (0, 2)
    assert estimate.fee == D("0.2")  # 0.1% of 200
    assert estimate.total == D("200.2")
    assert estimate.hold == D("200.4")  # what the engine holds: the taker fee, in case it ever takes
    assert estimate.average_price is None


def test_a_crossing_bid_takes_at_the_makers_prices_and_rests_the_rest():
    estimate = ticket_estimate(request=order("buy", "4", "102"), snapshot=BOOK)

    assert (estimate.takes_quantity, estimate.takes_notional) == (3, D("305"))
    assert estimate.rests_quantity == 1
    assert estimate.fee == D("0.61") + D("0.102")  # taker 0.2% of 305, maker 0.1% of 102
    assert estimate.total == D("305") + D("102") + estimate.fee
    assert estimate.average_price.quantize(D("0.01")) == D("101.67")


def test_a_market_sell_is_priced_from_the_bids():
    estimate = ticket_estimate(request=order("sell", "2", type="market", time_in_force="IOC"), snapshot=BOOK)

    assert estimate.takes_notional == D("197")  # 99 + 98
    assert estimate.total == D("197") - D("0.394")  # proceeds after the taker fee
    assert estimate.asset_spent == "QTX" and estimate.hold == 2


def test_what_the_book_cannot_fill_expires():
    estimate = ticket_estimate(request=order("buy", "5", type="market", time_in_force="IOC"), snapshot=BOOK)

    assert (estimate.takes_quantity, estimate.expires_quantity, estimate.rests_quantity) == (3, 2, 0)


def test_fill_or_kill_that_cannot_fill_trades_nothing():
    estimate = ticket_estimate(request=order("buy", "5", "102", time_in_force="FOK"), snapshot=BOOK)

    assert estimate.fok_would_kill
    assert (estimate.takes_quantity, estimate.total, estimate.expires_quantity) == (0, 0, 5)


def test_post_only_that_would_take_is_flagged():
    estimate = ticket_estimate(request=order("sell", "1", "99", post_only=True), snapshot=BOOK)

    assert estimate.post_only_would_take
    assert estimate.takes_quantity == 0 and estimate.rests_quantity == 0


def test_a_stop_trades_nothing_now_and_shows_what_it_holds():
    stop_limit = OrderRequest(MARKET, "buy", "stop_limit", D("2"), D("103"), "GTC", False, None, D("102"))
    estimate = ticket_estimate(request=stop_limit, snapshot=BOOK)
    assert (estimate.takes_quantity, estimate.rests_quantity, estimate.stop_price) == (0, 0, D("102"))
    assert estimate.hold == D("206.412")  # 2 x 103 + the 0.2% fee reserve

    stop_market = OrderRequest(MARKET, "buy", "stop_market", D("1"), None, "IOC", False, None, D("100"))
    assert ticket_estimate(request=stop_market, snapshot=BOOK).hold == D("105.21")  # at 100 + 5%


# --- Quick sizes: a share of the available balance ------------------------------------------


def size(side, fraction, available, price=None, book=BOOK):
    return ticket_size(
        market=MARKET, side=side, price=D(price) if price else None, fraction=D(fraction), available=D(available),
        snapshot=book,
    )  # fmt: skip


def test_a_sell_sizes_a_share_of_the_base_balance_in_whole_lots():
    assert size("sell", "0.25", "10.07") == D("2.51")  # 2.5175 rounded down to the 0.01 lot
    assert size("sell", "1", "10.07") == D("10.07")


def test_a_limit_buy_sizes_what_the_hold_allows_fee_reserve_included():
    quantity = size("buy", "0.5", "1000", price="100")
    assert quantity == D("4.99")  # 5 would need 500 + the 0.2% reserve: more than 500
    assert hold_for(market=MARKET, side="buy", price=D("100"), quantity=quantity) <= D("500")
    assert hold_for(market=MARKET, side="buy", price=D("100"), quantity=quantity + MARKET.lot_size) > D("500")


def test_a_market_buy_sizes_along_the_asks_at_each_levels_price():
    # 101 x 1 + 0.202 fee = 101.202; the rest, 98.798, buys 0.96 at 102 (+ fee).
    assert size("buy", "1", "200") == D("1.96")
    assert size("buy", "1", "100000") == D("3")  # the whole book, no more
    assert size("buy", "1", "100", book=BookSnapshot("QTX-USD", 1, [], [])) == 0


@given(
    available=st.decimals(min_value="0", max_value="100000", places=2),
    fraction=st.sampled_from(SIZE_FRACTIONS),
    price=st.decimals(min_value="0.01", max_value="5000", places=2),
)
@settings(max_examples=60, deadline=None)
def test_a_quick_size_never_needs_more_than_its_share(available, fraction, price):
    budget = available * fraction
    limit_buy = size("buy", fraction, available, price=str(price))
    assert limit_buy % MARKET.lot_size == 0
    assert hold_for(market=MARKET, side="buy", price=price, quantity=limit_buy) <= budget
    market_buy = size("buy", fraction, available)
    if market_buy:
        request = order("buy", str(market_buy), type="market", time_in_force="IOC")
        assert ticket_estimate(request=request, snapshot=BOOK).hold <= budget
    assert size("sell", fraction, available) <= budget
