"""A bracket through the REST API, watched over /ws, then cancelled as one list.

    QT_API_KEY=<key with the trade scope> python examples/bracket_bot.py [--url http://127.0.0.1:8000]
        [--symbol QTX-USD] [--side buy] [--quantity 1] [--price P] [--take-profit T]
        [--stop-loss S] [--stop-limit L] [--seconds 0]

What it does, the way an integrator protects a position (docs/API.md, "Order lists"):
1. reads the market's rules and last price over REST (`GET /api/markets/{symbol}`); the
   entry's price defaults to `--offset` ticks from the last trade on the passive side, the
   take-profit and stop-loss to `--width` ticks either side of the entry;
2. opens /ws, authenticates with the API key and subscribes to its private `orders` channel
   before it places anything, so no change of its orders can pass unseen;
3. places the bracket with `POST /api/orders/bracket` (`Authorization: Api-Key <key>`): a
   limit entry whose fills place a take-profit and a stop-loss (one cancels the other) for
   what filled;
4. prints every change of the list's orders as the private stream reports it: the entry's
   fills, the exits as they appear and grow, a trigger; it stops watching when the list is
   done (an exit filled), after `--seconds`, or on Ctrl-C / SIGTERM;
5. reads the list (`GET /api/orders/lists/{id}`) and, unless it is done already, cancels
   all of it with `DELETE /api/orders/lists/{id}`, which answers the list as it then stands.

Every REST answer says how many requests are left in the current window
(`X-RateLimit-Remaining`, `X-RateLimit-Reset`); the bot waits the window out before a
request when none are left, rather than being refused.

Standard library plus `websockets` (in requirements.txt). Decimals stay Decimal: prices and
quantities go out as strings.
"""

import argparse
import asyncio
import contextlib
import json
import os
import signal
import time
import urllib.error
import urllib.request
from decimal import ROUND_DOWN, Decimal

from websockets.asyncio.client import connect

DONE = ("filled", "cancelled", "expired", "rejected")


class Refused(Exception):
    def __init__(self, status, body):
        error = body.get("error", {}) if isinstance(body, dict) else {}
        super().__init__(f"{status} {error.get('code')}: {error.get('message')} (field {error.get('field')})")
        self.status = status


class Rest:
    """JSON over HTTP with an API key, paced by the venue's rate-limit headers."""

    def __init__(self, base_url, key):
        self.base_url = base_url
        self.key = key
        self.remaining = None
        self.reset_at = 0.0

    def call(self, method, path, body=None):
        if self.remaining == 0 and time.monotonic() < self.reset_at:
            time.sleep(self.reset_at - time.monotonic())
        request = urllib.request.Request(
            self.base_url + path,
            method=method,
            data=json.dumps(body).encode() if body is not None else None,
            headers={"Authorization": f"Api-Key {self.key}", "Content-Type": "application/json"},
        )
        try:
            with urllib.request.urlopen(request, timeout=10) as response:
                status, headers, raw = response.status, response.headers, response.read()
        except urllib.error.HTTPError as error:
            status, headers, raw = error.code, error.headers, error.read()
        if headers.get("X-RateLimit-Remaining") is not None:
            self.remaining = int(headers["X-RateLimit-Remaining"])
            self.reset_at = time.monotonic() + float(headers.get("X-RateLimit-Reset") or 0)
        answer = json.loads(raw, parse_float=Decimal) if raw else None
        if status >= 400:
            raise Refused(status, answer)
        return answer


def on_ticks(value: Decimal, tick: Decimal) -> Decimal:
    return (value / tick).to_integral_value(ROUND_DOWN) * tick


class BracketBot:
    def __init__(self, args, rest, market):
        self.args = args
        self.rest = rest
        self.symbol = args.symbol
        tick = Decimal(market["tick_size"])
        last = market["ticker"]["last_price"] or args.price
        if last is None:
            raise SystemExit(f"{self.symbol} has not traded yet: give the entry's --price")
        buying = args.side == "buy"
        sign = -1 if buying else 1  # the entry waits on the passive side, the exits around it
        self.price = Decimal(args.price) if args.price else on_ticks(Decimal(last) + sign * args.offset * tick, tick)
        width = args.width * tick
        self.take_profit = Decimal(args.take_profit) if args.take_profit else self.price - sign * width
        self.stop_loss = Decimal(args.stop_loss) if args.stop_loss else self.price + sign * width
        self.quantity = on_ticks(Decimal(args.quantity), Decimal(market["lot_size"]))
        self.list_id = None
        self.orders = {}  # id -> the latest payload of each order of the list
        self.early = []  # order messages that arrived before the bracket's answer
        self.done = asyncio.Event()

    def place(self) -> dict:
        stop_loss = {"stop_price": f"{self.stop_loss}"}
        if self.args.stop_limit:
            stop_loss["price"] = self.args.stop_limit
        body = {
            "entry": {
                "symbol": self.symbol,
                "side": self.args.side,
                "quantity": f"{self.quantity}",
                "price": f"{self.price}",
            },
            "take_profit": {"price": f"{self.take_profit}"},
            "stop_loss": stop_loss,
        }
        return self.rest.call("POST", "/api/orders/bracket", body)

    def on_order(self, order):
        if self.list_id is None:
            self.early.append(order)
            return
        if order.get("list_id") != self.list_id:
            return
        before = self.orders.get(order["id"])
        self.orders[order["id"]] = order
        if before is None:
            print(f"{order['leg']} #{order['id']}: {self.describe(order)} ({order['status']})")
        elif (before["status"], before["filled_quantity"], before["quantity"], before["stop_price"]) != (
            order["status"],
            order["filled_quantity"],
            order["quantity"],
            order["stop_price"],
        ):
            print(
                f"{order['leg']} #{order['id']}: {order['status']}, {order['filled_quantity']} of {order['quantity']} filled"
            )
        exits = [o for o in self.orders.values() if o["leg"] in ("take_profit", "stop_loss")]
        # An exit that filled ends the list: the other was cancelled with it.
        if any(o["status"] == "filled" for o in exits) and all(o["status"] in DONE for o in exits):
            self.done.set()

    @staticmethod
    def describe(order):
        at = f" at {order['price']}" if order["price"] is not None else " at market"
        stop = f" once a trade reaches {order['stop_price']}" if order["stop_price"] is not None else ""
        return f"{order['side']} {order['remaining_quantity']}{at}{stop}"

    async def read(self, ws):
        async for text in ws:
            message = json.loads(text)
            if message.get("type") == "order":
                self.on_order(message)
            elif message.get("type") == "fill" and message["order_id"] in self.orders:
                print(f"filled: {message['side']} {message['quantity']} @ {message['price']}")
            elif message.get("type") == "error":
                print(f"server: {message['code']}: {message['message']}")

    async def run(self, ws_url):
        async with connect(ws_url, max_size=2**22) as ws:
            await ws.send(json.dumps({"type": "auth", "api_key": self.rest.key}))
            answer = json.loads(await ws.recv())
            if answer["type"] != "authenticated":
                raise SystemExit(f"the key was refused: {answer.get('code')}: {answer.get('message')}")
            print(f"trading as {answer['user']['username']} with key {answer['api_key']['name']!r}")
            await ws.send(json.dumps({"type": "subscribe", "channels": ["orders"]}))
            reader = asyncio.create_task(self.read(ws))
            try:
                placed = await asyncio.to_thread(self.place)
                self.list_id = placed["list"]["id"]
                print(
                    f"bracket #{self.list_id}: {self.args.side} {self.quantity} {self.symbol} at {self.price}, "
                    f"take-profit {self.take_profit}, stop-loss {self.stop_loss}"
                )
                for order in placed["orders"]:
                    self.on_order(order)
                for order in self.early:
                    self.on_order(order)
                done = asyncio.ensure_future(self.done.wait())
                await asyncio.wait({done, reader}, return_when=asyncio.FIRST_COMPLETED)
                done.cancel()
            finally:
                if self.list_id is not None:
                    await asyncio.to_thread(self.finish)
                reader.cancel()

    def finish(self):
        shown = self.rest.call("GET", f"/api/orders/lists/{self.list_id}")
        if shown["status"] != "done":
            shown = self.rest.call("DELETE", f"/api/orders/lists/{self.list_id}")
            print(f"bracket #{self.list_id} cancelled")
        legs = ", ".join(f"{o['leg']} {o['status']}" for o in sorted(shown["orders"], key=lambda o: o["id"]))
        print(f"bracket #{self.list_id} {shown['status']}: {legs}")


def market_rules(base_url, symbol) -> dict:
    with urllib.request.urlopen(f"{base_url}/api/markets/{symbol}", timeout=10) as response:
        return json.loads(response.read(), parse_float=Decimal)


async def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--url", default="http://127.0.0.1:8000", help="the server (REST); /ws is derived")
    parser.add_argument("--key", default=os.environ.get("QT_API_KEY"), help="API key (default: $QT_API_KEY)")
    parser.add_argument("--symbol", default="QTX-USD")
    parser.add_argument("--side", choices=("buy", "sell"), default="buy", help="the entry's side")
    parser.add_argument("--quantity", default="1", help="the entry's quantity (rounded down to the lot)")
    parser.add_argument(
        "--price", default=None, help="the entry's limit price (default: --offset ticks from the last trade)"
    )
    parser.add_argument("--offset", type=int, default=5, help="ticks from the last trade to the entry")
    parser.add_argument("--take-profit", default=None, help="the take-profit's limit price")
    parser.add_argument("--stop-loss", default=None, help="the stop-loss's stop price")
    parser.add_argument("--stop-limit", default=None, help="the stop-loss's limit price (default: at market)")
    parser.add_argument("--width", type=int, default=20, help="ticks from the entry to each default exit")
    parser.add_argument("--seconds", type=float, default=0, help="cancel after this long (0: when stopped)")
    args = parser.parse_args()
    if not args.key:
        parser.error("an API key with the trade scope is needed: --key or QT_API_KEY (see docs/API.md)")

    base_url = args.url.rstrip("/")
    bot = BracketBot(args, Rest(base_url, args.key), market_rules(base_url, args.symbol))
    task = asyncio.create_task(bot.run(base_url.replace("http", "ws", 1) + "/ws"))
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, task.cancel)
    if args.seconds:
        loop.call_later(args.seconds, task.cancel)
    try:
        await task
    except Refused as refused:
        raise SystemExit(f"refused: {refused}") from None
    except asyncio.CancelledError:
        pass


if __name__ == "__main__":
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(main())
