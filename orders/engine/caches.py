"""What the engine remembers between commands, in this process: the markets by symbol, the
fee account's id, and the first trade of each market's circuit breaker window. Every copy of the database's state that the engine keeps beyond a
command is here, each a registered `ProcessCache` that the test suite forgets between
tests. (The markets' queues, `transactions._queues`, copy nothing: they hold the
commands waiting now.)

None can let through what the database refuses: a market is read again under the book
lock, the fee account never changes once created, and a window's first trade stays its
first until it leaves the window (`auction.breaker_reference_remembered`).
"""

import time

from django.db import connection

from accounts.services import fee_account
from marketdata.models import Market
from quantumtrades.core.errors import InvalidInput
from quantumtrades.core.process_caches import ProcessCache
from quantumtrades.core.sql import select_models

# Markets by symbol as this process last read them: the rules an order is checked against
# before the book lock, without a query per order. Under the lock the engine reads the
# market again and checks the order once more if its rules changed meanwhile (`_place`),
# so a copy a few seconds old never lets through an order the current rules refuse.
MARKET_CACHE_SECONDS = 5.0
_markets = ProcessCache("markets by symbol")
# (connection alias, market id, window seconds) -> (time, price) of the first trade of the
# circuit breaker's window, as a command read it under the book lock.
window_firsts = ProcessCache("circuit breaker windows' first trades")


def resolve_market(market: Market | str) -> Market:
    """The market an order names, by symbol (or as given), from a copy at most
    MARKET_CACHE_SECONDS old."""
    if isinstance(market, Market):
        return market
    if not isinstance(market, str):
        raise InvalidInput("symbol must be a market symbol such as QTX-USD.", field="symbol")
    key = (connection.alias, market)
    entry = _markets.get(key)
    if entry is not None and entry[0] > time.monotonic():
        return entry[1]
    # Through select_models: compiling the ORM query cost more than running it.
    found = select_models(Market, "symbol = %s", [market])
    if not found:
        raise InvalidInput(f"There is no market {market[:24]!r}.", field="symbol")
    if len(_markets) > 1000:
        _markets.clear()
    _markets[key] = (time.monotonic() + MARKET_CACHE_SECONDS, found[0])
    return found[0]


def forget_markets() -> None:
    _markets.clear()


_fee_account_cache = ProcessCache("the fee account's id, per database")


def fee_account_id() -> int:
    # The fee account never changes once created; one query per process, keyed by the
    # database name because tests create and destroy databases.
    name = connection.settings_dict["NAME"]
    if name not in _fee_account_cache:
        _fee_account_cache[name] = fee_account().pk
    return _fee_account_cache[name]
