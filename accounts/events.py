from dataclasses import dataclass
from decimal import Decimal

from quantumtrades.core.money import money_text


@dataclass(frozen=True)
class BalanceChanged:
    """A balance's new state, for its owner's private stream."""

    user_id: int
    asset: str
    available: Decimal
    held: Decimal

    def as_message(self) -> dict:
        return {
            "type": "balance",
            "asset": self.asset,
            "available": money_text(self.available),
            "held": money_text(self.held),
            "total": money_text(self.available + self.held),
        }
