from dataclasses import dataclass
from decimal import Decimal

from .payloads import balance_payload


@dataclass(frozen=True)
class BalanceChanged:
    """A balance's new state, for its owner's private stream."""

    user_id: int
    asset: str
    available: Decimal
    held: Decimal

    def as_message(self) -> dict:
        return {"type": "balance", **balance_payload(asset=self.asset, available=self.available, held=self.held)}
