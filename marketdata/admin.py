from django.contrib import admin, messages

from accounts.admin import ReadOnlyAdmin

from .models import Candle, Market, Trade
from .services import market_halt, market_resume


@admin.register(Market)
class MarketAdmin(admin.ModelAdmin):
    list_display = ["symbol", "status", "tick_size", "lot_size", "min_notional", "maker_fee", "taker_fee", "book_seq"]
    list_filter = ["status"]
    readonly_fields = ["status", "book_seq", "created_at"]
    actions = ["halt", "resume"]

    @admin.action(description="Halt trading (cancels still work)")
    def halt(self, request, queryset):
        for market in queryset:
            market_halt(market=market)
        self.message_user(request, f"Halted {', '.join(m.symbol for m in queryset)}.", messages.SUCCESS)

    @admin.action(description="Resume trading")
    def resume(self, request, queryset):
        for market in queryset:
            market_resume(market=market)
        self.message_user(request, f"Resumed {', '.join(m.symbol for m in queryset)}.", messages.SUCCESS)

    def get_readonly_fields(self, request, obj=None):
        # Open orders hold funds computed from these rules, so they are fixed once a market exists.
        if obj is None:
            return self.readonly_fields
        return [*self.readonly_fields, "symbol", "base", "quote", "tick_size", "lot_size", "maker_fee", "taker_fee"]


@admin.register(Trade)
class TradeAdmin(ReadOnlyAdmin):
    list_display = ["id", "created_at", "market", "price", "quantity", "taker_side", "seq"]
    list_filter = ["market"]


@admin.register(Candle)
class CandleAdmin(ReadOnlyAdmin):
    """Kept by the engine; `manage.py rebuild_candles` repairs them from the tape."""

    list_display = ["start", "market", "interval", "open", "high", "low", "close", "volume", "trades"]
    list_filter = ["market", "interval"]
