"""The Django admin behind the site's own login.

The admin's login page would sign a user in with a password alone, past the second step
of two-factor login; here it sends them to the site's login (which asks for the code
when they have it set up) and back. With OTP_REQUIRED_FOR_STAFF on, only a session that
passed a code may use the admin.
"""

from django.conf import settings
from django.contrib import admin
from django.contrib.auth.views import redirect_to_login
from django.shortcuts import redirect
from django.urls import reverse


class AdminSite(admin.AdminSite):
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
