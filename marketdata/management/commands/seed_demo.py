"""Demo assets, markets with a day of trade history, and users with paper balances.

Running it again changes nothing: a market's history is synthesised only while its tape
is empty (`marketdata.history`, the same code as `manage.py seed_history`).
"""

from decimal import Decimal

from django.core.management.base import BaseCommand
from django.db import transaction

from accounts.models import Asset, User
from accounts.services import balance_deposit, user_register
from marketdata.history import history_seed, last_trade_price
from marketdata.models import Market

ASSETS = {"USD": "US Dollar", "QTX": "QuantumTrades Token", "BTC": "Bitcoin", "ETH": "Ether"}

# symbol: (base, quote, tick, lot, min notional, maker fee, taker fee)
MARKETS = {
    "QTX-USD": ("QTX", "USD", "0.01", "0.01", "1", "0.001", "0.002"),
    "BTC-USD": ("BTC", "USD", "0.01", "0.0001", "10", "0.001", "0.002"),
    "ETH-USD": ("ETH", "USD", "0.01", "0.001", "10", "0.001", "0.002"),
}

DEMO_PASSWORD = "demo-pass-2026"
# Traders for people to log in as; they get the paper-trading grant.
TRADERS = ["alice", "bob", "carol"]
# Accounts the market simulator trades with: deeper pockets, same rules.
SIMULATOR_ACCOUNTS = {
    "maker1": {"USD": "1000000", "QTX": "20000", "BTC": "20", "ETH": "400"},
    "maker2": {"USD": "1000000", "QTX": "20000", "BTC": "20", "ETH": "400"},
    "taker1": {"USD": "500000", "QTX": "10000", "BTC": "10", "ETH": "200"},
}
OPERATOR = "operator"
# Each demo market starts with a day of history ending at this price: a trade every
# ten seconds or so, enough for every chart and sparkline, quick to write on SQLite.
HISTORY_PRICES = {"QTX-USD": Decimal("100"), "BTC-USD": Decimal("60000"), "ETH-USD": Decimal("3000")}
HISTORY_TRADES = 8000
HISTORY_DAYS = 1


class Command(BaseCommand):
    help = "Create the demo markets, each with a day of trade history, and users (idempotent; places no orders)."

    def add_arguments(self, parser):
        parser.add_argument(
            "--history-trades", type=int, default=HISTORY_TRADES, help="trades of history per market (0: none)"
        )

    @transaction.atomic
    def handle(self, *args, history_trades, **options):
        for code, name in ASSETS.items():
            Asset.objects.get_or_create(code=code, defaults={"name": name})
        for symbol, (base, quote, tick, lot, min_notional, maker, taker) in MARKETS.items():
            Market.objects.get_or_create(
                symbol=symbol,
                defaults=dict(
                    base_id=base,
                    quote_id=quote,
                    tick_size=Decimal(tick),
                    lot_size=Decimal(lot),
                    min_notional=Decimal(min_notional),
                    maker_fee=Decimal(maker),
                    taker_fee=Decimal(taker),
                ),
            )
        histories = []
        for market in Market.objects.filter(symbol__in=HISTORY_PRICES).order_by("symbol"):
            if history_trades > 0 and last_trade_price(market) is None:
                history_seed(
                    market=market, trades=history_trades, days=HISTORY_DAYS, price=HISTORY_PRICES[market.symbol]
                )
                histories.append(market.symbol)
        created = []
        for username in TRADERS:
            if not User.objects.filter(username=username).exists():
                user_register(username=username, email=f"{username}@example.com", password=DEMO_PASSWORD)
                created.append(username)
        for username, grant in SIMULATOR_ACCOUNTS.items():
            if not User.objects.filter(username=username).exists():
                user = User.objects.create_user(username=username, password=DEMO_PASSWORD)
                for code, amount in grant.items():
                    balance_deposit(user=user, asset=code, amount=Decimal(amount), reason="simulator float")
                created.append(username)
        if not User.objects.filter(username=OPERATOR).exists():
            User.objects.create_user(username=OPERATOR, password=DEMO_PASSWORD, is_staff=True, is_superuser=True)
            created.append(OPERATOR)
        news = []
        if histories:
            news.append(f"History of {history_trades:,} trades over {HISTORY_DAYS} day(s): {', '.join(histories)}.")
        if created:
            news.append(f"Created users: {', '.join(created)} (password {DEMO_PASSWORD}).")
        self.stdout.write(f"Demo markets: {', '.join(MARKETS)}. " + (" ".join(news) if news else "Nothing new."))
