"""The application messages: each is a door onto the same services as REST and /ws.

    NewOrderSingle (D)          -> orders.services.order_place(source=fix)
    OrderCancelRequest (F)      -> order_cancel
    OrderCancelReplaceRequest (G) -> order_amend
    OrderMassCancelRequest (q)  -> orders_cancel_all, answered by OrderMassCancelReport (r)
    OrderStatusRequest (H)      -> the order as it stands (ExecutionReport 150=I)

A message's fields become the REST body and are checked by the REST API's own serializers
(`orders.api`), so every rule, refusal and error code is the same; a refusal carries the
code first in Text (58), "INSUFFICIENT_FUNDS: Not enough USD ...". Each handler runs in a
worker thread, counts against the API's throttles as the key's REST requests do, and
returns the messages to send: (exec id or None, MsgType, fields).
"""

import logging
from datetime import UTC, datetime
from decimal import Decimal, InvalidOperation
from types import SimpleNamespace

from django.db import close_old_connections
from rest_framework import exceptions

from accounts.keys import api_key_reread
from marketdata.api import market_by_symbol
from orders.api import OrderAmendInput, OrderPlaceInput, order_amend_arguments, order_place_arguments
from orders.models import MAX_ID, Fill, Order, OrderSource
from orders.payloads import fill_payload, order_payload, result_payload
from orders.selectors import order_for_user
from orders.services import order_amend, order_cancel, order_place, orders_cancel_all
from quantumtrades.core import unavailable
from quantumtrades.core.api import input_error
from quantumtrades.core.errors import ErrorCode, NotFound, ServiceError
from quantumtrades.core.throttles import ApiRateThrottle

from . import reports

log = logging.getLogger(__name__)

# As the REST API's throttle sees an order command: an unsafe method on a trading view.
ORDER_VIEW = SimpleNamespace(order_commands=True)
SIDES = {"1": "buy", "2": "sell"}
ORD_TYPES = {"1": "market", "2": "limit", "3": "stop_market", "4": "stop_limit"}
TIMES_IN_FORCE = {"1": "GTC", "3": "IOC", "4": "FOK", "6": "GTD"}
# The REST field a refusal names, as the FIX field a client sent.
FIELD_TAGS = {
    "client_order_id": "ClOrdID (11)",
    "symbol": "Symbol (55)",
    "side": "Side (54)",
    "type": "OrdType (40)",
    "price": "Price (44)",
    "stop_price": "StopPx (99)",
    "quantity": "OrderQty (38)",
    "display_quantity": "DisplayQty (1138)",
    "time_in_force": "TimeInForce (59)",
    "expire_at": "ExpireTime (126)",
    "post_only": "ExecInst (18)",
    "id": "OrderID (37)",
}


class Refused(Exception):
    """A refusal of the gateway's own: its Text (58) is "CODE: message"."""

    def __init__(self, code, message):
        super().__init__(f"{code}: {message}")
        self.code = code


def _in_fix_words(message: str, field) -> str:
    """A REST sentence about a field, naming the FIX field instead ("price: ..." -> "Price (44): ...")."""
    name = FIELD_TAGS.get(field)
    if name is None:
        return message
    if message.startswith((f"{field}: ", f"{field} ")):
        return name + message[len(field) :]
    return f"{name}: {message}"


def refusal_text(exc) -> str:
    """Text (58) of any refusal: the REST API's code and message, whatever raised it."""
    if isinstance(exc, Refused):
        return str(exc)
    if isinstance(exc, ServiceError):
        return f"{exc.code}: {_in_fix_words(exc.message, exc.field)}"
    if isinstance(exc, exceptions.ValidationError):
        _, error = input_error(exc)
        return f"{error['code']}: {_in_fix_words(error['message'], error.get('field'))}"
    if unavailable.is_unavailable(exc):
        unavailable.recover(exc)
        error = unavailable.error_body()["error"]
        return f"{error['code']}: {error['message']}"
    log.exception("FIX: unexpected error")
    return f"{ErrorCode.INTERNAL_ERROR}: Something went wrong on our side; nothing was changed."


def run(handler, session, message) -> list:
    """One command in a worker thread: the key again, the throttles, the handler.

    Any refusal becomes the handler's own answer (`handler.refused`), never an exception:
    a lost database gives refusals with SERVICE_UNAVAILABLE, and the session stays up.
    """
    close_old_connections()
    try:
        key = api_key_reread(session.api_key)
        if key is None:
            raise Refused(ErrorCode.API_KEY_INVALID, "The API key was refused: it is unknown or revoked.")
        if not key.can_trade:
            raise Refused(ErrorCode.PERMISSION_DENIED, "This API key may only read: this is a drop-copy session.")
        throttle = ApiRateThrottle()
        if not throttle.allow_request(SimpleNamespace(user=key.user, auth=key, method="POST"), ORDER_VIEW):
            wait = max(1, int(throttle.wait() + 0.999))
            raise Refused(ErrorCode.THROTTLED, f"Too many requests: retry in {wait} seconds.")
        return handler(key.user, message)
    except Exception as exc:
        return handler.refused(message, refusal_text(exc))
    finally:
        close_old_connections()


def _decimal_field(message, tag, name, body):
    value = message.get(tag)
    if value is not None:
        body[name] = value


def _expire_time(value) -> str:
    """ExpireTime (126), a UTCTimestamp (YYYYMMDD-HH:MM:SS, milliseconds optional), as the
    ISO 8601 time the REST body carries in expire_at."""
    for layout in ("%Y%m%d-%H:%M:%S.%f", "%Y%m%d-%H:%M:%S"):
        try:
            moment = datetime.strptime(value or "", layout)
        except ValueError:
            continue
        return moment.replace(tzinfo=UTC).isoformat()
    raise Refused(ErrorCode.INVALID, "ExpireTime (126) is a UTC time, YYYYMMDD-HH:MM:SS (milliseconds optional).")


def _order_id(message) -> int | None:
    raw = message.get(37)
    if raw is None:
        return None
    if not raw.isdigit() or int(raw) <= 0:
        raise Refused(ErrorCode.INVALID, "OrderID (37) is the venue's order id, a positive whole number.")
    if int(raw) > MAX_ID:
        raise Refused(ErrorCode.NOT_FOUND, "No such order.")
    return int(raw)


def _target(user, message) -> Order:
    """The order a cancel, replace or status request names: OrderID (37), else OrigClOrdID (41)."""
    order_id = _order_id(message)
    if order_id is not None:
        order = order_for_user(user, order_id)
    else:
        orig = message.get(41) or (message.get(11) if message.msg_type == "H" else None)
        if not orig:
            raise Refused(ErrorCode.INVALID, "Name the order with OrderID (37) or OrigClOrdID (41).")
        order = Order.objects.filter(user=user, client_order_id=orig).select_related("market").first()
    if order is None:
        raise NotFound("No such order.")
    return order


# --- NewOrderSingle (D) ----------------------------------------------------------------


def new_order(user, message) -> list:
    body = {"symbol": message.get(55), "side": SIDES.get(message.get(54), message.get(54))}
    if message.get(11) is None:
        raise Refused(ErrorCode.INVALID, "ClOrdID (11) is required.")
    body["client_order_id"] = message.get(11)
    ord_type = message.get(40)
    if ord_type not in ORD_TYPES:
        raise Refused(ErrorCode.INVALID, "OrdType (40) is 1 (market), 2 (limit), 3 (stop) or 4 (stop limit).")
    body["type"] = ORD_TYPES[ord_type]
    _decimal_field(message, 44, "price", body)
    _decimal_field(message, 99, "stop_price", body)
    _decimal_field(message, 38, "quantity", body)
    _decimal_field(message, 1138, "display_quantity", body)
    tif = message.get(59)
    if tif is not None:
        if tif not in TIMES_IN_FORCE:
            raise Refused(ErrorCode.INVALID, "TimeInForce (59) is 1 (GTC), 3 (IOC), 4 (FOK) or 6 (GTD).")
        body["time_in_force"] = TIMES_IN_FORCE[tif]
    if 126 in message:
        body["expire_at"] = _expire_time(message.get(126))
    exec_inst = message.get(18)
    if exec_inst is not None:
        if exec_inst.split() != ["6"]:
            raise Refused(ErrorCode.INVALID, "ExecInst (18) may only be 6 (post-only).")
        body["post_only"] = True
    serializer = OrderPlaceInput(data={k: v for k, v in body.items() if v is not None})
    serializer.is_valid(raise_exception=True)
    result = order_place(user=user, **order_place_arguments(serializer.validated_data), source=OrderSource.FIX)
    payload = result_payload(result)
    if not result.created:
        return [reports.status_report(payload["order"], text="Duplicate ClOrdID: the original order, as it stands.")]
    return reports.order_reports(payload["order"], payload["fills"], new=True)


new_order.refused = lambda message, text: [reports.refusal_report(message.first, text)]


# --- OrderCancelRequest (F) and OrderCancelReplaceRequest (G) ---------------------------


def _cancel_reject(message, text, response_to):
    order_id = message.get(37) or "NONE"
    reason = "1" if "NOT_FOUND" in text else ("0" if "ORDER_NOT_OPEN" in text else "99")
    fields = [(37, order_id), (11, message.get(11) or "NONE"), (41, message.get(41) or "NONE"), (39, "8")]
    fields += [(434, response_to), (102, reason), (58, text)]
    return [(None, "9", fields)]


def cancel(user, message) -> list:
    order = _target(user, message)
    cancelled = order_payload(order_cancel(user=user, order_id=order.pk))
    return reports.order_reports(cancelled, [], new=False, cl_ord_id=message.get(11), orig_cl_ord_id=message.get(41))


cancel.refused = lambda message, text: _cancel_reject(message, text, "1")


def replace(user, message) -> list:
    order = _target(user, message)
    body = {}
    # A replace restates the order: only what differs from it is amended.
    for tag, name in ((44, "price"), (38, "quantity"), (99, "stop_price")):
        if message.get(tag) is not None and not _same(message.get(tag), getattr(order, name)):
            body[name] = message.get(tag)
    serializer = OrderAmendInput(data=body)
    serializer.is_valid(raise_exception=True)
    result = order_amend(user=user, order_id=order.pk, **order_amend_arguments(serializer.validated_data))
    payload = result_payload(result)
    echo = {"cl_ord_id": message.get(11), "orig_cl_ord_id": message.get(41)}
    return reports.order_reports(payload["order"], payload["fills"], new=False, replaced=True, **echo)


def _same(text, value) -> bool:
    try:
        return value is not None and Decimal(text) == value
    except InvalidOperation:
        return False


replace.refused = lambda message, text: _cancel_reject(message, text, "2")


# --- OrderMassCancelRequest (q) -> OrderMassCancelReport (r) ---------------------------


def mass_cancel(user, message) -> list:
    kind = message.get(530)
    if kind not in ("1", "7"):
        raise Refused(ErrorCode.INVALID, "MassCancelRequestType (530) is 1 (one symbol) or 7 (all orders).")
    market = None
    if kind == "1":
        if not message.get(55):
            raise Refused(ErrorCode.INVALID, "Symbol (55) is required with MassCancelRequestType 1.")
        market = market_by_symbol(message.get(55), field="symbol")
    cancelled = [order_payload(order) for order in orders_cancel_all(user=user, market=market)]
    out = []
    for order in cancelled:
        out += reports.order_reports(order, [], new=False)
    fields = [(11, message.get(11) or "NONE"), (37, "NONE"), (530, kind), (531, kind), (533, len(cancelled))]
    if market is not None:
        fields.append((55, market.symbol))
    return [(None, "r", fields), *out]


def _mass_cancel_refused(message, text):
    fields = [(11, message.get(11) or "NONE"), (37, "NONE"), (530, message.get(530) or "7"), (531, "0")]
    return [(None, "r", [*fields, (532, "99"), (58, text)])]


mass_cancel.refused = _mass_cancel_refused


# --- OrderStatusRequest (H) -----------------------------------------------------------------


def order_status(user, message) -> list:
    order = _target(user, message)
    return [reports.status_report(order_payload(order), request_id=message.get(790))]


def _status_refused(message, text):
    fields = [(37, message.get(37) or "NONE"), (11, message.get(11) or "NONE"), (17, reports.unique_exec_id("S"))]
    fields += [(150, "I"), (39, "8"), (55, message.get(55) or "NONE"), (54, message.get(54) or "1")]
    fields += [(151, "0"), (14, "0"), (6, "0"), (58, text)]
    if message.get(790):
        fields.append((790, message.get(790)))
    return [(None, "8", fields)]


order_status.refused = _status_refused

HANDLERS = {"D": new_order, "F": cancel, "G": replace, "q": mass_cancel, "H": order_status}


# --- What happened elsewhere: reports from the database ------------------------------------


def reports_since(user_id: int, since) -> list:
    """The reports of a user's orders changed since `since` (a reconnect's catch-up, or the
    private stream interrupted): the session sends those it did not send yet."""
    close_old_connections()
    try:
        orders = list(
            Order.objects.filter(user_id=user_id, updated_at__gte=since).select_related("market").order_by("id")[:1000]
        )
        fills = {}
        for fill in (
            Fill.objects.filter(order__in=orders, created_at__gte=since).select_related("market").order_by("id")
        ):
            fills.setdefault(fill.order_id, []).append(fill_payload(fill))
        out = []
        for order in orders:
            payload = order_payload(order)
            new = order.created_at >= since  # its New report, unless it was sent
            out += reports.order_reports(payload, fills.get(order.pk, []), new=new)
        return out
    finally:
        close_old_connections()
