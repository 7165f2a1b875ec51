"""Short verbs for the engine's stories: `buy(alice, "1", at="100")`, `available(bob, "USD")`."""

from decimal import Decimal

from accounts.models import Balance, User
from accounts.services import balance_deposit
from orders.services import order_place

# What every named trader (alice, bob, carol) deposits before the story starts.
STARTING_USD = Decimal("10000")
STARTING_QTX = Decimal("100")
STARTING_BTC = Decimal("2")


def trader(username, **deposits):
    """A user with `deposits` ({asset: amount}) paid in through the ledger."""
    user = User.objects.create_user(username=username)
    for asset, amount in deposits.items():
        balance_deposit(user=user, asset=asset, amount=Decimal(amount), reason="test funding")
    return user


def buy(user, quantity, at=None, *, market="QTX-USD", **options):
    """A buy order; a limit order `at` a price, a market order without one."""
    kind = "limit" if at is not None else "market"
    return order_place(
        user=user, market=market, side="buy", type=kind, quantity=Decimal(quantity), price=_price(at), **options
    )


def sell(user, quantity, at=None, *, market="QTX-USD", **options):
    kind = "limit" if at is not None else "market"
    return order_place(
        user=user, market=market, side="sell", type=kind, quantity=Decimal(quantity), price=_price(at), **options
    )


def _price(at):
    return Decimal(at) if at is not None else None


def available(user, asset) -> Decimal:
    balance = Balance.objects.filter(user=user, asset_id=asset).first()
    return balance.available if balance else Decimal(0)


def held(user, asset) -> Decimal:
    balance = Balance.objects.filter(user=user, asset_id=asset).first()
    return balance.held if balance else Decimal(0)


def stop_buy(user, quantity, stop, at=None, *, market="QTX-USD", **options):
    """A buy stop: a stop-limit `at` a price, a stop-market without one."""
    kind = "stop_limit" if at is not None else "stop_market"
    return order_place(
        user=user,
        market=market,
        side="buy",
        type=kind,
        quantity=Decimal(quantity),
        price=_price(at),
        stop_price=Decimal(stop),
        **options,
    )


def stop_sell(user, quantity, stop, at=None, *, market="QTX-USD", **options):
    kind = "stop_limit" if at is not None else "stop_market"
    return order_place(
        user=user,
        market=market,
        side="sell",
        type=kind,
        quantity=Decimal(quantity),
        price=_price(at),
        stop_price=Decimal(stop),
        **options,
    )


def print_trade(seller, buyer, price, quantity="1", *, market="QTX-USD"):
    """Put one trade on the tape at `price`: `seller` rests, `buyer` takes."""
    sell(seller, quantity, at=price, market=market)
    return buy(buyer, quantity, at=price, market=market)
