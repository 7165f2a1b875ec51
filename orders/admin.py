from django.contrib import admin, messages

from accounts.admin import ReadOnlyAdmin
from quantumtrades.core.errors import ServiceError

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
        "triggered_at",
    ]
    list_filter = ["status", "market", "side", "type"]
    search_fields = ["user__username", "client_order_id"]
    list_select_related = ["user", "market"]
    inlines = [FillInline]
    actions = ["cancel"]

    @admin.action(description="Cancel selected open orders (pending stops included)")
    def cancel(self, request, queryset):
        cancelled = 0
        for order in queryset.active().select_related("user"):
            try:
                order_cancel(user=order.user, order_id=order.pk)
                cancelled += 1
            except ServiceError as exc:
                self.message_user(request, f"Order {order.pk}: {exc.message}", messages.WARNING)
        self.message_user(request, f"Cancelled {cancelled} order(s).", messages.SUCCESS)


@admin.register(Fill)
class FillAdmin(ReadOnlyAdmin):
    list_display = ["id", "created_at", "user", "market", "side", "role", "price", "quantity", "fee"]
    list_filter = ["market", "role"]
    list_select_related = ["user", "market"]
