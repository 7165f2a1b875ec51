from django.contrib import admin
from django.contrib.auth.admin import UserAdmin as DjangoUserAdmin

from .models import Asset, Balance, LedgerEntry, User
from .services import paper_grant_deposit


class ReadOnlyAdmin(admin.ModelAdmin):
    """Shown to operators, changed only by services: money never moves by editing a number."""

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    def has_delete_permission(self, request, obj=None):
        return False


class BalanceInline(admin.TabularInline):
    model = Balance
    fields = ["asset", "available", "held"]
    readonly_fields = fields
    can_delete = False
    extra = 0

    def has_add_permission(self, request, obj=None):
        return False


@admin.register(User)
class UserAdmin(DjangoUserAdmin):
    inlines = [BalanceInline]

    def save_model(self, request, obj, form, change):
        super().save_model(request, obj, form, change)
        if not change:
            # Traders added by an operator start like those who register themselves.
            paper_grant_deposit(user=obj)


@admin.register(Asset)
class AssetAdmin(admin.ModelAdmin):
    list_display = ["code", "name"]

    def get_readonly_fields(self, request, obj=None):
        return ["code"] if obj else []


@admin.register(Balance)
class BalanceAdmin(ReadOnlyAdmin):
    list_display = ["user", "asset", "available", "held"]
    list_filter = ["asset"]
    search_fields = ["user__username"]
    list_select_related = ["user"]


@admin.register(LedgerEntry)
class LedgerEntryAdmin(ReadOnlyAdmin):
    list_display = ["id", "created_at", "user", "asset", "kind", "available_delta", "held_delta", "reference"]
    list_filter = ["kind", "asset"]
    search_fields = ["user__username", "reference", "reason"]
    list_select_related = ["user"]
