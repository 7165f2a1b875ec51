"""REST API for trading: place, list, amend and cancel my orders, one at a time or in batches
(each order answered in its place, `batch_place`, which /ws shares); my order lists; the
dead man's switch; my fills.

A thin door onto the matching engine (orders.services): the input serializers refuse
what is malformed (types, enums, unknown fields, decimals that are not plain decimals);
the engine's `order_validate`, which `order_place` runs first, judges the trading rules
(tick, lot, minimum notional), so the API and the order ticket refuse an order in the
same words. Orders and fills are rendered by `orders.payloads`, which also feeds `/ws`
order entry and the private stream.

One module per resource; `quantumtrades/api_urls.py` mounts the views, and /ws and FIX
take the input serializers and their `*_arguments` from here (`__all__`):

- `orders`: /api/orders, /api/orders/open, /api/orders/{id}: place, list, amend and
  cancel one order, or cancel all; an order's shape and input.
- `lists`: /api/orders/oco, /api/orders/bracket, /api/orders/lists/{id}: order lists.
- `batches`: /api/orders/batch: 1 to BATCH_MAX orders placed or cancelled, each
  answered in its place.
- `cancel_after`: /api/orders/cancel-after: the dead man's switch.
- `fills`: /api/trades/history: my fills; a fill's shape.
- `base`: what they share: the responses' decimal field, the trading views' base, the
  ?symbol= filter.

`lists`, `batches` and `cancel_after` build on `orders`, `orders` and `lists` on
`fills`, and all on `base`; never the other way.
"""

from .batches import OrderBatchCancelInput, OrderBatchPlaceInput, OrderBatchView, batch_cancel, batch_place
from .cancel_after import CancelAfterInput, CancelAfterView, armed_until_payload
from .fills import FillSerializer, FillsView
from .lists import (
    BracketPlaceInput,
    BracketView,
    OcoPlaceInput,
    OcoView,
    OrderListView,
    bracket_place_arguments,
    oco_place_arguments,
)
from .orders import (
    OpenOrdersView,
    OrderAmendInput,
    OrderPlaceInput,
    OrderSerializer,
    OrdersView,
    OrderView,
    order_amend_arguments,
    order_place_arguments,
)

__all__ = [
    "BracketPlaceInput",
    "BracketView",
    "CancelAfterInput",
    "CancelAfterView",
    "FillSerializer",
    "FillsView",
    "OcoPlaceInput",
    "OcoView",
    "OpenOrdersView",
    "OrderAmendInput",
    "OrderBatchCancelInput",
    "OrderBatchPlaceInput",
    "OrderBatchView",
    "OrderListView",
    "OrderPlaceInput",
    "OrderSerializer",
    "OrderView",
    "OrdersView",
    "armed_until_payload",
    "batch_cancel",
    "batch_place",
    "bracket_place_arguments",
    "oco_place_arguments",
    "order_amend_arguments",
    "order_place_arguments",
]
