"""Orders, order lists and fills for operators, and the operators' console where it needs
the engine: the order cancel, the list cancel, the trader page and the kill switch's actions
on the User admin (accounts may not import orders, so its User admin is extended here),
reconcile runs, and the dashboard that is the admin's index (orders.console)."""

from dataclasses import dataclass

from django import forms
from django.contrib import admin, messages
from django.contrib.admin import helpers
from django.core.exceptions import PermissionDenied
from django.db import transaction
from django.db.models import Count, Q
from django.http import Http404
from django.shortcuts import redirect
from django.template.response import TemplateResponse
from django.urls import path, reverse
from django.utils.html import format_html

from accounts.admin import ReadOnlyAdmin
from accounts.models import ApiKey, Asset, OperatorAction, User
from accounts.operators import trader_api_key_revoke, trader_balance_adjust, trader_sign_out
from accounts.services import operator_action_record
from quantumtrades.core.errors import ServiceError
from quantumtrades.core.money import MONEY_DECIMAL_PLACES, MONEY_MAX_DIGITS

from . import console
from .controls import REASON_MAX_LENGTH, trader_orders_cancel, trading_disable, trading_enable
from .models import ACTIVE_STATUSES, Fill, Order, OrderList, OrderType, ReconcileRun
from .services import order_cancel, order_list_cancel


class FillInline(admin.TabularInline):
    model = Fill
    fields = ["trade", "role", "price", "quantity", "fee", "created_at"]
    readonly_fields = fields
    can_delete = False
    extra = 0

    def has_add_permission(self, request, obj=None):
        return False


class IcebergFilter(admin.SimpleListFilter):
    title = "iceberg"
    parameter_name = "iceberg"

    def lookups(self, request, model_admin):
        return [("yes", "Icebergs"), ("no", "Not icebergs")]

    def queryset(self, request, queryset):
        if self.value() in ("yes", "no"):
            return queryset.filter(display_quantity__isnull=self.value() == "no")
        return queryset


class ListedFilter(admin.SimpleListFilter):
    title = "order list"
    parameter_name = "listed"

    def lookups(self, request, model_admin):
        return OrderList.Kind.choices + [("none", "In no list")]

    def queryset(self, request, queryset):
        if self.value() == "none":
            return queryset.filter(order_list__isnull=True)
        if self.value() in OrderList.Kind.values:
            return queryset.filter(order_list__kind=self.value())
        return queryset


@admin.register(Order)
class OrderAdmin(ReadOnlyAdmin):
    list_display = [
        "id",
        "created_at",
        "user",
        "market",
        "side",
        "type",
        "price",
        "stop_price",
        "quantity",
        "filled_quantity",
        "status",
        "source",
        "triggered_at",
        "time_in_force",
        "expire_at",
        "shown",
        "order_list_link",
    ]
    list_filter = ["status", "market", "side", "type", "time_in_force", "source", "leg", IcebergFilter, ListedFilter]
    search_fields = ["user__username", "client_order_id"]
    list_select_related = ["user", "market"]
    # The richer orders' fields each have a section, shown only on the orders that use them.
    fieldsets = [
        (None, {"fields": ["user", "market", "client_order_id", "side", "type", "time_in_force", "post_only", "stp"]}),
        ("Amounts", {"fields": ["price", "stop_price", "quantity", "filled_quantity", "remaining_quantity", "held"]}),
        ("Status", {"fields": ["status", "source", "triggered_at", "created_at", "updated_at"]}),
    ]
    richer_fieldsets = [
        ("Good till date", ["expire_at"], lambda order: order.expire_at is not None),
        ("Iceberg", ["display_quantity", "visible_quantity"], lambda order: order.display_quantity is not None),
        (
            "Trailing stop",
            ["trailing_delta", "trailing_percent", "trailing_reference", "limit_offset"],
            lambda order: order.type == OrderType.TRAILING_STOP,
        ),
        ("Order list", ["order_list_link", "leg"], lambda order: order.order_list_id is not None),
    ]
    readonly_fields = ["order_list_link", "visible_quantity", "trailing_reference"]
    inlines = [FillInline]

    @admin.display(description="Shown")
    def shown(self, order):
        """An iceberg's part in the book now; the whole remaining for any other order."""
        return order.visible_quantity if order.display_quantity is not None else "-"

    def get_fieldsets(self, request, obj=None):
        if obj is None:
            return self.fieldsets
        extra = [(title, {"fields": fields}) for title, fields, shown in self.richer_fieldsets if shown(obj)]
        return [*self.fieldsets[:2], *extra, *self.fieldsets[2:]]

    @admin.display(description="Order list", ordering="order_list")
    def order_list_link(self, order):
        if order.order_list_id is None:
            return "-"
        url = reverse("admin:orders_orderlist_change", args=[order.order_list_id])
        return format_html('<a href="{}">{} #{}</a>', url, order.get_leg_display() or "list", order.order_list_id)

    actions = ["cancel"]

    def has_cancel_order_permission(self, request):
        return request.user.has_perm("orders.cancel_order")

    @admin.action(description="Cancel selected open orders (pending stops included)", permissions=["cancel_order"])
    def cancel(self, request, queryset):
        cancelled = 0
        for order in queryset.active().select_related("user", "market"):
            try:
                # The cancel and its audit record commit together.
                with transaction.atomic():
                    order_cancel(user=order.user, order_id=order.pk)
                    operator_action_record(
                        operator=request.user,
                        kind=OperatorAction.Kind.ORDER_CANCELLED,
                        user=order.user,
                        market=order.market.symbol,
                        details={"order": order.pk},
                    )
                cancelled += 1
            except ServiceError as exc:
                self.message_user(request, f"Order {order.pk}: {exc.message}", messages.WARNING)
        self.message_user(request, f"Cancelled {cancelled} order(s).", messages.SUCCESS)


class ListOrderInline(admin.TabularInline):
    model = Order
    fields = ["order_link", "leg", "side", "type", "price", "stop_price", "quantity", "filled_quantity", "status"]
    readonly_fields = fields
    can_delete = False
    extra = 0
    ordering = ["id"]

    def has_add_permission(self, request, obj=None):
        return False

    @admin.display(description="Order")
    def order_link(self, order):
        return format_html('<a href="{}">#{}</a>', reverse("admin:orders_order_change", args=[order.pk]), order.pk)


@admin.register(OrderList)
class OrderListAdmin(ReadOnlyAdmin):
    """OCOs and brackets: what the list is, its bracket's exit terms, and its orders."""

    list_display = ["id", "created_at", "user", "market", "kind", "status", "orders_open"]
    list_filter = ["kind", "status", "market"]
    search_fields = ["user__username"]
    list_select_related = ["user", "market"]
    fields = [
        "user",
        "market",
        "kind",
        "status",
        "take_profit_price",
        "stop_loss_stop_price",
        "stop_loss_price",
        "created_at",
        "updated_at",
    ]
    inlines = [ListOrderInline]
    actions = ["cancel_list"]

    def has_cancel_order_permission(self, request):
        return request.user.has_perm("orders.cancel_order")

    def get_queryset(self, request):
        return (
            super()
            .get_queryset(request)
            .annotate(open_count=Count("orders", filter=Q(orders__status__in=ACTIVE_STATUSES)))
        )

    @admin.display(description="Open orders", ordering="open_count")
    def orders_open(self, order_list):
        return order_list.open_count

    @admin.action(description="Cancel selected lists (every open order of each)", permissions=["cancel_order"])
    def cancel_list(self, request, queryset):
        cancelled = 0
        for order_list in queryset.filter(status=OrderList.Status.ACTIVE).select_related("user", "market"):
            try:
                # The cancel and its audit record commit together.
                with transaction.atomic():
                    order_list_cancel(user=order_list.user, list_id=order_list.pk)
                    operator_action_record(
                        operator=request.user,
                        kind=OperatorAction.Kind.ORDER_CANCELLED,
                        user=order_list.user,
                        market=order_list.market.symbol,
                        details={"list": order_list.pk},
                    )
                cancelled += 1
            except ServiceError as exc:
                self.message_user(request, f"List {order_list.pk}: {exc.message}", messages.WARNING)
        self.message_user(request, f"Cancelled {cancelled} list(s).", messages.SUCCESS)


@admin.register(Fill)
class FillAdmin(ReadOnlyAdmin):
    list_display = ["id", "created_at", "user", "market", "side", "role", "price", "quantity", "fee"]
    list_filter = ["market", "role"]
    list_select_related = ["user", "market"]


# --- The trader page and the kill switch, on the User admin --------------------------------


class DisableTradingForm(forms.Form):
    reason = forms.CharField(
        max_length=REASON_MAX_LENGTH, help_text="Why: kept in the audit trail and shown to the operators."
    )


@admin.action(description="Disable trading (cancel all orders)", permissions=["disable_trading"])
def disable_trading(modeladmin, request, queryset):
    """A confirmation page asks for the reason; then each user's trading is switched off
    and all their orders are cancelled (orders.controls.trading_disable)."""
    form = DisableTradingForm(request.POST if "apply" in request.POST else None)
    if form.is_valid():
        for user in queryset:
            result = trading_disable(operator=request.user, user=user, reason=form.cleaned_data["reason"])
            modeladmin.message_user(
                request,
                f"{user.username}: trading disabled, {len(result.cancelled)} order(s) cancelled.",
                messages.SUCCESS,
            )
        return None
    return TemplateResponse(
        request,
        "admin/orders/disable_trading.html",
        {
            **modeladmin.admin_site.each_context(request),
            "title": "Disable trading",
            "users": queryset,
            "form": form,
            "opts": modeladmin.model._meta,
            "action_checkbox_name": helpers.ACTION_CHECKBOX_NAME,
        },
    )


@admin.action(description="Enable trading", permissions=["disable_trading"])
def enable_trading(modeladmin, request, queryset):
    for user in queryset:
        trading_enable(operator=request.user, user=user)
    modeladmin.message_user(request, f"Trading enabled for {queryset.count()} user(s).", messages.SUCCESS)


class ReasonForm(forms.Form):
    reason = forms.CharField(
        max_length=REASON_MAX_LENGTH,
        widget=forms.Textarea(attrs={"rows": 2}),
        help_text="Why: kept in the audit trail, with your name and the time.",
    )


class EnableForm(ReasonForm):
    reason = forms.CharField(max_length=REASON_MAX_LENGTH, required=False, widget=forms.Textarea(attrs={"rows": 2}))


class RevokeKeyForm(ReasonForm):
    key = forms.ChoiceField(label="API key")

    def __init__(self, *args, user, **kwargs):
        super().__init__(*args, **kwargs)
        self.fields["key"].choices = [
            (key.pk, f"{key.prefix} – {key.name}") for key in ApiKey.objects.filter(user=user, revoked=False)
        ]


class AdjustForm(ReasonForm):
    asset = forms.ModelChoiceField(queryset=Asset.objects.order_by("code"), to_field_name="code")
    amount = forms.DecimalField(
        max_digits=MONEY_MAX_DIGITS,
        decimal_places=MONEY_DECIMAL_PLACES,
        help_text="Positive credits the available balance, negative debits it: an adjustment entry in the ledger.",
    )


@dataclass(frozen=True)
class TraderAction:
    title: str
    permission: str
    form: type[forms.Form]
    explain: str
    danger: bool = True


TRADER_ACTIONS = {
    "disable": TraderAction(
        "Disable trading",
        "accounts.disable_trading",
        ReasonForm,
        "Trading is switched off and every open order and pending stop of this trader, on every market, "
        "is cancelled. Their new orders are refused (TRADING_DISABLED) until trading is enabled again.",
    ),
    "enable": TraderAction(
        "Enable trading", "accounts.disable_trading", EnableForm, "The trader may place orders again.", danger=False
    ),
    "cancel": TraderAction(
        "Cancel all orders",
        "orders.cancel_order",
        ReasonForm,
        "Every open order and pending stop of this trader, on every market, is cancelled and its funds "
        "released. Their trading stays on.",
    ),
    "sign_out": TraderAction(
        "Sign out everywhere",
        "accounts.sign_out_user",
        ReasonForm,
        "Every web session and API login of this trader ends (open pages close their sockets). Their API keys "
        "stay valid: revoke them one by one.",
    ),
    "revoke_key": TraderAction(
        "Revoke an API key",
        "accounts.change_apikey",
        RevokeKeyForm,
        "The key answers 401 from its next request on, and cannot be restored.",
    ),
    "adjust": TraderAction(
        "Adjust a balance",
        "accounts.adjust_balance",
        AdjustForm,
        "An adjustment entry is written to the trader's ledger; the balance moves with it.",
    ),
}


def _trader_act(name: str, operator, user, data) -> str:
    """Do one of TRADER_ACTIONS (a service call, audited there); answers what happened."""
    reason = data["reason"]
    if name == "disable":
        result = trading_disable(operator=operator, user=user, reason=reason)
        return f"Trading disabled; {len(result.cancelled)} order(s) cancelled."
    if name == "enable":
        trading_enable(operator=operator, user=user, reason=reason)
        return "Trading enabled."
    if name == "cancel":
        return f"{len(trader_orders_cancel(operator=operator, user=user, reason=reason))} order(s) cancelled."
    if name == "sign_out":
        return (
            f"Signed out everywhere: {trader_sign_out(operator=operator, user=user, reason=reason)} session(s) ended."
        )
    if name == "revoke_key":
        key = trader_api_key_revoke(operator=operator, user=user, key_id=int(data["key"]), reason=reason)
        return f"API key {key.prefix} revoked."
    entry = trader_balance_adjust(
        operator=operator, user=user, asset=data["asset"].code, amount=data["amount"], reason=reason
    )
    return f"{entry.asset_id} adjusted by {data['amount']}: ledger entry {entry.pk}."


class TraderAdmin(type(admin.site.get_model_admin(User))):
    """accounts' User admin, with the trader page: everything about one trader on one page,
    and the operators' actions on them, each confirmed on a page of its own and audited."""

    actions = [*(admin.site.get_model_admin(User).actions or []), disable_trading, enable_trading]
    list_display = [*admin.site.get_model_admin(User).list_display, "trader_link"]
    change_form_template = "admin/accounts/user/change_form.html"

    def has_disable_trading_permission(self, request):
        return request.user.has_perm("accounts.disable_trading")

    @admin.display(description="Console")
    def trader_link(self, obj):
        return format_html('<a href="{}">Trader page</a>', reverse("admin:accounts_user_trader", args=[obj.pk]))

    def get_urls(self):
        wrap = self.admin_site.admin_view
        return [
            path("<path:object_id>/trader/", wrap(self.trader_view), name="accounts_user_trader"),
            path(
                "<path:object_id>/trader/<slug:action>/",
                wrap(self.trader_action_view),
                name="accounts_user_trader_action",
            ),
            *super().get_urls(),
        ]

    def change_view(self, request, object_id, form_url="", extra_context=None):
        extra_context = {**(extra_context or {}), "trader_url": reverse("admin:accounts_user_trader", args=[object_id])}
        return super().change_view(request, object_id, form_url, extra_context)

    def _trader(self, request, object_id):
        if not self.has_view_permission(request):
            raise PermissionDenied
        user = User.objects.filter(pk=object_id).first() if str(object_id).isdigit() else None
        if user is None:
            raise Http404("No such user.")
        return user

    def trader_view(self, request, object_id):
        user = self._trader(request, object_id)
        allowed = {name: request.user.has_perm(action.permission) for name, action in TRADER_ACTIONS.items()}
        return TemplateResponse(
            request,
            "admin/accounts/user/trader.html",
            {
                **self.admin_site.each_context(request),
                "title": f"Trader {user.username}",
                "opts": self.model._meta,
                "original": user,
                "trader": console.trader(user),
                "allowed": allowed,
                "actions_allowed": any(allowed.values()),
            },
        )

    def trader_action_view(self, request, object_id, action):
        user = self._trader(request, object_id)
        spec = TRADER_ACTIONS.get(action)
        if spec is None:
            raise Http404("No such action.")
        if not request.user.has_perm(spec.permission):
            raise PermissionDenied
        kwargs = {"user": user} if spec.form is RevokeKeyForm else {}
        initial = {"key": request.GET.get("key")} if spec.form is RevokeKeyForm else {}
        form = spec.form(request.POST if request.method == "POST" else None, initial=initial, **kwargs)
        if request.method == "POST" and form.is_valid():
            try:
                with transaction.atomic():
                    done = _trader_act(action, request.user, user, form.cleaned_data)
            except ServiceError as exc:
                form.add_error(exc.field if exc.field in form.fields else None, exc.message)
            else:
                self.message_user(request, f"{user.username}: {done}", messages.SUCCESS)
                return redirect("admin:accounts_user_trader", user.pk)
        return TemplateResponse(
            request,
            "admin/accounts/user/trader_action.html",
            {
                **self.admin_site.each_context(request),
                "title": f"{spec.title}: {user.username}",
                "opts": self.model._meta,
                "original": user,
                "action": spec,
                "form": form,
            },
        )


admin.site.unregister(User)
admin.site.register(User, TraderAdmin)


# --- Reconcile runs, and the dashboard -----------------------------------------------------


@admin.register(ReconcileRun)
class ReconcileRunAdmin(ReadOnlyAdmin):
    """Every run of `reconcile` and what it found; operators run it from the dashboard."""

    list_display = ["started_at", "trigger", "operator", "breaches", "seconds_taken"]
    list_filter = ["trigger"]
    list_select_related = ["operator"]
    fields = ["started_at", "finished_at", "trigger", "operator", "breaches", "report"]
    readonly_fields = fields

    @admin.display(description="Seconds")
    def seconds_taken(self, obj):
        return None if obj.seconds is None else round(obj.seconds, 3)

    def get_urls(self):
        return [
            path("run/", self.admin_site.admin_view(self.run_view), name="orders_reconcilerun_run"),
            *super().get_urls(),
        ]

    def run_view(self, request):
        if request.method != "POST":
            return redirect("admin:index")
        if not request.user.has_perm("orders.run_reconcile"):
            raise PermissionDenied
        run = console.reconcile_run(trigger=ReconcileRun.Trigger.OPERATOR, operator=request.user)
        if run.breaches:
            self.message_user(request, f"Reconcile found {run.breaches} breach(es): see the run.", messages.ERROR)
            return redirect("admin:orders_reconcilerun_change", run.pk)
        self.message_user(request, f"Reconcile: clean, in {run.seconds:.2f} s.", messages.SUCCESS)
        return redirect("admin:index")


def _dashboard(request) -> dict:
    return {
        "dashboard": console.dashboard(),
        "refresh_seconds": DASHBOARD_REFRESH_SECONDS,
        "minutes": console.MINUTES,
        "most_active_fills": console.MOST_ACTIVE_FILLS,
        "can_reconcile": request.user.has_perm("orders.run_reconcile"),
    }


# How often the dashboard asks for its figures again (htmx, from the page).
DASHBOARD_REFRESH_SECONDS = 5
admin.site.dashboard = _dashboard
