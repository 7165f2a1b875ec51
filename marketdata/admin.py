from django.contrib import admin, messages

from accounts.admin import ReadOnlyAdmin

from .models import Candle, Market, Trade
from .services import MARKET_RULE_FIELDS, market_halt, market_resume, market_rules_change


@admin.register(Market)
class MarketAdmin(admin.ModelAdmin):
    list_display = [
        "symbol", "status", "auction_ends_at", "tick_size", "lot_size", "min_notional", "maker_fee", "taker_fee",
        "price_band", "circuit_breaker", "book_seq",
    ]  # fmt: skip
    list_filter = ["status"]
    readonly_fields = ["status", "auction_ends_at", "last_price", "book_seq", "created_at"]
    actions = ["halt", "resume"]

    @admin.action(description="Halt trading (cancels still work)")
    def halt(self, request, queryset):
        for market in queryset:
            market_halt(market=market, operator=request.user)
        self.message_user(request, f"Halted {', '.join(m.symbol for m in queryset)}.", messages.SUCCESS)

    @admin.action(description="Resume trading (through a call auction)")
    def resume(self, request, queryset):
        for market in queryset:
            market_resume(market=market, operator=request.user)
        self.message_user(
            request,
            f"Resumed {', '.join(m.symbol for m in queryset)}: each opens with a call auction of its auction_seconds.",
            messages.SUCCESS,
        )

    def save_model(self, request, obj, form, change):
        # A rule edit goes through the service: under the book lock, and audited.
        if not change:
            return super().save_model(request, obj, form, change)
        changes = {name: form.cleaned_data[name] for name in form.changed_data if name in MARKET_RULE_FIELDS}
        if changes:
            market_rules_change(market=obj, changes=changes, operator=request.user)

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
