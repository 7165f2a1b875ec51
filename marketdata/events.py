"""Public market events, published after the command that caused them commits."""

from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal

from .payloads import levels_payload, market_status_message, trade_message

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
            "bids": levels_payload(self.bids),
            "asks": levels_payload(self.asks),
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
        return trade_message(
            id=self.id,
            symbol=self.symbol,
            price=self.price,
            quantity=self.quantity,
            taker_side=self.taker_side,
            time=self.time,
        )


@dataclass(frozen=True)
class MarketStatusChanged:
    """A market's status changed: halted, resumed into an auction, a circuit breaker's
    auction, an uncross back to trading. The streams add the indicative price and volume
    from the book they keep (`streams.market`)."""

    market_id: int
    symbol: str
    status: str
    auction_ends_at: datetime | None

    @classmethod
    def of(cls, market) -> "MarketStatusChanged":
        return cls(market.pk, market.symbol, market.status, market.auction_ends_at)

    def as_message(self) -> dict:
        return market_status_message(symbol=self.symbol, status=self.status, auction_ends_at=self.auction_ends_at)
