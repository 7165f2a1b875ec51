from django import forms
from django.contrib import admin, messages
from django.contrib.admin import helpers
from django.contrib.admin.utils import unquote
from django.contrib.auth.admin import UserAdmin as DjangoUserAdmin
from django.contrib.auth.models import Permission
from django.db.models import Q
from django.template.response import TemplateResponse
from django.utils.html import format_html_join
from rest_framework_api_key.admin import APIKeyModelAdmin
from rest_framework_api_key.models import APIKey

from quantumtrades.core.errors import ServiceError
from quantumtrades.core.money import MONEY_DECIMAL_PLACES, MONEY_MAX_DIGITS

from .keys import api_key_revoke_all
from .models import ApiKey, Asset, Balance, LedgerEntry, OperatorAction, User
from .operators import trader_balance_adjust
from .roles import role_of
from .security import credentials_revoke
from .services import operator_action_record, paper_grant_deposit


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
    """Users, and their trading limits. The kill switch is changed only by its actions
    ("Disable trading", "Enable trading", registered by orders' admin: they cancel orders),
    so its flag and reason are shown here, not edited."""

    inlines = [BalanceInline]
    list_display = [*DjangoUserAdmin.list_display, "trading_enabled"]
    list_filter = [*DjangoUserAdmin.list_filter, "trading_enabled"]
    fieldsets = [
        *DjangoUserAdmin.fieldsets,
        ("Trading", {"fields": ["trading_enabled", "trading_disabled_reason", "max_open_orders"]}),
        ("Staff role", {"fields": ["staff_role", "role_allows"]}),
    ]
    readonly_fields = ["trading_enabled", "trading_disabled_reason", "staff_role", "role_allows"]

    @admin.display(description="Role")
    def staff_role(self, obj):
        if not obj.pk or not obj.is_staff:
            return "Not staff: no access to this console."
        return {
            "superuser": "Superuser: every permission.",
            "operator": "Operator: sees everything and acts.",
            "support": "Support: sees everything, changes nothing.",
        }.get(role_of(obj), "Staff: only what their own permissions allow.")

    @admin.display(description="What their groups and permissions allow")
    def role_allows(self, obj):
        if not obj.pk:
            return "–"
        if obj.is_superuser:
            return "Everything."
        names = sorted(
            Permission.objects.filter(Q(group__user=obj) | Q(user=obj))
            .exclude(codename__startswith="view_")
            .values_list("name", flat=True)
            .distinct()
        )
        views = Permission.objects.filter(Q(group__user=obj) | Q(user=obj), codename__startswith="view_").count()
        seen = f"Sees {views} kind(s) of record." if views else "Sees nothing."
        return format_html_join("", "<p>{}</p>", [(seen,), *[(name,) for name in names]]) if names else seen

    def save_model(self, request, obj, form, change):
        if change and "max_open_orders" in form.changed_data:
            # Audited with the change, in the admin's transaction for this form.
            operator_action_record(
                operator=request.user,
                kind=OperatorAction.Kind.USER_LIMITS_CHANGED,
                user=obj,
                details={"max_open_orders": [form.initial.get("max_open_orders"), obj.max_open_orders]},
            )
        super().save_model(request, obj, form, change)
        if not change:
            # Traders added by an operator start like those who register themselves.
            paper_grant_deposit(user=obj)

    def user_change_password(self, request, id, form_url=""):
        """An operator who sets a trader's password takes the account back for them, as a
        reset does: the trader's sessions, API logins and API keys end (the operator's own
        session stays when it is their own password)."""
        before = User.objects.filter(pk=unquote(id)).values_list("password", flat=True).first()
        response = super().user_change_password(request, id, form_url)
        user = User.objects.filter(pk=unquote(id)).first()
        if user is not None and user.password != before:
            keep = request.session.session_key if user.pk == request.user.pk else None
            credentials_revoke(user=user, keep_session_key=keep)
        return response


@admin.register(Asset)
class AssetAdmin(admin.ModelAdmin):
    list_display = ["code", "name"]

    def get_readonly_fields(self, request, obj=None):
        return ["code"] if obj else []


class AdjustmentForm(forms.Form):
    amount = forms.DecimalField(
        max_digits=MONEY_MAX_DIGITS,
        decimal_places=MONEY_DECIMAL_PLACES,
        help_text="Positive credits the available balance, negative debits it.",
    )
    reason = forms.CharField(max_length=255, help_text="Kept in the ledger entry for auditors.")


@admin.register(Balance)
class BalanceAdmin(ReadOnlyAdmin):
    list_display = ["user", "asset", "available", "held"]
    list_filter = ["asset"]
    search_fields = ["user__username"]
    list_select_related = ["user"]
    actions = ["adjust"]

    def has_adjust_balance_permission(self, request):
        return request.user.has_perm("accounts.adjust_balance")

    @admin.action(description="Adjust selected balances (writes a ledger entry)", permissions=["adjust_balance"])
    def adjust(self, request, queryset):
        form = AdjustmentForm(request.POST if "apply" in request.POST else None)
        if form.is_valid():
            done = 0
            for balance in queryset.select_related("user"):
                try:
                    trader_balance_adjust(
                        operator=request.user,
                        user=balance.user,
                        asset=balance.asset_id,
                        amount=form.cleaned_data["amount"],
                        reason=form.cleaned_data["reason"],
                    )
                    done += 1
                except ServiceError as exc:
                    self.message_user(request, f"{balance}: {exc.message}", messages.ERROR)
            if done:
                self.message_user(request, f"Adjusted {done} balance(s).", messages.SUCCESS)
            return None
        return TemplateResponse(
            request,
            "admin/accounts/balance/adjust.html",
            {
                **self.admin_site.each_context(request),
                "title": "Adjust balances",
                "balances": queryset.select_related("user"),
                "form": form,
                "opts": self.model._meta,
                "action_checkbox_name": helpers.ACTION_CHECKBOX_NAME,
            },
        )


@admin.register(LedgerEntry)
class LedgerEntryAdmin(ReadOnlyAdmin):
    list_display = ["id", "created_at", "user", "asset", "kind", "available_delta", "held_delta", "reference"]
    list_filter = ["kind", "asset"]
    search_fields = ["user__username", "reference", "reason"]
    list_select_related = ["user"]


@admin.register(OperatorAction)
class OperatorActionAdmin(ReadOnlyAdmin):
    """The audit trail: who did what, to whom, when and why. Written by the actions
    themselves, never here."""

    list_display = ["created_at", "operator", "kind", "user", "market", "reason"]
    list_filter = ["kind", "operator"]
    search_fields = ["user__username", "operator__username", "market", "reason"]
    list_select_related = ["operator", "user"]


# The library's own key model is unused (accounts.ApiKey has an owner and scopes); its
# admin page would only confuse operators.
if admin.site.is_registered(APIKey):
    admin.site.unregister(APIKey)


@admin.register(ApiKey)
class ApiKeyAdmin(APIKeyModelAdmin):
    """Operators see every key (never a secret: only its hash is stored) and revoke them.
    Keys are made by their owners, over the API or on the account page."""

    list_display = ["prefix", "name", "user", "scopes", "allowed_ips", "created", "last_used_at", "revoked"]
    list_filter = ["revoked", "created"]
    search_fields = ["name", "prefix", "user__username"]
    list_select_related = ["user"]
    fields = ["prefix", "name", "user", "scopes", "allowed_ips", "created", "last_used_at", "revoked", "revoked_at"]
    readonly_fields = fields
    actions = ["revoke"]

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False  # shown read-only: the revoke action is the one change

    def has_delete_permission(self, request, obj=None):
        return False  # revoked, never deleted: the record of who held which key stays

    def get_readonly_fields(self, request, obj=None):
        return self.readonly_fields

    @admin.action(description="Revoke selected API keys", permissions=["revoke"])
    def revoke(self, request, queryset):
        done = api_key_revoke_all(queryset)
        self.message_user(request, f"Revoked {done} API key(s).", messages.SUCCESS)

    def has_revoke_permission(self, request):
        return request.user.has_perm("accounts.change_apikey")
