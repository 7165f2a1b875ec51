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
    # The id of the last ledger entry written to the balance: grows in the commit order of
    # its changes (accounts.services.ledger_post).
    version: int | None = None

    @property
    def stream_version(self) -> tuple[str, int, bool] | None:
        """`quantumtrades.core.streams.PrivateEvent`: newer states win on the live streams."""
        return None if self.version is None else (f"balance:{self.asset}", self.version, False)

    def as_message(self) -> dict:
        return {"type": "balance", **balance_payload(asset=self.asset, available=self.available, held=self.held)}
