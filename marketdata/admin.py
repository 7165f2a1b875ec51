"""Markets for operators: every rule with its help text, the effect of a change shown
before it is saved, halt and resume (through a call auction) behind a confirmation and the
`marketdata.halt_market` permission, and the book and the tape as they stand."""

from django import forms
from django.contrib import admin, messages
from django.core.exceptions import PermissionDenied
from django.http import Http404
from django.shortcuts import redirect
from django.template.response import TemplateResponse
from django.urls import path

from accounts.admin import ReadOnlyAdmin
from quantumtrades.core.errors import ServiceError

from .models import Candle, Market, Trade
from .selectors import auction_indicative, book_snapshot, market_rules_effects, trades_recent
from .services import MARKET_RULE_FIELDS, market_halt, market_resume, market_rules_change

BOOK_DEPTH = 10
TAPE_ROWS = 20


class StatusForm(forms.Form):
    reason = forms.CharField(
        max_length=255,
        widget=forms.Textarea(attrs={"rows": 2}),
        help_text="Why: kept in the audit trail, with your name and the time.",
    )


@admin.register(Market)
class MarketAdmin(admin.ModelAdmin):
    list_display = [
        "symbol", "status", "auction_ends_at", "tick_size", "lot_size", "min_notional", "maker_fee", "taker_fee",
        "price_band", "circuit_breaker", "book_seq",
    ]  # fmt: skip
    list_filter = ["status"]
    readonly_fields = ["status", "auction_ends_at", "last_price", "book_seq", "created_at"]
    actions = ["halt", "resume"]
    change_form_template = "admin/marketdata/market/change_form.html"

    def has_halt_market_permission(self, request):
        return request.user.has_perm("marketdata.halt_market")

    @admin.action(description="Halt trading (cancels still work)", permissions=["halt_market"])
    def halt(self, request, queryset):
        for market in queryset:
            market_halt(market=market, operator=request.user)
        self.message_user(request, f"Halted {', '.join(m.symbol for m in queryset)}.", messages.SUCCESS)

    @admin.action(description="Resume trading (through a call auction)", permissions=["halt_market"])
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

    def get_urls(self):
        wrap = self.admin_site.admin_view
        return [
            path("<path:object_id>/status/<slug:change>/", wrap(self.status_view), name="marketdata_market_status"),
            *super().get_urls(),
        ]

    def change_view(self, request, object_id, form_url="", extra_context=None):
        market = self.get_object(request, object_id)
        if market is not None and request.method == "POST" and "_confirmed" not in request.POST:
            preview = self._preview(request, market)
            if preview is not None:
                return preview
        extra_context = extra_context or {}
        if market is not None:
            extra_context.update(self._live(request, market))
        return super().change_view(request, object_id, form_url, extra_context)

    def _preview(self, request, market):
        """The rules an operator is about to change, and what each change does, before it is
        saved: the same form posted again with `_confirmed` saves it."""
        if not self.has_change_permission(request, market):
            return None
        form = self.get_form(request, market, change=True)(request.POST, instance=Market.objects.get(pk=market.pk))
        if not form.is_valid():
            return None  # the change form shows the errors
        changes = {name: form.cleaned_data[name] for name in form.changed_data if name in MARKET_RULE_FIELDS}
        if not changes:
            return None
        return TemplateResponse(
            request,
            "admin/marketdata/market/preview.html",
            {
                **self.admin_site.each_context(request),
                "title": f"Change {market.symbol}'s rules?",
                "opts": self.model._meta,
                "original": market,
                "effects": market_rules_effects(market=market, changes=changes),
                "posted": [(name, value) for name, values in request.POST.lists() for value in values],
            },
        )

    def _live(self, request, market) -> dict:
        book = book_snapshot(market=market, depth=BOOK_DEPTH)
        return {
            "book": book,
            "tape": trades_recent(market=market, limit=TAPE_ROWS),
            "indicative": auction_indicative(market=market) if market.status == Market.Status.AUCTION else None,
            "can_halt": request.user.has_perm("marketdata.halt_market"),
        }

    def status_view(self, request, object_id, change):
        if change not in ("halt", "resume"):
            raise Http404("No such change.")
        if not request.user.has_perm("marketdata.halt_market"):
            raise PermissionDenied
        market = self.get_object(request, object_id)
        if market is None:
            raise Http404("No such market.")
        form = StatusForm(request.POST if request.method == "POST" else None)
        if request.method == "POST" and form.is_valid():
            try:
                if change == "halt":
                    market = market_halt(market=market, operator=request.user, reason=form.cleaned_data["reason"])
                    done = f"{market.symbol} halted: orders are refused, cancels still work."
                else:
                    market = market_resume(market=market, operator=request.user, reason=form.cleaned_data["reason"])
                    done = f"{market.symbol} resumes through a call auction ending at {market.auction_ends_at:%H:%M:%S} UTC."
            except ServiceError as exc:
                form.add_error(None, exc.message)
            else:
                self.message_user(request, done, messages.SUCCESS)
                return redirect("admin:marketdata_market_change", market.pk)
        explain = (
            "New orders are refused (MARKET_HALTED) until the market resumes; cancels still work and resting "
            "orders stay in the book."
            if change == "halt"
            else f"The market opens with a call auction of {market.auction_seconds} s: orders rest without "
            "matching, then one uncross at a single price, then continuous trading."
        )
        return TemplateResponse(
            request,
            "admin/marketdata/market/status.html",
            {
                **self.admin_site.each_context(request),
                "title": f"{'Halt' if change == 'halt' else 'Resume'} {market.symbol}",
                "opts": self.model._meta,
                "original": market,
                "change": change,
                "explain": explain,
                "form": form,
            },
        )


@admin.register(Trade)
class TradeAdmin(ReadOnlyAdmin):
    list_display = ["id", "created_at", "market", "price", "quantity", "taker_side", "seq"]
    list_filter = ["market"]


@admin.register(Candle)
class CandleAdmin(ReadOnlyAdmin):
    """Kept by the engine; `manage.py rebuild_candles` repairs them from the tape."""

    list_display = ["start", "market", "interval", "open", "high", "low", "close", "volume", "trades"]
    list_filter = ["market", "interval"]
