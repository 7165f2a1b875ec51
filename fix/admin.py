from django.contrib import admin

from accounts.admin import ReadOnlyAdmin

from .models import FixMessage, FixSession


@admin.register(FixSession)
class FixSessionAdmin(ReadOnlyAdmin):
    """Operators see who holds which SenderCompID, with which key, and where its numbers stand."""

    list_display = [
        "sender_comp_id",
        "user",
        "kind",
        "api_key",
        "generation",
        "next_in_seq",
        "logged_on_at",
        "logged_out_at",
    ]
    list_filter = ["kind"]
    search_fields = ["sender_comp_id", "user__username"]
    list_select_related = ["user", "api_key"]


@admin.register(FixMessage)
class FixMessageAdmin(ReadOnlyAdmin):
    """Every message the gateway sent, as it was sent (the audit, and what a resend reads)."""

    list_display = ["session", "generation", "seq", "msg_type", "exec_id", "sending_time"]
    list_filter = ["msg_type"]
    search_fields = ["session__sender_comp_id", "exec_id"]
    list_select_related = ["session"]
