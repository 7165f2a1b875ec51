"""A small market maker for QuantumTrades: quotes both sides of one market over /ws.

    QT_API_KEY=<key with the trade scope> python examples/bot.py [--url http://127.0.0.1:8000]
        [--symbol QTX-USD] [--spread 3] [--size 1] [--levels 1] [--step 1] [--seconds 0]

What it does, the way an integrator's program would:
1. reads the market's rules (tick, lot, minimum notional) over REST (`GET /api/markets/{symbol}`);
2. opens /ws, authenticates with the API key and cancel on disconnect (`{"type": "auth",
   "api_key", "cancel_on_disconnect": true}`: if the bot is killed or its connection drops,
   the venue cancels its quotes), subscribes to the book and to its private `orders` channel;
3. keeps the book from the snapshot and the updates, checking that each update's `prev_seq` is
   the seq it holds (on a gap it subscribes again and starts from a fresh snapshot);
4. quotes a ladder of `--levels` post-only bids and asks, the first `--spread` ticks either side
   of the others' mid price (the book without its own quotes; the last trade, or `--price`, when
   one side is empty), each next one `--step` ticks further out; the quotes it lacks go out in
   one `order.batch` (each answered in its place), and it moves the others with `order.amend`
   when the mid moves; a filled quote is placed again;
5. paces itself by its rate limit rather than by fixed sleeps: every answer carries
   `rate_limit` (REST's X-RateLimit-Limit, -Remaining and -Reset), and the bot spreads what is
   left of the window over the seconds until it resets (waiting for the reset when nothing is
   left, or `retry_after` when throttled);
6. on exit (Ctrl-C, SIGTERM or after `--seconds`) cancels all its orders on the market
   (`order.cancel_all`) and says what it traded.

Standard library plus `websockets` (in requirements.txt). Decimals stay Decimal: prices and
quantities go out as strings.
"""

import argparse
import asyncio
import contextlib
import itertools
import json
import os
import signal
import sys
import urllib.request
from decimal import ROUND_DOWN, Decimal

from websockets.asyncio.client import connect


class Refused(Exception):
    def __init__(self, error):
        super().__init__(f"{error['code']}: {error['message']}")
        self.code = error["code"]
        self.retry_after = error.get("retry_after")


class Bot:
    def __init__(self, args, market):
        self.args = args
        self.symbol = args.symbol
        self.tick = Decimal(market["tick_size"])
        self.lot = Decimal(market["lot_size"])
        self.size = (Decimal(args.size) / self.lot).to_integral_value(ROUND_DOWN) * self.lot
        self.last = Decimal(market["ticker"]["last_price"]) if market["ticker"]["last_price"] else None
        self.fallback = Decimal(args.price) if args.price else None
        self.book = {"bids": {}, "asks": {}}
        self.seq = None
        # side -> one quote per level, nearest the mid first: {"id", "price", "remaining"} or None
        self.quotes = {side: [None] * args.levels for side in ("buy", "sell")}
        # The rate limit as the last answer gave it: {"limit", "remaining", "reset"}.
        self.budget = None
        self.pending = {}  # req_id -> future of its answer
        self.req_ids = itertools.count(1)
        self.changed = asyncio.Event()
        self.traded = {"buy": Decimal(0), "sell": Decimal(0)}

    # --- Talking to the socket ------------------------------------------------------------

    async def request(self, kind, **fields):
        """Send one order command and wait for its order.result (or raise Refused)."""
        req_id = f"bot-{next(self.req_ids)}"
        future = asyncio.get_running_loop().create_future()
        self.pending[req_id] = future
        await self.ws.send(json.dumps({"type": kind, "req_id": req_id, **fields}))
        answer = await asyncio.wait_for(future, 10)
        if answer["type"] == "error":
            if answer["code"] == "THROTTLED":
                self.budget = {"remaining": 0, "reset": answer["retry_after"]}
            raise Refused(answer)
        self.budget = answer.get("rate_limit", self.budget)
        return answer

    async def read(self):
        async for text in self.ws:
            message = json.loads(text)
            kind = message.get("type")
            if message.get("req_id") in self.pending:
                self.pending.pop(message["req_id"]).set_result(message)
            elif kind == "book_snapshot":
                self.book = {side: {Decimal(p): Decimal(q) for p, q in message[side]} for side in ("bids", "asks")}
                self.seq = message["seq"]
                self.changed.set()
            elif kind == "book_update":
                if message["prev_seq"] != self.seq:
                    print(f"book gap: have {self.seq}, update from {message['prev_seq']}; subscribing again")
                    await self.subscribe()
                    continue
                for side in ("bids", "asks"):
                    for price, quantity in message[side]:
                        if Decimal(quantity):
                            self.book[side][Decimal(price)] = Decimal(quantity)
                        else:
                            self.book[side].pop(Decimal(price), None)
                self.seq = message["seq"]
                self.changed.set()
            elif kind == "trade":
                self.last = Decimal(message["price"])
            elif kind == "order":
                self.on_order(message)
            elif kind == "fill":
                self.traded[message["side"]] += Decimal(message["quantity"])
                print(f"filled: {message['side']} {message['quantity']} @ {message['price']}")
            elif kind == "error":
                print(f"server: {message['code']}: {message['message']}")

    def on_order(self, order):
        quotes = self.quotes.get(order["side"], [])
        for level, quote in enumerate(quotes):
            if quote is None or quote["id"] != order["id"]:
                continue
            if order["status"] in ("filled", "cancelled", "expired", "rejected"):
                quotes[level] = None
                self.changed.set()
            else:
                quote["remaining"] = Decimal(order["remaining_quantity"])

    async def subscribe(self):
        self.seq = None
        await self.ws.send(json.dumps({"type": "subscribe", "channels": ["book", "trades"], "symbols": [self.symbol]}))

    # --- Quoting ---------------------------------------------------------------------------

    def others(self, side) -> Decimal | None:
        """The best price of a side of the book, not counting this bot's own quotes."""
        mine = {}
        for quote in self.quotes["buy" if side == "bids" else "sell"]:
            if quote is not None:
                mine[quote["price"]] = mine.get(quote["price"], Decimal(0)) + quote["remaining"]
        levels = self.book[side]
        for price in sorted(levels, reverse=(side == "bids")):
            if levels[price] > mine.get(price, Decimal(0)):
                return price
        return None

    def mid(self) -> Decimal | None:
        bid, ask = self.others("bids"), self.others("asks")
        if bid is not None and ask is not None:
            return (bid + ask) / 2
        return self.last or self.fallback

    def targets(self, mid) -> dict:
        """Each side's ladder of prices, nearest the mid first."""
        offset, step = self.tick * self.args.spread, self.tick * self.args.step
        bid = ((mid - offset) / self.tick).to_integral_value(ROUND_DOWN) * self.tick
        ask = max(-((-(mid + offset)) / self.tick).to_integral_value(ROUND_DOWN) * self.tick, bid + self.tick)
        levels = range(self.args.levels)
        return {"buy": [bid - step * n for n in levels], "sell": [ask + step * n for n in levels]}

    def quoted(self, side, level, order):
        live = order["status"] in ("open", "partially_filled")
        self.quotes[side][level] = (
            {"id": order["id"], "price": Decimal(order["price"]), "remaining": Decimal(order["remaining_quantity"])}
            if live
            else None
        )
        print(f"{side} {order['remaining_quantity']} @ {order['price']} ({order['status']})")

    async def requote(self):
        mid = self.mid()
        if mid is None or self.seq is None:
            return
        targets = self.targets(mid)
        # The quotes it lacks, in one batch: each order is answered in its place.
        missing = [(side, level) for side in targets for level, quote in enumerate(self.quotes[side]) if quote is None]
        if missing:
            orders = [
                {
                    "symbol": self.symbol,
                    "side": side,
                    "order_type": "limit",
                    "price": f"{targets[side][level]}",
                    "quantity": f"{self.size}",
                    "post_only": True,
                }
                for side, level in missing
            ]
            try:
                answer = await self.request("order.batch", orders=orders)
            except Refused as refused:
                print(f"quotes refused: {refused}")
            else:
                for (side, level), result in zip(missing, answer["results"], strict=True):
                    if "order" in result:
                        self.quoted(side, level, result["order"])
                    elif result["error"]["code"] != "POST_ONLY_WOULD_TAKE":  # the book moved across: next round
                        print(f"{side} quote refused: {result['error']['code']}: {result['error']['message']}")
        # The others follow the mid by amendment: the same orders, new prices.
        for side, prices in targets.items():
            for level, price in enumerate(prices):
                quote = self.quotes[side][level]
                if quote is None or quote["price"] == price or (side, level) in missing:
                    continue
                try:
                    answer = await self.request("order.amend", id=quote["id"], price=f"{price}")
                except Refused as refused:
                    if refused.code == "ORDER_NOT_OPEN":
                        self.quotes[side][level] = None  # filled meanwhile: placed again next round
                    elif refused.code != "POST_ONLY_WOULD_TAKE":  # the book moved across: next round
                        print(f"{side} quote refused: {refused}")
                    continue
                self.quoted(side, level, answer["order"])

    async def pace(self):
        """Wait as the rate limit asks, not a fixed time: what is left of the window is spread
        over the seconds until it resets (a requote may cost an order per quote), and with
        nothing left the bot waits for the reset. `--interval` is a floor, 0 by default."""
        wait = self.args.interval
        if self.budget is not None:
            cost = 2 * self.args.levels
            remaining, reset = self.budget["remaining"], self.budget["reset"]
            wait = max(wait, reset if remaining < cost else reset * cost / remaining)
        await asyncio.sleep(wait)

    async def run(self, url, key):
        async with connect(url, max_size=2**22) as ws:
            self.ws = ws
            await ws.send(json.dumps({"type": "auth", "api_key": key, "cancel_on_disconnect": True}))
            answer = json.loads(await ws.recv())
            if answer["type"] != "authenticated":
                raise SystemExit(f"the key was refused: {answer.get('code')}: {answer.get('message')}")
            if "trade" not in answer["api_key"]["scopes"]:
                raise SystemExit("this key may only read: make one with the trade scope")
            print(f"trading as {answer['user']['username']} with key {answer['api_key']['name']!r}")
            reader = asyncio.create_task(self.read())
            await ws.send(json.dumps({"type": "subscribe", "channels": ["orders"]}))
            await self.subscribe()
            try:
                while True:
                    changed = asyncio.ensure_future(self.changed.wait())
                    await asyncio.wait({changed, reader}, return_when=asyncio.FIRST_COMPLETED)
                    if reader.done():
                        changed.cancel()
                        print("the server closed the connection")
                        break
                    self.changed.clear()
                    await self.requote()
                    await self.pace()
            finally:
                if not reader.done():
                    try:
                        answer = await self.request("order.cancel_all", symbol=self.symbol)
                        print(f"cancelled {len(answer['orders'])} order(s) on {self.symbol}")
                    except (TimeoutError, Refused) as exc:
                        print(f"could not cancel on exit: {exc}", file=sys.stderr)
                reader.cancel()
                print(f"traded: bought {self.traded['buy']}, sold {self.traded['sell']}")


def market_rules(base_url, symbol) -> dict:
    with urllib.request.urlopen(f"{base_url}/api/markets/{symbol}", timeout=10) as response:
        return json.loads(response.read(), parse_float=Decimal)


async def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--url", default="http://127.0.0.1:8000", help="the server (REST); /ws is derived")
    parser.add_argument("--key", default=os.environ.get("QT_API_KEY"), help="API key (default: $QT_API_KEY)")
    parser.add_argument("--symbol", default="QTX-USD")
    parser.add_argument("--spread", type=int, default=3, help="ticks from the mid price to each quote")
    parser.add_argument("--size", default="1", help="quantity of each quote (rounded down to the lot)")
    parser.add_argument("--levels", type=int, default=1, help="quotes on each side (at most 10: a batch is 20)")
    parser.add_argument("--step", type=int, default=1, help="ticks between two quotes of a side")
    parser.add_argument("--price", default=None, help="the mid price to start from on an empty book")
    parser.add_argument(
        "--interval", type=float, default=0, help="least seconds between two requotes (else paced by the rate limit)"
    )
    parser.add_argument("--seconds", type=float, default=0, help="stop after this long (0: until Ctrl-C)")
    args = parser.parse_args()
    if not 1 <= args.levels <= 10:
        parser.error("--levels is 1 to 10: the quotes of both sides go out in one batch of at most 20")
    if not args.key:
        parser.error("an API key with the trade scope is needed: --key or QT_API_KEY (see docs/API.md)")

    bot = Bot(args, market_rules(args.url.rstrip("/"), args.symbol))
    task = asyncio.create_task(bot.run(args.url.rstrip("/").replace("http", "ws", 1) + "/ws", args.key))
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, task.cancel)
    if args.seconds:
        loop.call_later(args.seconds, task.cancel)
    with contextlib.suppress(asyncio.CancelledError):
        await task


if __name__ == "__main__":
    asyncio.run(main())
