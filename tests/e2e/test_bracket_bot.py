"""examples/bracket_bot.py against a real daphne: it places a bracket over REST with an API
key, follows its list on the private `orders` channel of /ws as the entry fills and the
exits appear, and cancels the list as one when it is stopped."""

import os
import queue
import signal
import subprocess
import sys
import threading
import time
from decimal import Decimal

from accounts.keys import api_key_create
from orders.models import Order, OrderList
from orders.selectors import reconcile
from orders.services import order_place

from .conftest import NEEDS_SERVERS
from .servers import ROOT

pytestmark = [*NEEDS_SERVERS]


class Output:
    """The bot's output, line by line as it comes, read by a thread of its own."""

    def __init__(self, stream):
        self.lines = []
        self.queue = queue.SimpleQueue()
        self.reader = threading.Thread(target=lambda: [self.queue.put(line) for line in stream], daemon=True)
        self.reader.start()

    def wait_for(self, text, timeout=30.0):
        """The first line that contains `text`, waiting for it as long as `timeout`."""
        deadline = time.monotonic() + timeout
        while not any(text in line for line in self.lines):
            try:
                self.lines.append(self.queue.get(timeout=max(deadline - time.monotonic(), 0.01)))
            except queue.Empty:
                raise AssertionError(f"no {text!r} within {timeout}s:\n{''.join(self.lines)}") from None
        return next(line for line in self.lines if text in line)

    def all(self) -> str:
        """Everything the bot said, once it has exited."""
        self.reader.join(10)
        while not self.queue.empty():
            self.lines.append(self.queue.get())
        return "".join(self.lines)


def test_the_bracket_bot_places_watches_and_cancels_its_list(servers, alice, bob, market):
    _, secret = api_key_create(user=alice, name="brackets", scopes=["read", "trade"])
    daphne = servers.daphne()
    command = [
        sys.executable, str(ROOT / "examples" / "bracket_bot.py"), "--url", daphne.url,
        "--price", "9.50", "--take-profit", "11.00", "--stop-loss", "9.00", "--quantity", "2",
    ]  # fmt: skip
    bot = subprocess.Popen(
        command,
        env={**os.environ, "QT_API_KEY": secret},
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    output = Output(bot.stdout)
    try:
        output.wait_for("trading as alice with key 'brackets'")
        output.wait_for("entry #")
        entry = Order.objects.get(user=alice, leg="entry")
        assert (entry.side, entry.price, entry.status) == ("buy", Decimal("9.50"), "open")

        # bob sells into half the entry: the exits appear for what filled, and the bot sees them.
        order_place(user=bob, market=market, side="sell", price=Decimal("9.50"), quantity=Decimal("1"))
        assert "sell 1.00000000 at 11.00000000" in output.wait_for("take_profit #")
        assert "once a trade reaches 9.00000000" in output.wait_for("stop_loss #")
        os.kill(bot.pid, signal.SIGTERM)
        bot.wait(30)
        text = output.all()
    finally:
        if bot.poll() is None:
            bot.kill()
            bot.wait(10)

    assert bot.returncode == 0, text
    order_list = OrderList.objects.get(user=alice)
    assert f"bracket #{order_list.pk} cancelled" in text
    assert f"bracket #{order_list.pk} done: entry cancelled, take_profit cancelled, stop_loss cancelled" in text
    assert order_list.status == "done"
    assert not Order.objects.active().filter(user=alice).exists()
    assert reconcile() == []
