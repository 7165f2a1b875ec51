from django.contrib import admin

from accounts.admin import ReadOnlyAdmin

from .models import Market, Trade


@admin.register(Market)
class MarketAdmin(admin.ModelAdmin):
    list_display = ["symbol", "status", "tick_size", "lot_size", "min_notional", "maker_fee", "taker_fee", "book_seq"]
    list_filter = ["status"]
    readonly_fields = ["status", "book_seq", "created_at"]

    def get_readonly_fields(self, request, obj=None):
        # Open orders hold funds computed from these rules, so they are fixed once a market exists.
        if obj is None:
            return self.readonly_fields
        return [*self.readonly_fields, "symbol", "base", "quote", "tick_size", "lot_size", "maker_fee", "taker_fee"]


@admin.register(Trade)
class TradeAdmin(ReadOnlyAdmin):
    list_display = ["id", "created_at", "market", "price", "quantity", "taker_side", "seq"]
    list_filter = ["market"]
