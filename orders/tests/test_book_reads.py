"""What a command reads must not grow with the market's history or its traders.

The engine's statements are prepared (quantumtrades.core.sql), and PostgreSQL may run a
prepared statement with a generic plan: one made without the parameters' values. Such a
plan can only use a partial index whose condition the statement's literals prove. The
look at the book once compared the side and the statuses with parameters; its generic plan
then read every order the market ever had, filled and cancelled ones included, 2 ms per
command on a market of ten thousand orders and growing with each one. Here the planner is
made to use generic plans, and the rows a command reads of the orders table are counted
by PostgreSQL itself (pg_stat_xact_user_tables) on a market with a long history.

The lock of the makers' balances, sent with the look, once read every balance of the
market's two assets: its condition (`user IN (...) OR user IN (the makers)`) left the
planner no index on the user. It is counted the same way, among thousands of traders.
"""

from datetime import timedelta
from decimal import Decimal

import pytest
from django.db import connection, transaction
from django.utils import timezone

from accounts.models import Balance, User
from orders.expiry import orders_expire_due
from orders.models import Order, OrderStatus
from orders.services import order_amend, order_cancel, order_place

from .stories import buy, print_trade, sell, stop_sell

pytestmark = [pytest.mark.postgres, pytest.mark.django_db(transaction=True)]

HISTORY = 3000


@pytest.fixture(autouse=True)
def postgres_only(on_postgres):
    pass


@pytest.fixture
def long_history(market, alice):
    """HISTORY orders of alice on both sides, all filled or cancelled, none in the book."""
    now = timezone.now()
    Order.objects.bulk_create(
        Order(
            user=alice,
            market=market,
            side="buy" if n % 2 else "sell",
            price=Decimal(90 + n % 20),
            quantity=Decimal(1),
            filled_quantity=Decimal(n % 3 == 0),
            remaining_quantity=Decimal(n % 3 != 0),
            status=OrderStatus.FILLED if n % 3 == 0 else OrderStatus.CANCELLED,
            priority=n,
            created_at=now,
            updated_at=now,
        )
        for n in range(HISTORY)
    )
    with connection.cursor() as statement:
        statement.execute("ANALYZE orders_order")


@pytest.fixture
def generic_plans():
    with connection.cursor() as statement:
        statement.execute("SET plan_cache_mode = force_generic_plan")
    yield
    with connection.cursor() as statement:
        statement.execute("RESET plan_cache_mode")


def rows_read(command, table="orders_order") -> int:
    """Rows of `table` that `command` read, by index or by scan, as PostgreSQL counts them
    in the transaction (the engine runs in a savepoint of it).

    Counted before and after: PostgreSQL 15 sends a backend's counts to the shared
    statistics at most once a second, and until then its "transaction" counts also hold
    what the connection's earlier transactions read (a test that ran just before)."""

    def counted() -> int:
        with connection.cursor() as statement:
            statement.execute(
                "SELECT coalesce(seq_tup_read, 0) + coalesce(idx_tup_fetch, 0) "
                "FROM pg_stat_xact_user_tables WHERE relname = %s",
                [table],
            )
            [(rows,)] = statement.fetchall()
        return rows

    with transaction.atomic():
        before = counted()
        command()
        return counted() - before


@pytest.mark.parametrize("side", ["buy", "sell"])
def test_an_order_reads_the_top_of_the_book_not_the_history(long_history, generic_plans, alice, bob, side):
    sell(bob, "1", at="101")  # one ask, so a buy has something to look at
    place = lambda: order_place(user=bob, market="QTX-USD", side=side, price=Decimal("100.5"), quantity="1")  # noqa: E731

    rows = rows_read(place)

    # The look at the book, the makers' balances and the new order itself: a handful of rows,
    # against the thousands of the market's history.
    assert rows < 20, rows


def test_an_order_that_trades_reads_only_what_it_meets(long_history, generic_plans, alice, bob):
    for price in ("101", "102", "103"):
        sell(bob, "1", at=price)
    buy_through = lambda: order_place(user=alice, market="QTX-USD", side="buy", price=Decimal("102"), quantity="2")  # noqa: E731

    rows = rows_read(buy_through)

    assert alice.fills.count() == 2
    assert rows < 30, rows


TRADERS = 3000


@pytest.fixture
def many_traders(market):
    """TRADERS more traders, each with a balance in both of the market's assets."""
    users = User.objects.bulk_create(User(username=f"trader{n}") for n in range(TRADERS))
    Balance.objects.bulk_create(
        Balance(user=user, asset_id=asset, available=Decimal(1000))
        for user in users
        for asset in (market.base_id, market.quote_id)
    )
    with connection.cursor() as statement:
        statement.execute("ANALYZE accounts_balance")


@pytest.mark.parametrize("side", ["buy", "sell"])
def test_an_order_locks_the_balances_it_needs_not_every_traders(many_traders, generic_plans, alice, bob, side):
    buy(bob, "1", at="99")
    sell(bob, "1", at="101")
    cross = "101" if side == "buy" else "99"
    take = lambda: order_place(user=alice, market="QTX-USD", side=side, price=Decimal(cross), quantity="1")  # noqa: E731

    rows = rows_read(take, table="accounts_balance")

    assert alice.fills.count() == 1
    # The taker's, the maker's and the fee account's balances, several of them read more
    # than once (locked, then updated; the fee account's created on its first fee): a few
    # dozen rows, against the thousands of the traders' balances.
    assert rows < 60, rows


# The server runs every engine statement with a generic plan (settings: plan_cache_mode), so
# every kind of command is held to the rows it needs here, not only the look at the book.


def test_a_cancel_and_an_amend_read_their_order_not_the_history(long_history, generic_plans, bob):
    resting = sell(bob, "2", at="101").order

    amended = rows_read(lambda: order_amend(user=bob, order_id=resting.pk, quantity=Decimal("1")))
    cancelled = rows_read(lambda: order_cancel(user=bob, order_id=resting.pk))

    assert Order.objects.get(pk=resting.pk).status == OrderStatus.CANCELLED
    assert amended < 10, amended
    assert cancelled < 10, cancelled


def test_a_trade_that_moves_a_trailing_stop_and_triggers_stops_reads_only_those(
    long_history, generic_plans, alice, bob, carol
):
    print_trade(bob, alice, "100")
    stop_sell(alice, "1", stop="99")
    trailing = order_place(
        user=alice, market="QTX-USD", side="sell", type="trailing_stop", quantity="1", trailing_delta=Decimal("2")
    ).order
    buy(carol, "2", at="97")  # what the triggered stops sell to
    sell(bob, "1", at="101")

    moving = rows_read(lambda: buy(alice, "1", at="101"))  # a trade at 101: the trailing stop follows

    trailing.refresh_from_db()
    assert trailing.stop_price == Decimal("99")  # 101 - 2
    sell(bob, "1", at="98.50")
    triggering = rows_read(lambda: buy(carol, "1", at="98.50"))  # a trade at 98.50: both stops trigger
    assert not Order.objects.filter(user=alice, status=OrderStatus.PENDING).exists()
    assert moving < 30, moving
    assert triggering < 40, triggering


def test_the_expiry_job_reads_only_the_orders_due(long_history, generic_plans, bob):
    soon = timezone.now() + timedelta(seconds=30)
    order = sell(bob, "1", at="101", time_in_force="GTD", expire_at=soon).order

    nothing_due = rows_read(orders_expire_due)
    Order.objects.filter(pk=order.pk).update(expire_at=timezone.now() - timedelta(seconds=1))
    one_due = rows_read(orders_expire_due)

    assert Order.objects.get(pk=order.pk).status == OrderStatus.EXPIRED
    assert nothing_due == 0, nothing_due
    assert one_due < 10, one_due
