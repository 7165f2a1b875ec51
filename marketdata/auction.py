"""The call auction's price (docs/API.md, "Call auctions"): pure, no database.

`uncross_price` is the one computation behind the uncross (`orders.engine.auction`), the
indicative price and volume of `GET /api/markets/{symbol}`, and the `status` channel's:
they all judge the same book by the same rules, from its levels.

The rules, in order, over the candidate prices (every limit price in the book):
1. the price that executes the most volume (at p, buys priced >= p meet sells <= p);
2. then the least surplus (|buy volume - sell volume| at that price);
3. then towards the side with the surplus: when every remaining candidate leaves buyers
   over, the highest; when every one leaves sellers over, the lowest;
4. then the nearest to the reference price (the last trade); then the lower price.
No volume at any price (the book does not cross): no price.
"""

from collections.abc import Iterable
from dataclasses import dataclass
from decimal import Decimal

ZERO = Decimal(0)


@dataclass(frozen=True)
class Uncross:
    price: Decimal
    volume: Decimal  # in the base asset, on each side
    surplus: Decimal  # buy volume - sell volume at `price`: > 0 buyers over, < 0 sellers over


def uncross_price(
    bids: Iterable[tuple[Decimal, Decimal]],
    asks: Iterable[tuple[Decimal, Decimal]],
    reference: Decimal | None = None,
) -> Uncross | None:
    """The single price a call auction uncrosses at, for (price, quantity) levels, or None."""
    bids = sorted(((p, q) for p, q in bids if q > 0), reverse=True)
    asks = sorted((p, q) for p, q in asks if q > 0)
    if not bids or not asks or bids[0][0] < asks[0][0]:
        return None
    # Only prices between the lowest ask and the highest bid can execute anything.
    low, high = asks[0][0], bids[0][0]
    candidates = sorted({p for p, _ in bids if p >= low} | {p for p, _ in asks if p <= high})
    # Demand at p (buys priced >= p) falls as p rises, supply (sells priced <= p) grows:
    # one walk up the candidates with a pointer into each side.
    demand = sum(q for _, q in bids)
    supply = ZERO
    b = a = 0
    ascending_bids = bids[::-1]
    rows = []
    for price in candidates:
        while b < len(ascending_bids) and ascending_bids[b][0] < price:
            demand -= ascending_bids[b][1]
            b += 1
        while a < len(asks) and asks[a][0] <= price:
            supply += asks[a][1]
            a += 1
        rows.append((price, min(demand, supply), demand - supply))
    return _pick(rows, reference)


def _pick(rows: list[tuple[Decimal, Decimal, Decimal]], reference: Decimal | None) -> Uncross | None:
    """Apply the rules to (price, volume, surplus) rows, in ascending price order."""
    most = max((volume for _, volume, _ in rows), default=ZERO)
    if most <= 0:
        return None
    rows = [row for row in rows if row[1] == most]
    least = min(abs(surplus) for _, _, surplus in rows)
    rows = [row for row in rows if abs(row[2]) == least]
    if all(surplus > 0 for _, _, surplus in rows):
        price, volume, surplus = rows[-1]
    elif all(surplus < 0 for _, _, surplus in rows) or reference is None:
        price, volume, surplus = rows[0]
    else:
        price, volume, surplus = min(rows, key=lambda row: (abs(row[0] - reference), row[0]))
    return Uncross(price=price, volume=volume, surplus=surplus)
