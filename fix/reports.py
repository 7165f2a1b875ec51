"""Execution reports (8) from the engine's payloads, one shape whatever path saw the change.

A session's own command answers with the payloads of its result (`orders.payloads`); an
order of the same user changed anywhere else reaches the gateway as the private stream's
`order` and `fill` messages, which carry the same payloads. Both go through
`order_reports`, and every report of an event has the same ExecID (17) on both paths, so
the session reports it once, whichever came first (`fix.session`):

    N<order id>   new (150=0)            T<fill id>  trade (150=F)
    C<order id>   cancelled (150=4)      E<order id> expired (150=C)
    J<order id>   rejected (150=8)       L<order id> stop triggered (150=L)
    R<order id>.<updated_at> replaced (150=5)
    status reports (150=I) and refusals have ExecIDs of their own, never repeated.
"""

import datetime
import itertools
import time
from decimal import Decimal

from .codec import utc_timestamp

ORD_STATUS = {
    "pending": "0",
    "open": "0",
    "partially_filled": "1",
    "filled": "2",
    "cancelled": "4",
    "expired": "C",
    "rejected": "8",
}
FINAL = ("filled", "cancelled", "expired", "rejected")
SIDE = {"buy": "1", "sell": "2"}
ORD_TYPE = {"market": "1", "limit": "2", "stop_market": "3", "stop_limit": "4"}
# A trailing stop (placed over REST or /ws) is reported as the stop it is now: a stop, or
# with a limit_offset a stop limit, at its current StopPx.
TRAILING_ORD_TYPE = {False: "3", True: "4"}
TIME_IN_FORCE = {"GTC": "1", "IOC": "3", "FOK": "4", "GTD": "6"}
ZERO = Decimal(0)
POST_ONLY_TEXT = "POST_ONLY_WOULD_TAKE: The order would take liquidity, which a post-only order may not."

_unique = itertools.count(1)
_process_mark = f"{int(time.time()) % 100000:05d}"


def unique_exec_id(kind: str) -> str:
    """An ExecID of a report that is never repeated (status, refusal)."""
    return f"{kind}{_process_mark}.{next(_unique)}"


def _text(value: Decimal) -> str:
    return format(value.normalize(), "f") if value else "0"


def _utc_timestamp(stamp: str) -> str:
    """An ISO time of a payload as a FIX UTCTimestamp (YYYYMMDD-HH:MM:SS.sss)."""
    moment = datetime.datetime.fromisoformat(stamp).astimezone(datetime.UTC)
    return moment.strftime("%Y%m%d-%H:%M:%S.") + f"{moment.microsecond // 1000:03d}"


def _micros(stamp: str | None) -> str:
    if not stamp:
        return "0"
    moment = datetime.datetime.fromisoformat(stamp)
    return str(int(moment.timestamp() * 1_000_000))


def report(
    order: dict,
    *,
    exec_id: str,
    exec_type: str,
    status: str | None = None,
    cum: Decimal | None = None,
    avg: Decimal | None = None,
    fill: dict | None = None,
    cl_ord_id: str | None = None,
    orig_cl_ord_id: str | None = None,
    text: str | None = None,
    extra=(),
) -> tuple[str | None, str, list]:
    """(exec id to remember or None, "8", fields) of one execution report."""
    quantity = Decimal(order["quantity"])
    status = status or order["status"]
    cum = Decimal(order["filled_quantity"]) if cum is None else cum
    if avg is None:
        avg = Decimal(order["average_price"]) if order.get("average_price") else ZERO
    leaves = ZERO if status in FINAL else quantity - cum
    fields = [(37, order["id"])]
    cl_ord_id = cl_ord_id if cl_ord_id is not None else order.get("client_order_id")
    if cl_ord_id:
        fields.append((11, cl_ord_id))
    if orig_cl_ord_id:
        fields.append((41, orig_cl_ord_id))
    fields += [(17, exec_id), (150, exec_type), (39, ORD_STATUS[status]), (55, order["symbol"])]
    ord_type = ORD_TYPE.get(order["type"]) or TRAILING_ORD_TYPE[order.get("limit_offset") is not None]
    fields += [(54, SIDE[order["side"]]), (40, ord_type)]
    if order.get("price") is not None:
        fields.append((44, _text(Decimal(order["price"]))))
    if order.get("stop_price") is not None:
        fields.append((99, _text(Decimal(order["stop_price"]))))
    fields.append((38, _text(quantity)))
    if order.get("display_quantity") is not None:
        fields.append((1138, _text(Decimal(order["display_quantity"]))))
    if order.get("time_in_force") in TIME_IN_FORCE:
        fields.append((59, TIME_IN_FORCE[order["time_in_force"]]))
    if order.get("expire_at"):
        fields.append((126, _utc_timestamp(order["expire_at"])))
    if order.get("post_only"):
        fields.append((18, "6"))
    if fill is not None:
        fields += [(31, _text(Decimal(fill["price"]))), (32, _text(Decimal(fill["quantity"])))]
        fields += [(12, _text(Decimal(fill["fee"]))), (13, "3"), (479, fill["fee_asset"])]
        fields.append((851, "1" if fill["role"] == "maker" else "2"))  # LastLiquidityInd
    fields += [(151, _text(max(leaves, ZERO))), (14, _text(cum)), (6, _text(avg))]
    fields.append((60, utc_timestamp()))
    if text:
        fields.append((58, text))
    fields += list(extra)
    remembered = exec_id if exec_type not in ("I",) and not exec_id.startswith(("S", "X")) else None
    return remembered, "8", fields


def order_reports(order: dict, fills: list[dict], *, new: bool | None = None, replaced: bool = False, **echo) -> list:
    """The reports of what one command did to one order: new, its trades, how it ended.

    `fills` are this command's fills of the order; the cumulative quantity and average
    price of each trade report are the order's as they stood after that trade. `new`:
    the command made the order (None: tell by its times); `replaced`: it amended it.
    """
    out = []
    if new is None:  # the private stream: the command that made an order stamped both times alike
        new = order.get("created_at") is not None and order.get("created_at") == order.get("updated_at")
    fills = sorted((f for f in fills if f["order_id"] == order["id"]), key=lambda f: f["id"])
    filled = Decimal(order["filled_quantity"])
    avg = Decimal(order["average_price"]) if order.get("average_price") else ZERO
    notional = filled * avg
    before = filled - sum((Decimal(f["quantity"]) for f in fills), ZERO)
    before_notional = notional - sum((Decimal(f["quantity"]) * Decimal(f["price"]) for f in fills), ZERO)
    if new and order["status"] == "rejected":
        # Accepted and refused by the book in the same command (post-only that would take).
        text = POST_ONLY_TEXT if order.get("post_only") else None
        return [report(order, exec_id=f"J{order['id']}", exec_type="8", cum=ZERO, avg=ZERO, text=text, **echo)]
    if new:
        status = "open"
        if order["type"] in ("stop_limit", "stop_market") and not order.get("triggered_at"):
            status = "pending"
        out.append(report(order, exec_id=f"N{order['id']}", exec_type="0", status=status, cum=ZERO, avg=ZERO, **echo))
    elif replaced:
        out.append(report(order, exec_id=f"R{order['id']}.{_micros(order.get('updated_at'))}", exec_type="5", **echo))
    elif order.get("triggered_at") and order["triggered_at"] == order.get("updated_at"):
        # A stop order whose stop price this command reached.
        out.append(report(order, exec_id=f"L{order['id']}", exec_type="L", cum=before, **echo))
    elif not fills and order["status"] in ("pending", "open", "partially_filled") and order.get("updated_at"):
        # Changed by this command, neither traded nor ended: amended (here or on another door).
        out.append(report(order, exec_id=f"R{order['id']}.{_micros(order['updated_at'])}", exec_type="5", **echo))
    cum, cum_notional = before, before_notional
    for fill in fills:
        quantity, price = Decimal(fill["quantity"]), Decimal(fill["price"])
        cum += quantity
        cum_notional += quantity * price
        status = "filled" if cum >= Decimal(order["quantity"]) else "partially_filled"
        out.append(
            report(
                order,
                exec_id=f"T{fill['id']}",
                exec_type="F",
                status=status,
                cum=cum,
                avg=(cum_notional / cum).quantize(Decimal("0.00000001")) if cum else ZERO,
                fill=fill,
                **echo,
            )
        )
    ending = {"cancelled": ("C", "4"), "expired": ("E", "C"), "rejected": ("J", "8")}.get(order["status"])
    if ending is not None:
        out.append(report(order, exec_id=f"{ending[0]}{order['id']}", exec_type=ending[1], **echo))
    return out


def status_report(order: dict, *, request_id: str | None = None, cl_ord_id: str | None = None, text=None) -> tuple:
    extra = [(790, request_id)] if request_id else []
    return report(order, exec_id=unique_exec_id("S"), exec_type="I", cl_ord_id=cl_ord_id, text=text, extra=extra)


def refusal_report(fields_in: dict, text: str) -> tuple:
    """An ExecutionReport 150=8 for a NewOrderSingle the venue refused (no order was made)."""
    fields = [(37, "NONE")]
    if fields_in.get(11):
        fields.append((11, fields_in[11]))
    fields += [(17, unique_exec_id("X")), (150, "8"), (39, "8"), (103, "99")]
    for tag in (55, 54, 40, 44, 99, 38):
        if fields_in.get(tag):
            fields.append((tag, fields_in[tag]))
    fields += [(151, "0"), (14, "0"), (6, "0"), (60, utc_timestamp()), (58, text)]
    return None, "8", fields
