"""Forms of the trading pages. They only shape what the browser sent; the rules are the
engine's (`order_validate`, the services' errors), so the ticket refuses exactly what the
REST API refuses, with the same words, next to the field they concern."""

from django import forms

from marketdata.models import Market, Side
from quantumtrades.core.errors import InvalidInput, ServiceError

from .engine.rules import OrderRequest, order_validate
from .models import PRICED_TYPES, STOP_TYPES, OrderStatus, OrderType, TimeInForce


class ServiceErrorsMixin:
    def add_service_error(self, error: ServiceError) -> None:
        """Show a service's error at its field, or above the form when it names none we show."""
        field = error.field if error.field in self.fields else None
        self.add_error(field, error.message)


# The ticket's kinds: the engine's order types, and the two order lists the ticket builds.
OCO, BRACKET = "oco", "bracket"
LIST_KINDS = (OCO, BRACKET)
TICKET_TYPES = [*OrderType.choices, (OCO, "OCO"), (BRACKET, "Bracket")]
# The fields each kind of order takes; the ticket shows these alone (static/js/app.js
# hides the others), and whatever lingers in a hidden one is not sent.
KIND_FIELDS = {
    OrderType.LIMIT: {"price", "time_in_force", "expire_at", "display_quantity", "post_only"},
    OrderType.MARKET: {"time_in_force"},
    OrderType.STOP_LIMIT: {"price", "stop_price", "time_in_force", "expire_at"},
    OrderType.STOP_MARKET: {"stop_price", "time_in_force"},
    OrderType.TRAILING_STOP: {"trailing_delta", "trailing_percent", "limit_offset", "time_in_force", "expire_at"},
    OCO: {"price", "stop_price", "stop_limit_price"},
    BRACKET: {"price", "time_in_force", "take_profit_price", "stop_loss_stop_price", "stop_loss_price"},
}
# Fields a kind shows but a service names otherwise in its errors: the REST body's names
# of a list's parts (docs/API.md, "Order lists"), and the leg whose price a check judged.
ERROR_FIELDS = {
    "entry.side": "side",
    "entry.price": "price",
    "entry.quantity": "quantity",
    "entry.time_in_force": "time_in_force",
    "take_profit.price": "take_profit_price",
    "take_profit": "take_profit_price",
    "stop_loss.stop_price": "stop_loss_stop_price",
    "stop_loss.price": "stop_loss_price",
    "stop_loss": "stop_loss_stop_price",
}
# The richer orders' fields, sent to the engine only when the trader filled them in.
OPTIONAL_TERMS = ("expire_at", "display_quantity", "trailing_delta", "trailing_percent", "limit_offset")
OPTIONAL_FIELDS = frozenset(name for fields in KIND_FIELDS.values() for name in fields)


def _price_field(label, **kwargs):
    return forms.CharField(required=False, max_length=40, label=label, **kwargs)


class OrderTicketForm(ServiceErrorsMixin, forms.Form):
    # Plain text fields with choice widgets: the engine, not the form, refuses a bad value.
    side = forms.CharField(required=False, widget=forms.RadioSelect(choices=Side.choices), initial=Side.BUY)
    type = forms.CharField(required=False, widget=forms.RadioSelect(choices=TICKET_TYPES), initial=OrderType.LIMIT)
    price = _price_field("Price")
    # Stop orders and an OCO's stop: the trade price that triggers them.
    stop_price = _price_field("Stop price")
    # An OCO's stop acts as a limit at this price once triggered (else at market).
    stop_limit_price = _price_field("Stop limit price")
    # A trailing stop: how far its stop trails the best trade price, as a price or a percent.
    trailing_delta = _price_field("Trailing distance")
    trailing_percent = forms.CharField(required=False, max_length=40, label="Trailing percent")
    limit_offset = _price_field("Limit offset")
    quantity = forms.CharField(required=False, max_length=40)
    # An iceberg: the most of it the book shows at once.
    display_quantity = forms.CharField(required=False, max_length=40, label="Iceberg display")
    time_in_force = forms.CharField(
        required=False,
        widget=forms.Select(choices=TimeInForce.choices),
        initial=TimeInForce.GTC,
        label="Time in force",
    )
    # A GTD order's expiry, in UTC like every time on the pages (the engine reads a time
    # without an offset as UTC; a browser's datetime-local sends "2026-12-31T17:30").
    expire_at = forms.CharField(required=False, max_length=40, label="Expire at")
    post_only = forms.BooleanField(required=False, label="Post only")
    # A bracket's exits, placed when its entry fills.
    take_profit_price = _price_field("Take-profit price")
    stop_loss_stop_price = _price_field("Stop-loss trigger")
    stop_loss_price = _price_field("Stop-loss limit")
    # A fresh id per rendered ticket: a double click or a retried request places one order.
    client_order_id = forms.CharField(required=False, max_length=64, widget=forms.HiddenInput)

    def __init__(self, *args, market: Market, **kwargs):
        super().__init__(*args, **kwargs)
        self.market = market
        for name, kinds in self.field_kinds.items():
            self.fields[name].kinds = kinds  # the template's data-kinds
        # The validated order once the form is valid (what order_validate returned); for a
        # list, its first order (an OCO's limit, a bracket's entry), which the preview prices.
        self.order_request: OrderRequest | None = None
        # A list's terms once the form is valid: the arguments of oco_place / bracket_place.
        self.list_terms: dict | None = None

    @property
    def kind(self) -> str:
        kind = self.data.get("type") if self.is_bound else self.initial.get("type")
        return kind if kind in KIND_FIELDS else OrderType.LIMIT

    @property
    def is_list(self) -> bool:
        return self.kind in LIST_KINDS

    @property
    def shown(self) -> set[str]:
        """The fields of the chosen kind that the ticket shows (the GTD expiry only with GTD)."""
        shown = set(KIND_FIELDS[self.kind])
        if (self["time_in_force"].value() or "") != TimeInForce.GTD:
            shown.discard("expire_at")
        return shown

    @property
    def field_kinds(self) -> dict[str, str]:
        """For each optional field, the kinds that show it (data-kinds in the template)."""
        return {
            name: " ".join(kind for kind, fields in KIND_FIELDS.items() if name in fields) for name in OPTIONAL_FIELDS
        }

    @property
    def is_blank(self) -> bool:
        """The trader has not typed an amount yet: nothing to judge."""
        return not (self.data.get("quantity") or "").strip()

    def clean(self):
        data = self.cleaned_data
        shown = self.shown
        # Whatever lingered in a field the chosen kind does not take is not sent.
        terms = {name: _typed(data.get(name)) if name in shown else None for name in KIND_FIELDS[self.kind]}
        quantity = data.get("quantity") or ""
        try:
            if self.kind == OCO:
                self._clean_oco(data, terms)
            elif self.kind == BRACKET:
                self._clean_bracket(data, terms)
            else:
                self.order_request = self._validate(data, self.kind, **terms)
        except ServiceError as error:
            if not quantity and error.field == "quantity":
                self.add_error("quantity", "Enter a quantity.")
            else:
                self.add_service_error(error)
        return data

    def _validate(self, data, type, *, side=None, price=None, stop_price=None, time_in_force=None, **terms):
        """order_validate for one order of the ticket: the engine's own checks."""
        optional = {name: terms[name] for name in OPTIONAL_TERMS if terms.get(name) is not None}
        return order_validate(
            market=self.market,
            side=side or data.get("side") or "",
            type=type,
            quantity=data.get("quantity") or "0",
            price=price if type in PRICED_TYPES else None,
            stop_price=stop_price if type in STOP_TYPES and type != OrderType.TRAILING_STOP else None,
            time_in_force=time_in_force,
            post_only=bool(terms.get("post_only")),
            client_order_id=data.get("client_order_id") or None,
            **optional,
        )

    def _clean_oco(self, data, terms):
        """An OCO's two orders, each judged as the engine judges it; the list's own rule
        (the limit and the stop on either side of the last trade) is the service's."""
        self.order_request = self._validate(data, OrderType.LIMIT, price=terms["price"])
        stop_type = OrderType.STOP_LIMIT if terms["stop_limit_price"] else OrderType.STOP_MARKET
        with _renamed({"price": "stop_limit_price"}):
            stop = self._validate(data, stop_type, price=terms["stop_limit_price"], stop_price=terms["stop_price"])
        self.list_terms = {
            "side": self.order_request.side,
            "quantity": self.order_request.quantity,
            "price": self.order_request.price,
            "stop_price": stop.stop_price,
            "stop_limit_price": stop.price,
            "client_order_id": self.order_request.client_order_id,
        }

    def _clean_bracket(self, data, terms):
        """A bracket's entry (a limit order) and its exits, each judged as the order it
        will be: the take-profit a limit and the stop-loss a stop on the other side."""
        entry = self.order_request = self._validate(
            data, OrderType.LIMIT, price=terms["price"], time_in_force=terms["time_in_force"]
        )
        other = Side.SELL if entry.side == Side.BUY else Side.BUY
        if terms["take_profit_price"] is None:
            raise InvalidInput("A bracket needs a take-profit price.", field="take_profit_price")
        with _renamed({"price": "take_profit_price"}):
            take_profit = self._validate(data, OrderType.LIMIT, side=other, price=terms["take_profit_price"])
        with _renamed({"price": "stop_loss_price", "stop_price": "stop_loss_stop_price"}):
            stop_type = OrderType.STOP_LIMIT if terms["stop_loss_price"] else OrderType.STOP_MARKET
            stop_loss = self._validate(
                data, stop_type, side=other, price=terms["stop_loss_price"], stop_price=terms["stop_loss_stop_price"]
            )
        self.list_terms = {
            "side": entry.side,
            "quantity": entry.quantity,
            "price": entry.price,
            "time_in_force": entry.time_in_force,
            "take_profit_price": take_profit.price,
            "stop_loss_stop_price": stop_loss.stop_price,
            "stop_loss_price": stop_loss.price,
            "client_order_id": entry.client_order_id,
        }

    def add_service_error(self, error: ServiceError) -> None:
        field = ERROR_FIELDS.get(error.field, error.field)
        if field in OPTIONAL_FIELDS and field not in self.shown:
            # A field the chosen kind does not show: say it above the form.
            field = None
        self.add_error(field if field in self.fields else None, error.message)

    def order_arguments(self) -> dict:
        request = self.order_request
        arguments = {
            "side": request.side,
            "type": request.type,
            "quantity": request.quantity,
            "price": request.price,
            "stop_price": request.stop_price,
            "time_in_force": request.time_in_force,
            "post_only": request.post_only,
            "client_order_id": request.client_order_id,
        }
        # The richer orders' terms, as validated (orders.engine.rules.OrderRequest).
        for name in OPTIONAL_TERMS:
            if getattr(request, name) is not None:
                arguments[name] = getattr(request, name)
        return arguments


def _typed(value):
    """What the trader typed, or None for an empty field (a checkbox stays a bool)."""
    if isinstance(value, bool):
        return value
    return (value or "").strip() or None


class _renamed:
    """Inside it, a ServiceError's field takes the ticket's name for it: a list's second
    order is judged as an order of its own, whose `price` is the ticket's stop-limit price."""

    def __init__(self, names: dict[str, str]):
        self.names = names

    def __enter__(self):
        return self

    def __exit__(self, kind, error, traceback):
        if isinstance(error, ServiceError) and error.field in self.names:
            error.field = self.names[error.field]
        return False


class AmendForm(ServiceErrorsMixin, forms.Form):
    """A new price and/or total quantity (and a pending stop's stop price); an empty field
    keeps what the order has."""

    price = forms.CharField(required=False, max_length=40)
    quantity = forms.CharField(required=False, max_length=40)
    stop_price = forms.CharField(required=False, max_length=40, label="Stop price")

    def changes(self) -> dict:
        return {name: self.cleaned_data[name].strip() or None for name in ("price", "quantity", "stop_price")}


HISTORY_STATUSES = [
    ("", "Any status"),
    ("open", "Open (incl. partially filled)"),
    *[(value, label) for value, label in OrderStatus.choices if value != OrderStatus.OPEN],
]


class OrderHistoryFilter(forms.Form):
    market = forms.ModelChoiceField(
        queryset=Market.objects.all(), to_field_name="symbol", required=False, empty_label="All markets"
    )
    status = forms.ChoiceField(choices=HISTORY_STATUSES, required=False)
