"""The trader's pages: markets overview, a market with its ticket, the portfolio.

Thin doors: reads come from selectors, every change goes through one service
(`order_place`, `order_cancel`, `order_amend`), and the same template renders a page and,
for htmx requests, just the named fragments that changed (`"orders/market.html#ticket"`).
Live updates arrive over the page socket; the responses here carry the same private
fragments out of band so the trader sees the result of their own click at once.
"""

import csv
import uuid

from asgiref.sync import sync_to_async
from django.core.handlers.asgi import ASGIRequest
from django.http import Http404, HttpResponse, StreamingHttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.template.loader import render_to_string
from django.utils import timezone
from django.utils.http import url_has_allowed_host_and_scheme
from django.views.decorators.http import require_GET, require_POST
from django_htmx.http import trigger_client_event

from accounts.decorators import login_required_page
from accounts.selectors import ledger_after, ledger_for_user
from marketdata import streams  # option: the market pages' knobs
from marketdata.models import Market, Side
from marketdata.selectors import (
    INTERVALS,
    auction_indicative,
    book_snapshot,
    candle_tails,
    candles,
    market_named,
    markets_all,
    ticker,
    trades_recent,
)
from quantumtrades.core.errors import ServiceError
from quantumtrades.core.money import money_text
from quantumtrades.core.pagination import keyset_id, keyset_page
from quantumtrades.core.replicas import PRIMARY, public_reads

from .engine.rules import stop_market_buy_price
from .forms import BRACKET, OCO, AmendForm, OrderHistoryFilter, OrderTicketForm
from .live import ALL_KINDS, BALANCES, ORDERS, private_context, private_fragments
from .models import OrderSource, OrderType
from .portfolio import order_history_for_user, portfolio_valuation
from .selectors import order_for_user
from .services import bracket_place, oco_place, order_amend, order_cancel, order_list_cancel, order_place
from .ticket import SIZE_FRACTIONS, oco_hold, parse_price, ticket_band, ticket_estimate, ticket_size

# The first render shows what the live stream pushes later: the same depth, tape, candles.
BOOK_DEPTH = streams.option("PAGE_BOOK_DEPTH")
TAPE_LENGTH = streams.option("TAPE_LENGTH")
CANDLES_SHOWN = streams.option("CHART_CANDLES")
DEFAULT_INTERVAL = streams.option("CHART_INTERVAL")
# The book's price grouping, in ticks (the browser sums the levels: static/js/market.js).
BOOK_GROUPS = (1, 10, 100, 1000)
# Orders the ticket asks to confirm: they take whatever the book offers.
AT_MARKET = (OrderType.MARKET, OrderType.STOP_MARKET)
# How deep the ticket looks into the book to price a market order.
ESTIMATE_DEPTH = 500
LEDGER_PAGE_SIZE = 25
HISTORY_PAGE_SIZE = 25


def notice(text, level="info"):
    return {"text": text, "level": level}


# --- Markets overview ------------------------------------------------------------------


def market_overview_row(market: Market, *, using: str = PRIMARY) -> dict:
    """What one overview row shows (the context of marketdata/fragments.html#market_row)."""
    return {
        "market": market,
        "ticker": ticker(market=market, using=using),
        "candles": candles(
            market=market,
            interval=streams.option("SPARKLINE_INTERVAL"),
            limit=streams.option("SPARKLINE_CANDLES"),
            using=using,
        ),
    }


@require_GET
def home(request):
    # Public data that may lag a little (a hot standby's); the page's socket sends it fresh.
    db = public_reads(request)
    rows = [market_overview_row(market, using=db) for market in markets_all(using=db)]
    return render(request, "orders/home.html", {"rows": rows})


# --- A market --------------------------------------------------------------------------


def _interval(request) -> str:
    interval = request.GET.get("interval", DEFAULT_INTERVAL)
    return interval if interval in INTERVALS else DEFAULT_INTERVAL


def _blank_ticket(market, *, side=None, type=None):
    """A fresh ticket; the client order id makes a double submit place one order, not two."""
    initial = {"client_order_id": uuid.uuid4().hex}
    if side:
        initial["side"] = side
    if type:
        initial["type"] = type
    return OrderTicketForm(market=market, initial=initial)


def _preview_context(request, market, form, valuation=None) -> dict:
    """The ticket's live summary: what is available, what the order would cost, and any refusal."""
    side = form.data.get("side") or form.initial.get("side") or form.fields["side"].initial
    valuation = valuation or portfolio_valuation(request.user)
    spend_asset = market.quote_id if side != "sell" else market.base_id
    context = {
        "market": market,
        "form": form,
        "side": side,
        "spend_asset": spend_asset,
        "size_fractions": SIZE_FRACTIONS,
    }
    context["available"] = valuation.available(spend_asset)
    snapshot = None
    if form.is_bound and not form.is_blank and form.is_valid():
        snapshot = book_snapshot(market=market, depth=ESTIMATE_DEPTH)
        estimate = ticket_estimate(request=form.order_request, snapshot=snapshot)
        context["estimate"] = estimate
        hold = estimate.hold
        if form.kind == OCO:
            terms = form.list_terms
            hold = context["list_hold"] = oco_hold(
                market=market,
                side=terms["side"],
                quantity=terms["quantity"],
                price=terms["price"],
                stop_price=terms["stop_price"],
                stop_limit_price=terms["stop_limit_price"],
            )
        context["short_of_funds"] = hold > context["available"]
    if market.price_band is not None:
        # The band the engine will judge a limit price by: shown before the trader submits.
        if snapshot is None and market.last_price is None:
            snapshot = book_snapshot(market=market, depth=1)
        context["price_band"] = ticket_band(market=market, snapshot=snapshot)
    return context


def _market_context(request, market) -> dict:
    """The public part of a market page: the streams' fragments render from it. It may lag
    a little (a hot standby's, quantumtrades.core.replicas): the page's socket sends every
    fragment fresh as it connects."""
    interval = _interval(request)
    db = public_reads(request)
    return {
        "market": market,
        "snapshot": book_snapshot(market=market, depth=BOOK_DEPTH, using=db),
        "trades": trades_recent(market=market, limit=TAPE_LENGTH, using=db),
        "ticker": ticker(market=market, using=db),
        "candles": candles(market=market, interval=interval, limit=CANDLES_SHOWN, using=db),
        "tails": candle_tails(market=market, using=db),
        "interval": interval,
        "intervals": list(INTERVALS),
        "book_groups": [(factor, market.tick_size * factor) for factor in BOOK_GROUPS],
        # A call auction's banner (marketdata/fragments.html#status).
        "indicative": auction_indicative(market=market, using=db) if market.in_auction else None,
    }


@require_GET
def market_page(request, symbol):
    market = market_named(symbol)
    if market is None:
        raise Http404("No such market.")
    context = _market_context(request, market)
    if request.user.is_authenticated:
        context.update(private_context(request.user))
        context.update(_preview_context(request, market, _blank_ticket(market), context["valuation"]))
    return render(request, "orders/market.html", context)


@require_POST
@login_required_page
def ticket_preview(request, symbol):
    market = get_object_or_404(Market, symbol=symbol)
    data, sized = request.POST, None
    if "size" in request.POST:
        # A quick size (25/50/75/100 %): the quantity that share of the balance pays for.
        data, sized = _sized_ticket(request, market)
    form = OrderTicketForm(data, market=market)
    context = _preview_context(request, market, form)
    context["sized"] = sized
    return render(request, "orders/market.html#ticket_preview_response", context)


def _sized_ticket(request, market):
    """The ticket's fields with the quantity a quick size asked for, and what to say of it."""
    data = request.POST.copy()
    side = data.get("side") if data.get("side") in Side.values else Side.BUY
    fraction = next((f for f in SIZE_FRACTIONS if str(f) == data.get("size")), None)
    if fraction is None:
        return data, {"error": "Choose 25, 50, 75 or 100 %."}
    price = None
    if side == Side.BUY and data.get("type") == OrderType.TRAILING_STOP:
        return data, {"error": "A trailing buy's price moves: type its quantity."}
    if side == Side.BUY and data.get("type") == OrderType.STOP_MARKET:
        # A pending stop-market buy holds as a limit buy a margin above its stop.
        stop_price = parse_price(data.get("stop_price"))
        if stop_price is None:
            return data, {"error": "Enter a stop price first: the size depends on it."}
        price = stop_market_buy_price(market, stop_price)
    elif side == Side.BUY and data.get("type") != OrderType.MARKET:
        price = parse_price(data.get("price"))
        if price is None:
            return data, {"error": "Enter a price first: the size depends on it."}
    spend_asset = market.base_id if side == Side.SELL else market.quote_id
    available = portfolio_valuation(request.user).available(spend_asset)
    snapshot = book_snapshot(market=market, depth=ESTIMATE_DEPTH) if side == Side.BUY and price is None else None
    try:
        quantity = ticket_size(
            market=market, side=side, price=price, fraction=fraction, available=available, snapshot=snapshot
        )
    except ArithmeticError:
        return data, {"error": "Enter a valid price first: the size depends on it."}
    if quantity <= 0:
        data["quantity"] = ""
        nothing = "The book has no asks to buy from." if snapshot is not None and not snapshot.asks else None
        return data, {"error": nothing or f"{fraction:%} of your {spend_asset} does not pay for one lot."}
    data["quantity"] = format(quantity.normalize(), "f")
    return data, {"quantity": data["quantity"]}


@require_POST
@login_required_page
def ticket_submit(request, symbol):
    market = get_object_or_404(Market, symbol=symbol)
    form = OrderTicketForm(request.POST, market=market)
    message = None
    status = 200
    confirming = False
    if form.is_valid() and _at_market(form) and request.POST.get("confirm") != "1":
        # An order at market (now, or once its stop triggers) is placed only once the
        # trader has seen what it would cost.
        confirming = True
    elif form.is_valid():
        try:
            message = _place_from_ticket(request.user, market, form)
        except ServiceError as error:
            form.add_service_error(error)
            status = 422 if error.status == 400 else error.status
        else:
            if not request.htmx:
                return redirect("market", symbol=market.symbol)
            form = _blank_ticket(market, side=form.order_request.side, type=form.kind)
    else:
        status = 422
    context = {"notice": message, "confirming": confirming, **_preview_context(request, market, form)}
    if not request.htmx:
        # A browser without JavaScript posted the form: show the whole page with its errors.
        context.update(_market_context(request, market), **private_context(request.user))
        return render(request, "orders/market.html", context, status=status)
    response = render(request, "orders/market.html#ticket_response", context, status=status)
    if message:
        response.content += private_fragments(request.user, request=request).encode()
    return response


def _at_market(form) -> bool:
    """The ticket's order trades at market, now or once its stop triggers."""
    if form.is_list:
        return False
    request = form.order_request
    if request.type == OrderType.TRAILING_STOP:
        return request.limit_offset is None
    return request.type in AT_MARKET


def _place_from_ticket(user, market, form) -> dict:
    """Place what the ticket describes, through its one service; the notice that says so."""
    if form.kind == OCO:
        return _list_notice(oco_place(user=user, market=market, **form.list_terms, source=OrderSource.WEB))
    if form.kind == BRACKET:
        return _list_notice(bracket_place(user=user, market=market, **form.list_terms, source=OrderSource.WEB))
    return _placed_notice(order_place(user=user, market=market, **form.order_arguments(), source=OrderSource.WEB))


def _list_notice(result):
    order_list = result.order_list
    first = min(result.orders, key=lambda order: order.pk)
    what = f"{first.get_side_display()} {money_text(first.quantity.normalize())} {order_list.market.base_id}"
    if order_list.kind == order_list.Kind.OCO:
        return notice(f"OCO #{order_list.pk} ({what}) placed: a limit and a stop, one cancels the other.", "success")
    status = first.get_status_display().lower()
    return notice(f"Bracket #{order_list.pk} ({what}) placed: its entry is {status}.", "success")


def _placed_notice(result):
    order = result.order
    if not result.created:
        return notice(f"Order #{order.pk} was placed already ({order.get_status_display().lower()}).")
    what = f"{order.get_side_display()} {money_text(order.quantity.normalize())} {order.market.base_id}"
    status = order.get_status_display().lower()
    if order.status == "rejected":
        return notice(f"Order #{order.pk} rejected: a post-only order may not take liquidity.", "error")
    if order.is_pending:
        stop = money_text(order.stop_price.normalize())
        return notice(f"Order #{order.pk} ({what}) is pending until a trade reaches {stop}.", "success")
    if result.fills:
        filled = money_text(order.filled_quantity.normalize())
        return notice(f"Order #{order.pk} ({what}): {filled} filled, now {status}.", "success")
    return notice(f"Order #{order.pk} ({what}) is {status}.", "success")


# --- Open orders: cancel and amend -----------------------------------------------------


def _after_command(request, message, *, status=200, kinds=ALL_KINDS):
    """The trader's fragments after a cancel or amend, plus a notice, all out of band."""
    html = render_to_string("orders/private.html#notice", {"notice": message}, request=request)
    html += private_fragments(request.user, kinds, request=request)
    return HttpResponse(html, status=status)


def _back_to(request, order):
    """Without JavaScript a cancel or amend is a plain POST: back to the page it came from."""
    back = request.POST.get("next") or request.headers.get("Referer")
    if back and url_has_allowed_host_and_scheme(back, {request.get_host()}, request.is_secure()):
        return redirect(back)
    return redirect("market", symbol=order.market.symbol)


@require_POST
@login_required_page
def cancel(request, order_id):
    try:
        order = order_cancel(user=request.user, order_id=order_id)
    except ServiceError as error:
        if not request.htmx:
            return HttpResponse(error.message, status=error.status, content_type="text/plain")
        return _after_command(request, notice(error.message, "error"), status=error.status, kinds={ORDERS})
    if not request.htmx:
        return _back_to(request, order)
    return _after_command(request, notice(f"Order #{order.pk} cancelled."), kinds={ORDERS, BALANCES})


@require_POST
@login_required_page
def list_cancel(request, list_id):
    """Cancel an OCO or a bracket as one: every open order of it."""
    try:
        order_list_cancel(user=request.user, list_id=list_id)
    except ServiceError as error:
        if not request.htmx:
            return HttpResponse(error.message, status=error.status, content_type="text/plain")
        return _after_command(request, notice(error.message, "error"), status=error.status, kinds={ORDERS})
    if not request.htmx:
        back = request.POST.get("next") or request.headers.get("Referer")
        if back and url_has_allowed_host_and_scheme(back, {request.get_host()}, request.is_secure()):
            return redirect(back)
        return redirect("home")
    return _after_command(request, notice(f"List #{list_id} cancelled."), kinds={ORDERS, BALANCES})


@login_required_page
def amend(request, order_id):
    order = order_for_user(request.user, order_id)
    if order is None:
        raise Http404("No such order.")
    if request.method == "POST":
        form = AmendForm(request.POST)
        if form.is_valid():
            try:
                result = order_amend(user=request.user, order_id=order.pk, **form.changes())
            except ServiceError as error:
                form.add_service_error(error)
                status = 422 if error.status == 400 else error.status
            else:
                if not request.htmx:
                    return _back_to(request, order)
                response = _after_command(request, _amended_notice(result))
                return trigger_client_event(response, "qt:amended")
        else:
            status = 422
    else:
        form = AmendForm(initial={"price": order.price, "quantity": order.quantity, "stop_price": order.stop_price})
        status = 200
    context = {"order": order, "form": form}
    if request.htmx:
        return render(request, "orders/private.html#amend_form", context, status=status)
    return render(request, "orders/amend.html", context, status=status)


def _amended_notice(result):
    order = result.order
    if not order.is_open:
        return notice(f"Order #{order.pk} amended and {order.get_status_display().lower()}.", "success")
    return notice(f"Order #{order.pk} amended.", "success")


# --- Portfolio -------------------------------------------------------------------------


@require_GET
@login_required_page
def portfolio(request):
    user = request.user
    get = request.GET
    ledger = keyset_page(
        ledger_for_user(user),
        size=LEDGER_PAGE_SIZE,
        before=keyset_id(get.get("ledger_before")),
        after=keyset_id(get.get("ledger_after")),
    )
    filtering = any(request.GET.get(name) for name in ("market", "status"))
    filters = OrderHistoryFilter(request.GET if filtering else None)
    market = status = None
    if filters.is_valid():
        market, status = filters.cleaned_data["market"], filters.cleaned_data["status"]
    history = keyset_page(
        order_history_for_user(user, market=market, status=status or ""),
        size=HISTORY_PAGE_SIZE,
        before=keyset_id(get.get("before")),
        after=keyset_id(get.get("after")),
    )
    context = {"ledger": ledger, "filters": filters, "history": history}
    # The pagers and the filters swap one table; anything else gets the whole page.
    target = request.htmx.target if request.htmx and not request.htmx.history_restore_request else None
    if target == "ledger":
        return render(request, "orders/portfolio.html#ledger", context)
    if target == "order-history":
        return render(request, "orders/portfolio.html#order_history", context)
    return render(request, "orders/portfolio.html", {**context, **private_context(user)})


LEDGER_COLUMNS = [
    "id",
    "time",
    "asset",
    "kind",
    "available_delta",
    "held_delta",
    "available_after",
    "held_after",
    "reference",
    "reason",
]
CSV_BATCH = 1000


class _Line:
    """csv.writer writes into this and gets back the line it wrote."""

    def write(self, value):
        return value


def _text_cell(value: str) -> str:
    # A cell that starts like a formula would run as one in a spreadsheet: quote it.
    return "'" + value if value[:1] in ("=", "+", "-", "@", "\t", "\r") else value


def _ledger_csv_chunks(user):
    writer = csv.writer(_Line())
    yield writer.writerow(LEDGER_COLUMNS)
    after = 0
    while True:
        # Keyset pages in ledger order: constant memory whatever the ledger's length.
        entries = ledger_after(user, after, CSV_BATCH)
        if not entries:
            return
        yield "".join(
            writer.writerow(
                [
                    entry.pk,
                    entry.created_at.isoformat(),
                    entry.asset_id,
                    entry.kind,
                    money_text(entry.available_delta),
                    money_text(entry.held_delta),
                    money_text(entry.available_after),
                    money_text(entry.held_after),
                    _text_cell(entry.reference),
                    _text_cell(entry.reason),
                ]
            )
            for entry in entries
        )
        after = entries[-1].pk


async def _ledger_csv_chunks_async(user):
    # Under ASGI a response streams from an async iterator; the database work stays sync.
    chunks = _ledger_csv_chunks(user)
    next_chunk = sync_to_async(next, thread_sensitive=True)
    while (chunk := await next_chunk(chunks, None)) is not None:
        yield chunk


@require_GET
@login_required_page
def ledger_csv(request):
    """The trader's whole ledger as CSV, oldest first; amounts as plain decimal strings."""
    user = request.user
    chunks = _ledger_csv_chunks_async(user) if isinstance(request, ASGIRequest) else _ledger_csv_chunks(user)
    filename = f"quantumtrades-ledger-{user.username}-{timezone.now():%Y%m%d}.csv"
    return StreamingHttpResponse(
        chunks,
        content_type="text/csv; charset=utf-8",
        headers={"Content-Disposition": f'attachment; filename="{filename}"'},
    )
