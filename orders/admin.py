"""Orders, order lists and fills for operators, and the operators' actions that need the
engine: the order cancel, the list cancel, and the kill switch's actions on the User admin
(accounts may not import orders, so they are added to its admin from here)."""

from django import forms
from django.contrib import admin, messages
from django.contrib.admin import helpers
from django.db import transaction
from django.db.models import Count, Q
from django.template.response import TemplateResponse
from django.urls import reverse
from django.utils.html import format_html

from accounts.admin import ReadOnlyAdmin
from accounts.models import OperatorAction, User
from accounts.services import operator_action_record
from quantumtrades.core.errors import ServiceError

from .controls import REASON_MAX_LENGTH, trading_disable, trading_enable
from .models import ACTIVE_STATUSES, Fill, Order, OrderList, OrderType
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

    @admin.action(description="Cancel selected open orders (pending stops included)")
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

    def get_queryset(self, request):
        return (
            super()
            .get_queryset(request)
            .annotate(open_count=Count("orders", filter=Q(orders__status__in=ACTIVE_STATUSES)))
        )

    @admin.display(description="Open orders", ordering="open_count")
    def orders_open(self, order_list):
        return order_list.open_count

    @admin.action(description="Cancel selected lists (every open order of each)")
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


# --- The kill switch, on the User admin ---------------------------------------------------


class DisableTradingForm(forms.Form):
    reason = forms.CharField(
        max_length=REASON_MAX_LENGTH, help_text="Why: kept in the audit trail and shown to the operators."
    )


@admin.action(description="Disable trading (cancel all orders)")
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


@admin.action(description="Enable trading")
def enable_trading(modeladmin, request, queryset):
    for user in queryset:
        trading_enable(operator=request.user, user=user)
    modeladmin.message_user(request, f"Trading enabled for {queryset.count()} user(s).", messages.SUCCESS)


_user_admin = type(admin.site.get_model_admin(User))
_user_admin.actions = [*(_user_admin.actions or []), disable_trading, enable_trading]
