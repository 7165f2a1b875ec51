"""The matching engine's commands: place, cancel and amend orders, cancel them all; place
and cancel order lists; place and cancel orders in batches.

Each command works on one market's book in one database transaction, as the engine's map
says (`orders/engine/__init__.py`: the steps of a command, the lock order, which module
does what). This package holds the doors and what each command does under the book lock;
the rules, the transactions, the working state, matching and stops are the engine's.
Callers import the commands from here, and the few rules they need too (`__all__`).

The modules, one group of commands each:

- `orders`: one order at a time: place, cancel, amend; cancel all of a user's orders; the
  stops a command left for later. Its log is the package's (`orders.services`).
- `lists`: order lists: place an OCO or a bracket, cancel a list.
- `batches`: 1 to BATCH_MAX orders placed or cancelled under one take of the book lock,
  each answered in its place.

`lists` and `batches` import from `orders`, never the other way; all three use the engine.
"""

from ..engine.caches import forget_markets
from ..engine.rules import OrderRequest, fee_for, hold_for, order_validate
from .batches import BATCH_MAX, orders_cancel_batch, orders_place_batch
from .lists import OrderListResult, bracket_place, oco_place, order_list_cancel
from .orders import OrderResult, order_amend, order_cancel, order_place, orders_cancel_all

__all__ = [
    "BATCH_MAX",
    "OrderListResult",
    "OrderRequest",
    "OrderResult",
    "fee_for",
    "forget_markets",
    "hold_for",
    "bracket_place",
    "oco_place",
    "order_amend",
    "order_cancel",
    "order_list_cancel",
    "order_place",
    "order_validate",
    "orders_cancel_all",
    "orders_cancel_batch",
    "orders_place_batch",
]
