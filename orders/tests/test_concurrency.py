"""Many traders at once, on PostgreSQL, with real threads and real connections.

The book lock (the market row) and the balance locks are what keep money exact when
commands race; these stories start their threads together on a barrier and check that
nobody overspends, nothing is filled twice, nothing is released twice, and that two
markets sharing USD never deadlock their way into an error. `reconcile()` is clean after
each. SQLite has no row locks, so they run on PostgreSQL only.
"""

import random
import threading
from decimal import Decimal

import psycopg
import pytest
from django.db import connection

from accounts.models import Balance, LedgerEntry
from marketdata.models import Market, Trade
from orders.models import Fill, Order
from orders.selectors import reconcile
from orders.services import order_cancel
from quantumtrades.core.errors import Conflict, InsufficientFunds

from .stories import buy, sell, trader

D = Decimal

pytestmark = [pytest.mark.postgres, pytest.mark.django_db(transaction=True), pytest.mark.timeout(300)]


@pytest.fixture(autouse=True)
def postgres_only(on_postgres):
    pass


def together(count, work):
    """Run work(0) ... work(count - 1) in threads released at once; return their outcomes.

    An outcome is what `work` returned, or the exception it raised. Each thread closes its
    own database connection, as a request handler would.
    """
    barrier = threading.Barrier(count)
    outcomes = [None] * count

    def run(index):
        try:
            barrier.wait(timeout=60)
            outcomes[index] = work(index)
        except Exception as error:
            outcomes[index] = error
        finally:
            connection.close()

    threads = [threading.Thread(target=run, args=(index,)) for index in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=240)
    assert not any(thread.is_alive() for thread in threads), "a thread is stuck"
    return outcomes


def errors(outcomes):
    return [outcome for outcome in outcomes if isinstance(outcome, Exception)]


def no_negative_balances():
    return not Balance.objects.filter(available__lt=0).exists() and not Balance.objects.filter(held__lt=0).exists()


def no_overfills():
    for order in Order.objects.all():
        filled = sum((fill.quantity for fill in order.fills.all()), D(0))
        if filled != order.filled_quantity or order.filled_quantity > order.quantity:
            return False
    return True


def test_forty_buys_racing_for_one_balance_spend_it_exactly_once(market, make_trader):
    # Each bid of 1 at 100 holds 100.2; the balance covers exactly 15 of them.
    dave = make_trader("dave", USD="1503")

    outcomes = together(40, lambda index: buy(dave, "1", at="100"))

    refused = errors(outcomes)
    assert len(refused) == 25
    assert all(isinstance(error, InsufficientFunds) for error in refused)
    assert Order.objects.filter(user=dave, status="open").count() == 15
    balance = Balance.objects.get(user=dave, asset="USD")
    assert (balance.available, balance.held) == (0, D("1503"))
    assert no_negative_balances()
    assert reconcile() == []


def test_thirty_takers_fill_one_resting_order_exactly(market, bob):
    ask = sell(bob, "10", at="100")
    takers = [trader(f"taker{index}", USD="1000") for index in range(30)]

    outcomes = together(30, lambda index: buy(takers[index], "1", at="100", time_in_force="IOC"))

    assert errors(outcomes) == []
    filled = [outcome.order for outcome in outcomes if outcome.order.filled_quantity]
    assert len(filled) == 10
    assert sum(order.filled_quantity for order in filled) == 10
    ask = Order.objects.get(pk=ask.order.pk)
    assert (ask.status, ask.filled_quantity, ask.remaining_quantity, ask.held) == ("filled", 10, 0, 0)
    assert Trade.objects.count() == 10
    assert Balance.objects.get(user=bob, asset="QTX").held == 0
    assert no_overfills()
    assert reconcile() == []


def test_twenty_cancels_of_one_order_release_its_funds_once(market, alice):
    bid = buy(alice, "2", at="100")

    outcomes = together(20, lambda index: order_cancel(user=alice, order_id=bid.order.pk))

    refused = errors(outcomes)
    assert len(refused) == 19
    assert all(isinstance(error, Conflict) and error.code == "ORDER_NOT_OPEN" for error in refused)
    balance = Balance.objects.get(user=alice, asset="USD")
    assert (balance.available, balance.held) == (D("10000"), 0)
    assert LedgerEntry.objects.filter(user=alice, kind="release", reference=f"order:{bid.order.pk}").count() == 1
    assert reconcile() == []


def test_a_cancel_racing_a_fill_lets_exactly_one_of_them_win(market, alice, bob):
    for _ in range(8):
        ask = sell(bob, "1", at="100")

        def cancel_or_take(index, ask_id=ask.order.pk):
            if index == 0:
                return order_cancel(user=bob, order_id=ask_id)
            return buy(alice, "1", at="100", time_in_force="IOC")

        cancelled, taken = together(2, cancel_or_take)

        ask = Order.objects.get(pk=ask.order.pk)
        if isinstance(cancelled, Conflict):
            assert (ask.status, taken.order.status) == ("filled", "filled")
        else:
            assert (ask.status, taken.order.status) == ("cancelled", "expired")
            assert taken.order.filled_quantity == 0
        assert ask.held == 0
    assert Balance.objects.get(user=bob, asset="QTX").held == 0
    assert no_overfills()
    assert reconcile() == []


def test_traders_crossing_two_markets_that_share_usd_all_at_once(market, btc_market, make_trader):
    # Each thread trades on both markets in its own random order, so the commands lock
    # USD balances (and the fee account's) from both books at the same time.
    traders = [make_trader(f"trader{index}", USD="5000", QTX="50", BTC="1") for index in range(12)]

    def trade(index):
        rng = random.Random(index)
        me = traders[index]
        done = []
        for _ in range(6):
            side = rng.choice([buy, sell])
            if rng.random() < 0.5:
                done.append(side(me, rng.choice(["0.5", "1", "2"]), at=rng.choice(["99", "100", "101"])))
            else:
                done.append(
                    side(me, rng.choice(["0.001", "0.002"]), at=rng.choice(["29900", "30000"]), market="BTC-USD")
                )
        return done

    outcomes = together(12, trade)

    assert errors(outcomes) == []
    assert Trade.objects.filter(market=market).exists()
    assert Trade.objects.filter(market=btc_market).exists()
    assert Fill.objects.count() == 2 * Trade.objects.count()
    assert no_negative_balances()
    assert no_overfills()
    assert reconcile() == []


def test_the_same_client_order_id_from_ten_threads_places_one_order(market, alice):
    outcomes = together(10, lambda index: buy(alice, "1", at="99", client_order_id="once"))

    assert errors(outcomes) == []
    assert len({outcome.order.pk for outcome in outcomes}) == 1
    assert sum(outcome.created for outcome in outcomes) == 1
    assert Order.objects.filter(user=alice).count() == 1
    assert Balance.objects.get(user=alice, asset="USD").held == D("99.198")
    assert reconcile() == []


def test_commands_grouped_in_one_transaction_keep_their_own_results(market, monkeypatch, published):
    """Commands that queue on one market share a transaction (orders.engine.transactions._MarketQueue):
    a refused one leaves no trace, the others stand, and each gets its own answer."""
    from orders.engine import command, transactions

    sizes = []
    run_group = transactions._run_group
    monkeypatch.setattr(transactions, "_run_group", lambda group: sizes.append(len(group)) or run_group(group))
    rich = [trader(f"rich{n}", USD="1000", QTX="10") for n in range(6)]
    poor = [trader(f"poor{n}", USD="1") for n in range(6)]
    seq_before = market.__class__.objects.get(pk=market.pk).book_seq

    def work(index):
        user = (rich + poor)[index % 12]
        price = f"{90 + index % 5}"  # bids only: nothing trades, every accepted order rests
        return buy(user, "1", at=price, client_order_id=f"grouped-{index}")

    outcomes = together(24, work)

    accepted = [o for o in outcomes if not isinstance(o, Exception)]
    refused = [o for o in outcomes if isinstance(o, Exception)]
    assert max(sizes) > 1, sizes  # groups did form
    assert len(accepted) == 12 and all(isinstance(e, InsufficientFunds) for e in refused)
    assert {r.order.user.username for r in accepted} == {u.username for u in rich}
    assert all(r.created and r.order.status == "open" for r in accepted)
    # One book sequence per accepted command, no more, no less; each order its own.
    assert market.__class__.objects.get(pk=market.pk).book_seq == seq_before + 12
    assert Order.objects.count() == 12 and len({r.order.pk for r in accepted}) == 12
    priorities = sorted(Order.objects.values_list("priority", flat=True))
    assert priorities == [seq * command.PRIORITY_SLOTS for seq in range(seq_before + 1, seq_before + 13)]
    # Each accepted command published its own batch after the commit, in sequence.
    seqs = [event.seq for batch in published for event in batch if event.__class__.__name__ == "BookChanged"]
    assert sorted(seqs) == list(range(seq_before + 1, seq_before + 13))
    assert not Balance.objects.filter(user__in=poor, held__gt=0).exists()
    assert reconcile() == []


def test_grouped_commands_that_trade_cancel_and_are_refused_all_get_their_own_answer(market):
    """Eight threads each send a stream of resting, crossing and cancelling commands, some
    of them refused (cancels of orders already gone), so groups mix accepted and refused
    commands of every statement shape. A refusal rolls its savepoint back, which makes
    psycopg drop its prepared statements: no later command of the group may then run into
    one that is gone. Every answer is a result or a refusal, and the books balance."""
    traders = [trader(f"t{n}", USD="100000", QTX="1000") for n in range(8)]

    def work(index):
        rng = random.Random(index)
        user, placed, refused = traders[index], [], 0
        for step in range(30):
            kind = rng.random()
            if kind < 0.3 and placed:
                try:
                    order_cancel(user=user, order_id=rng.choice(placed))
                except Conflict:
                    refused += 1
            elif kind < 0.6:
                side = buy if rng.random() < 0.5 else sell
                side(user, "0.5", at="100", time_in_force="IOC")  # crosses whatever rests at 100
            else:
                side, price = (buy, f"{99 - rng.randint(0, 3)}") if rng.random() < 0.5 else (sell, "100")
                placed.append(side(user, "0.5", at=price, client_order_id=f"m{index}-{step}").order.pk)
        return refused

    outcomes = together(8, work)

    assert errors(outcomes) == []
    assert sum(outcomes) > 0  # some cancels were refused
    assert Trade.objects.exists()
    assert no_negative_balances() and no_overfills()
    assert reconcile() == []


def finished_while_locked(table: str, pk: int, work) -> bool:
    """Run `work` on a thread while another transaction holds row `pk` of `table` (SELECT
    ... FOR UPDATE, as a command on the market does until it commits); True if it finished
    while the row was held (within 10 s), so it did not wait for it."""
    holder = psycopg.connect(**connection.get_connection_params())

    def run():
        try:
            work()
        finally:
            connection.close()  # the thread's own; left open, it outlives the test

    thread = threading.Thread(target=run)
    try:
        holder.execute(f"SELECT 1 FROM {table} WHERE id = %s FOR UPDATE", [pk])
        thread.start()
        thread.join(timeout=10)
        return not thread.is_alive()
    finally:
        holder.rollback()
        holder.close()
        if thread.ident is not None:
            thread.join(timeout=30)


def test_an_order_that_charges_no_fee_does_not_wait_for_the_fee_accounts_balance(market, btc_market, fees, make_trader):
    """Every market quoted in USD credits one balance row, the fee account's USD: a command
    that charges no fee must not queue behind another market's transaction holding it."""
    alice, bob = make_trader("alice", USD="10000", BTC="1"), make_trader("bob", BTC="1")
    sell(bob, "0.1", at="100", market="BTC-USD")
    buy(alice, "0.1", at="100", market="BTC-USD")  # a fee: the fee account's USD row exists
    fee_usd = Balance.objects.get(user=fees, asset_id="USD")
    done = []

    # Another market's trade holds the row until it commits.
    finished = finished_while_locked(
        Balance._meta.db_table, fee_usd.pk, lambda: done.append(buy(alice, "1", at="90").order.status)
    )

    assert finished and done == ["open"], "the resting order waited for the fee account's balance"
    assert reconcile() == []


def test_cancelling_a_finished_order_is_refused_without_waiting_for_the_book_lock(market, alice, bob):
    """A filled or cancelled order can never be open again: refusing its cancel (or amend)
    needs no book lock, so it does not queue behind a command that holds it."""
    ask = sell(bob, "1", at="100")
    buy(alice, "1", at="100")  # fills the ask
    answers = []

    def cancel():
        try:
            order_cancel(user=bob, order_id=ask.order.pk)
        except Conflict as exc:
            answers.append(exc.code)

    finished = finished_while_locked(Market._meta.db_table, market.pk, cancel)

    assert finished and answers == ["ORDER_NOT_OPEN"], "the refusal waited for the book lock"
