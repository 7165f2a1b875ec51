"""examples/bot.py against a real daphne: it quotes both sides over /ws with an API key,
replaces a quote that was filled, and cancels everything when it is stopped."""

import os
import signal
import subprocess
import sys
import time
from decimal import Decimal

from accounts.keys import api_key_create
from orders.models import Order
from orders.services import order_place

from .conftest import NEEDS_SERVERS
from .servers import ROOT

pytestmark = [*NEEDS_SERVERS]


def wait_for(predicate, timeout=30.0, what="the condition"):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.1)
    raise AssertionError(f"{what} did not happen within {timeout}s")


def open_quotes(user):
    return list(Order.objects.open().filter(user=user).order_by("side"))


def test_the_bot_quotes_both_sides_follows_the_market_and_cancels_on_exit(servers, alice, bob, market):
    _, secret = api_key_create(user=alice, name="bot", scopes=["read", "trade"])
    for side, price in (("buy", "9.00"), ("sell", "11.00")):
        order_place(user=bob, market=market, side=side, price=Decimal(price), quantity=Decimal("5"))
    daphne = servers.daphne()
    bot = subprocess.Popen(
        [sys.executable, str(ROOT / "examples" / "bot.py"), "--url", daphne.url, "--spread", "5", "--interval", "0.1"],
        env={**os.environ, "QT_API_KEY": secret},
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        # The mid of the others' book is 10.00: quotes 5 ticks either side, post-only.
        wait_for(lambda: len(open_quotes(alice)) == 2, what="two quotes")
        bid, ask = open_quotes(alice)
        assert (bid.side, bid.price, ask.side, ask.price) == ("buy", Decimal("9.95"), "sell", Decimal("10.05"))
        assert bid.post_only and ask.post_only

        # bob takes the ask: the bot places a new one.
        order_place(user=bob, market=market, side="buy", type="limit", price=Decimal("10.05"), quantity=Decimal("1"))
        wait_for(
            lambda: len(open_quotes(alice)) == 2 and ask.pk not in {o.pk for o in open_quotes(alice)},
            what="a new ask after the fill",
        )
        # The others' best bid moves up to 9.50: the mid is 10.25, and the quotes follow by
        # amendment (the same orders, new prices).
        before = {o.side: o.pk for o in open_quotes(alice)}
        order_place(user=bob, market=market, side="buy", price=Decimal("9.50"), quantity=Decimal("1"))
        wait_for(
            lambda: (
                [(o.side, o.price) for o in open_quotes(alice)]
                == [("buy", Decimal("10.20")), ("sell", Decimal("10.30"))]
            ),
            what="quotes around the new mid",
        )
        assert {o.side: o.pk for o in open_quotes(alice)} == before
        os.kill(bot.pid, signal.SIGTERM)
        output, _ = bot.communicate(timeout=30)
    finally:
        if bot.poll() is None:
            bot.kill()
            bot.wait(10)

    assert bot.returncode == 0, output
    assert "trading as alice with key 'bot'" in output
    assert "filled: sell 1.00000000 @ 10.05000000" in output
    assert "cancelled 2 order(s) on QTX-USD" in output, output
    assert open_quotes(alice) == []


def test_a_bot_killed_outright_leaves_no_quotes_behind(servers, alice, bob, market):
    """SIGKILL: the bot cancels nothing itself. Its socket asked for cancel on disconnect, so
    the server cancels its quotes when the connection drops."""
    _, secret = api_key_create(user=alice, name="bot", scopes=["read", "trade"])
    for side, price in (("buy", "9.00"), ("sell", "11.00")):
        order_place(user=bob, market=market, side=side, price=Decimal(price), quantity=Decimal("5"))
    daphne = servers.daphne()
    bot = subprocess.Popen(
        [sys.executable, str(ROOT / "examples" / "bot.py"), "--url", daphne.url, "--spread", "5", "--interval", "0.1"],
        env={**os.environ, "QT_API_KEY": secret},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        wait_for(lambda: len(open_quotes(alice)) == 2, what="two quotes")
        quotes = [order.pk for order in open_quotes(alice)]
        os.kill(bot.pid, signal.SIGKILL)
        bot.wait(10)
        wait_for(lambda: open_quotes(alice) == [], timeout=5, what="the quotes cancelled")
    finally:
        if bot.poll() is None:
            bot.kill()
            bot.wait(10)
    assert set(Order.objects.filter(pk__in=quotes).values_list("status", flat=True)) == {"cancelled"}
    assert len(open_quotes(bob)) == 2  # the others' orders stand
