from django.contrib import admin

from accounts.admin import ReadOnlyAdmin

from .models import Fill, Order


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
        "quantity",
        "filled_quantity",
        "status",
    ]
    list_filter = ["status", "market", "side", "type"]
    search_fields = ["user__username", "client_order_id"]
    list_select_related = ["user", "market"]
    inlines = [FillInline]


@admin.register(Fill)
class FillAdmin(ReadOnlyAdmin):
    list_display = ["id", "created_at", "user", "market", "side", "role", "price", "quantity", "fee"]
    list_filter = ["market", "role"]
    list_select_related = ["user", "market"]
