"""Demo assets, markets and users with paper balances. Running it again changes nothing."""

from decimal import Decimal

from django.core.management.base import BaseCommand
from django.db import transaction

from accounts.models import Asset, User
from accounts.services import balance_deposit, user_register
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


class Command(BaseCommand):
    help = "Create the demo markets and users (idempotent; places no orders)."

    @transaction.atomic
    def handle(self, *args, **options):
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
        self.stdout.write(
            f"Demo markets: {', '.join(MARKETS)}. "
            + (f"Created users: {', '.join(created)} (password {DEMO_PASSWORD})." if created else "Nothing new.")
        )
