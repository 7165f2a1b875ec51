"""Keep the demo books moving: market makers quote around a random-walk fair price and
takers cross the spread, through the same services as every trader, at a bounded rate.

The makers keep each side of the book at least BOOK_DEPTH price levels deep: after a
command that thinned a side out (a taker ate into it, a stale quote was cancelled), they
quote at the nearest free price levels until it is deep again, so a step may take a few
commands."""

import logging
import math
import random
import time
from decimal import ROUND_DOWN, Decimal

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError
from django.db import close_old_connections

from accounts.models import User
from marketdata.models import BookLevel, Market, Side
from marketdata.selectors import tape
from orders.models import Order, OrderSource, OrderType, TimeInForce
from orders.services import order_cancel, order_place
from quantumtrades.core import metrics
from quantumtrades.core.errors import ServiceError
from quantumtrades.core.money import money

log = logging.getLogger(__name__)

MAKERS = ["maker1", "maker2"]
TAKERS = ["taker1"]
# Where a market starts when it has never traded.
START_PRICES = {"QTX-USD": Decimal("100"), "BTC-USD": Decimal("60000"), "ETH-USD": Decimal("3000")}
LEVELS_PER_SIDE = 12  # resting quotes each maker keeps on each side, at most
BOOK_DEPTH = 10  # price levels each side of the book keeps, at least
SPREAD_TICKS = 3  # half spread around the fair price, in ticks
QUOTE_TICKS = 24  # how far past the spread makers quote, in ticks
# The fair price moves about this much a day, as the synthesised history does
# (marketdata.history), so the live chart carries on from it at the same pace.
DAILY_VOLATILITY = 0.03
STEP_VOLATILITY = 0.0015  # per step, when the caller does not derive it from the rate


class Simulation:
    def __init__(
        self,
        market: Market,
        makers: list[User],
        takers: list[User],
        rng: random.Random,
        volatility: float = STEP_VOLATILITY,
    ):
        self.market = market
        self.makers = makers
        self.takers = takers
        self.rng = rng
        self.volatility = volatility
        last = tape(market).values_list("price", flat=True).first()
        self.fair = last or START_PRICES.get(market.symbol, Decimal("100"))

    def prime(self, *, limit: int = 4 * BOOK_DEPTH) -> None:
        """Quote until both sides are BOOK_DEPTH levels deep (a fresh, emptied or thinned
        book), at most `limit` commands."""
        for _ in range(limit):
            if not self._deepen():
                return

    def step(self) -> None:
        """One command on the market, chosen at random, then whatever keeps the book deep."""
        self.fair = self._walk(self.fair)
        self._act()
        self.prime()

    def _act(self) -> None:
        action = self.rng.random()
        maker = self.rng.choice(self.makers)
        if action < 0.55:
            self._quote(maker)
        elif action < 0.85:
            self._take(self.rng.choice(self.takers))
        else:
            self._requote(maker)

    def _walk(self, price: Decimal) -> Decimal:
        # A small multiplicative random walk, kept above zero. Off the tick grid: rounding
        # each step down to a tick would drag the price down half a tick a step on average
        # (2 % a minute at 60 steps a second); quotes round when they are placed.
        step = Decimal(str(self.rng.gauss(0, self.volatility)))
        return max(self.market.tick_size * 10, money(price * (1 + step)))

    def _tick(self, price: Decimal) -> Decimal:
        tick = self.market.tick_size
        return (price / tick).quantize(Decimal(1), rounding=ROUND_DOWN) * tick

    def _size(self, price: Decimal) -> Decimal:
        """A random quantity worth a few times the minimum notional."""
        market = self.market
        notional = max(market.min_notional, Decimal(10)) * self.rng.randint(1, 20)
        lots = max(1, int(notional / price / market.lot_size))
        return market.lot_size * lots

    def _levels(self) -> dict[str, set[Decimal]]:
        """The prices of each side's live book levels."""
        levels = {Side.BUY: set(), Side.SELL: set()}
        for side, price in BookLevel.objects.filter(market=self.market, quantity__gt=0).values_list("side", "price"):
            levels[side].add(price)
        return levels

    def _deepen(self) -> bool:
        """If a side has fewer than BOOK_DEPTH levels, quote at its nearest free level; say whether it did."""
        levels = self._levels()
        thin = [side for side in (Side.BUY, Side.SELL) if len(levels[side]) < BOOK_DEPTH]
        if not thin:
            return False
        side = self.rng.choice(thin)
        tick = self.market.tick_size
        # From just outside the spread around the fair price, and never through the other
        # side (a quote that crossed would trade, not deepen), outwards to the nearest free level.
        if side == Side.BUY:
            nearest = self._quote_price(Side.BUY, SPREAD_TICKS)
            if levels[Side.SELL]:
                nearest = min(nearest, min(levels[Side.SELL]) - tick)
            prices = (nearest - tick * index for index in range(QUOTE_TICKS + BOOK_DEPTH))
        else:
            nearest = self._quote_price(Side.SELL, SPREAD_TICKS)
            if levels[Side.BUY]:
                nearest = max(nearest, max(levels[Side.BUY]) + tick)
            prices = (nearest + tick * index for index in range(QUOTE_TICKS + BOOK_DEPTH))
        for price in prices:
            if price > 0 and price not in levels[side]:
                # Out of funds: the side stays thin until a trade refills the makers.
                return self._place(
                    user=self.rng.choice(self.makers), side=side, price=price, quantity=self._size(price)
                )
        return False

    def _quote_price(self, side: str, ticks: int) -> Decimal:
        distance = self.market.tick_size * ticks
        return self._tick(self.fair - distance if side == Side.BUY else self.fair + distance)

    def _quote(self, maker: User) -> None:
        side = self.rng.choice([Side.BUY, Side.SELL])
        resting = Order.objects.open().filter(user=maker, market=self.market, side=side)
        if resting.count() >= LEVELS_PER_SIDE:
            return self._requote(maker, side=side)
        price = self._quote_price(side, SPREAD_TICKS + self.rng.randint(0, QUOTE_TICKS))
        self._place(user=maker, side=side, price=price, quantity=self._size(price))

    def _requote(self, maker: User, side: str | None = None) -> None:
        """Cancel the maker's quote furthest from the fair price (it went stale)."""
        orders = Order.objects.open().filter(user=maker, market=self.market)
        if side:
            orders = orders.filter(side=side)
        stale = max(orders, key=lambda order: abs(order.price - self.fair), default=None)
        if stale is not None:
            self._run(order_cancel, user=maker, order_id=stale.pk)

    def _take(self, taker: User) -> None:
        side = self.rng.choice([Side.BUY, Side.SELL])
        if self.rng.random() < 0.5:
            self._place(user=taker, side=side, type=OrderType.MARKET, quantity=self._size(self.fair))
        else:
            # An IOC limit a little through the fair price: crosses the spread, bounded slippage.
            through = self.market.tick_size * (SPREAD_TICKS + 5)
            price = self.fair + through if side == Side.BUY else self.fair - through
            self._place(
                user=taker,
                side=side,
                price=self._tick(price),
                quantity=self._size(price),
                time_in_force=TimeInForce.IOC,
            )

    def _place(self, *, user, side, quantity, price=None, type=OrderType.LIMIT, time_in_force=None) -> bool:
        return self._run(
            order_place,
            user=user,
            market=self.market,
            side=side,
            type=type,
            price=price,
            quantity=quantity,
            time_in_force=time_in_force,
            source=OrderSource.SYSTEM,  # the venue's own simulated flow, not a trader's door
        )

    def _run(self, service, **kwargs) -> bool:
        try:
            service(**kwargs)
        except ServiceError as exc:
            # Out of funds, halted market, order already gone: a trader would shrug too.
            log.debug("simulate_market %s: %s", self.market.symbol, exc.message)
            return False
        return True


class Command(BaseCommand):
    help = "Keep the demo books moving with simulated market makers and takers."

    def add_arguments(self, parser):
        parser.add_argument("--rate", type=float, default=4.0, help="commands per second, all markets together")
        parser.add_argument("--duration", type=float, default=0, help="seconds to run; 0 runs until stopped")
        parser.add_argument("--markets", default="", help="comma-separated symbols (default: every market)")
        parser.add_argument("--seed", type=int, default=None, help="random seed for a repeatable run")
        parser.add_argument(
            "--metrics-port",
            type=int,
            default=settings.METRICS_PORT,
            help="serve this process's Prometheus metrics on this port (default METRICS_PORT; 0: none)",
        )

    def handle(self, *args, rate, duration, markets, seed, **options):
        if not 0 < rate <= 1000:
            raise CommandError("--rate must be between 0 and 1000 commands per second.")
        rng = random.Random(seed)
        users = {user.username: user for user in User.objects.filter(username__in=MAKERS + TAKERS)}
        if len(users) < len(MAKERS + TAKERS):
            raise CommandError("The simulator's accounts are missing: run `manage.py seed_demo` first.")
        chosen = Market.objects.all()
        if markets:
            chosen = chosen.filter(symbol__in=markets.split(","))
        chosen = list(chosen)
        if not chosen:
            raise CommandError("No markets to simulate: run `manage.py seed_demo` first.")
        if options.get("metrics_port"):  # a process of its own: Prometheus scrapes it there
            metrics.serve(options["metrics_port"])
        # Each market takes rate / markets steps a second: DAILY_VOLATILITY over a day of them.
        volatility = DAILY_VOLATILITY / math.sqrt(rate * 86400 / len(chosen))
        simulations = [
            Simulation(market, [users[name] for name in MAKERS], [users[name] for name in TAKERS], rng, volatility)
            for market in chosen
        ]
        for simulation in simulations:
            simulation.prime()
        self.stdout.write(f"Simulating {', '.join(s.market.symbol for s in simulations)} at {rate:g} commands/s.")
        period = 1.0 / rate
        deadline = time.monotonic() + duration if duration else None
        next_at = time.monotonic()
        steps = 0
        try:
            while deadline is None or time.monotonic() < deadline:
                rng.choice(simulations).step()
                steps += 1
                if steps % 200 == 0:
                    close_old_connections()
                next_at += period
                # Never bursts to catch up: a slow step just lowers the rate.
                next_at = max(next_at, time.monotonic())
                time.sleep(max(0.0, next_at - time.monotonic()))
        except KeyboardInterrupt:
            pass
        self.stdout.write(f"Simulation stopped after {steps} commands.")
