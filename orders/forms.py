"""Forms of the trading pages. They only shape what the browser sent; the rules are the
engine's (`order_validate`, the services' errors), so the ticket refuses exactly what the
REST API refuses, with the same words, next to the field they concern."""

from django import forms

from marketdata.models import Market, Side
from quantumtrades.core.errors import ServiceError

from .engine.rules import OrderRequest, order_validate
from .models import STOP_TYPES, OrderStatus, OrderType, TimeInForce


class ServiceErrorsMixin:
    def add_service_error(self, error: ServiceError) -> None:
        """Show a service's error at its field, or above the form when it names none we show."""
        field = error.field if error.field in self.fields else None
        self.add_error(field, error.message)


class OrderTicketForm(ServiceErrorsMixin, forms.Form):
    # Plain text fields with choice widgets: the engine, not the form, refuses a bad value.
    side = forms.CharField(required=False, widget=forms.RadioSelect(choices=Side.choices), initial=Side.BUY)
    type = forms.CharField(required=False, widget=forms.RadioSelect(choices=OrderType.choices), initial=OrderType.LIMIT)
    price = forms.CharField(required=False, max_length=40)
    # Stop orders only: the trade price that triggers them.
    stop_price = forms.CharField(required=False, max_length=40, label="Stop price")
    quantity = forms.CharField(required=False, max_length=40)
    time_in_force = forms.CharField(
        required=False,
        widget=forms.Select(choices=TimeInForce.choices),
        initial=TimeInForce.GTC,
        label="Time in force",
    )
    post_only = forms.BooleanField(required=False, label="Post only")
    # A fresh id per rendered ticket: a double click or a retried request places one order.
    client_order_id = forms.CharField(required=False, max_length=64, widget=forms.HiddenInput)

    def __init__(self, *args, market: Market, **kwargs):
        super().__init__(*args, **kwargs)
        self.market = market
        # The validated order once the form is valid (what order_validate returned).
        self.order_request: OrderRequest | None = None

    @property
    def is_blank(self) -> bool:
        """The trader has not typed an amount yet: nothing to judge."""
        return not (self.data.get("quantity") or "").strip()

    def clean(self):
        data = self.cleaned_data
        order_type = data.get("type") or OrderType.LIMIT
        quantity = data.get("quantity") or ""
        # A market order has no price on screen, an order that is not a stop no stop price:
        # whatever lingered in those fields is not sent.
        market_like = order_type in (OrderType.MARKET, OrderType.STOP_MARKET)
        price = (data.get("price") or None) if not market_like else None
        stop_price = (data.get("stop_price") or None) if order_type in STOP_TYPES else None
        try:
            self.order_request = order_validate(
                market=self.market,
                side=data.get("side") or "",
                type=order_type,
                quantity=quantity or "0",
                price=price,
                stop_price=stop_price,
                time_in_force=data.get("time_in_force") or None,
                post_only=bool(data.get("post_only")),
                client_order_id=data.get("client_order_id") or None,
            )
        except ServiceError as error:
            if not quantity and error.field == "quantity":
                self.add_error("quantity", "Enter a quantity.")
            else:
                self.add_service_error(error)
        return data

    def order_arguments(self) -> dict:
        request = self.order_request
        return {
            "side": request.side,
            "type": request.type,
            "quantity": request.quantity,
            "price": request.price,
            "stop_price": request.stop_price,
            "time_in_force": request.time_in_force,
            "post_only": request.post_only,
            "client_order_id": request.client_order_id,
        }


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
