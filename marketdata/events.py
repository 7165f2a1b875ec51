"""Public market events, published after the command that caused them commits."""

from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal

from quantumtrades.core.money import money_text

Level = tuple[Decimal, Decimal]  # (price, new total quantity); quantity 0 removes the level


@dataclass(frozen=True)
class BookChanged:
    """One command's effect on a market's book. Every command sends one, so `seq` runs
    without gaps from event to event (levels may be empty: a command that rejected
    still took a sequence number)."""

    market_id: int
    symbol: str
    prev_seq: int
    seq: int
    bids: list[Level] = field(default_factory=list)
    asks: list[Level] = field(default_factory=list)

    def as_message(self) -> dict:
        return {
            "type": "book_update",
            "symbol": self.symbol,
            "prev_seq": self.prev_seq,
            "seq": self.seq,
            "bids": [[money_text(price), money_text(quantity)] for price, quantity in self.bids],
            "asks": [[money_text(price), money_text(quantity)] for price, quantity in self.asks],
        }


@dataclass(frozen=True)
class TradeExecuted:
    market_id: int
    symbol: str
    id: int
    price: Decimal
    quantity: Decimal
    taker_side: str
    time: datetime
    seq: int

    def as_message(self) -> dict:
        return {
            "type": "trade",
            "symbol": self.symbol,
            "id": self.id,
            "price": money_text(self.price),
            "quantity": money_text(self.quantity),
            "taker_side": self.taker_side,
            "time": self.time.isoformat(),
        }
