"""The Django admin behind the site's own login, made the venue's operators' console.

The admin's login page would sign a user in with a password alone, past the second step
of two-factor login; here it sends them to the site's login (which asks for the code
when they have it set up) and back. With OTP_REQUIRED_FOR_STAFF on, only a session that
passed a code may use the admin.

Its index is the console's dashboard. accounts sits below the apps whose figures it shows,
so the dashboard's context comes from a hook the highest app sets (`dashboard`: orders'
admin sets it to orders.console's figures); the page refreshes its `dashboard` fragment
by itself (htmx asks the index again and gets only the fragment).
"""

from collections.abc import Callable

from django.conf import settings
from django.contrib import admin
from django.contrib.auth.views import redirect_to_login
from django.shortcuts import redirect
from django.template.response import TemplateResponse
from django.urls import reverse

from .roles import role_of


class AdminSite(admin.AdminSite):
    site_url = "/"
    index_title = "Control room"
    # (request) -> the dashboard's context; set by the highest app's admin.
    dashboard: Callable[[object], dict] | None = None

    @property
    def site_header(self):
        return f"{settings.VENUE_NAME} operations"

    @property
    def site_title(self):
        return f"{settings.VENUE_NAME} operations"

    def each_context(self, request):
        context = super().each_context(request)
        if getattr(request, "user", None) is not None and request.user.is_authenticated:
            context["staff_role"] = role_of(request.user)
        return context

    def has_permission(self, request):
        if not super().has_permission(request):
            return False
        return not getattr(settings, "OTP_REQUIRED_FOR_STAFF", False) or request.user.is_verified()

    def login(self, request, extra_context=None):
        target = request.GET.get("next") or reverse("admin:index", current_app=self.name)
        if request.user.is_authenticated:
            # Signed in, but not allowed here (not staff, or no code passed yet).
            return redirect("two_factor" if request.user.is_staff else "home")
        return redirect_to_login(target)

    def index(self, request, extra_context=None):
        context = {**(extra_context or {}), **(self.dashboard(request) if self.dashboard else {})}
        if getattr(request, "htmx", False) and self.dashboard:
            # The page's own refresh: only the figures, none of the page around them.
            return TemplateResponse(request, "admin/index.html#dashboard", {**self.each_context(request), **context})
        return super().index(request, context)
