from dataclasses import dataclass
from decimal import Decimal


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
            "available": str(self.available),
            "held": str(self.held),
            "total": str(self.available + self.held),
        }
