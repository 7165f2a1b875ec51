"""Orders and fills for operators, and the operators' actions that need the engine: the
order cancel, and the kill switch's actions on the User admin (accounts may not import
orders, so they are added to its admin from here)."""

from django import forms
from django.contrib import admin, messages
from django.contrib.admin import helpers
from django.db import transaction
from django.template.response import TemplateResponse

from accounts.admin import ReadOnlyAdmin
from accounts.models import OperatorAction, User
from accounts.services import operator_action_record
from quantumtrades.core.errors import ServiceError

from .controls import REASON_MAX_LENGTH, trading_disable, trading_enable
from .models import Fill, Order
from .services import order_cancel


class FillInline(admin.TabularInline):
    model = Fill
    fields = ["trade", "role", "price", "quantity", "fee", "created_at"]
    readonly_fields = fields
    can_delete = False
    extra = 0

    def has_add_permission(self, request, obj=None):
        return False


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
    ]
    list_filter = ["status", "market", "side", "type", "source"]
    search_fields = ["user__username", "client_order_id"]
    list_select_related = ["user", "market"]
    inlines = [FillInline]
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
