"""Middleware of the account: where a session comes from, and two-factor login for staff."""

from django.conf import settings
from django.http import JsonResponse
from django.shortcuts import redirect
from django.urls import Resolver404, resolve, reverse

from quantumtrades.core.errors import ErrorCode
from quantumtrades.core.page_middleware import for_pages

from . import lockout


@for_pages
class SessionClientMiddleware:
    """Tells the session (accounts.session_store) the client's address and browser, for the
    Sessions page. The address is the one the throttles and the lockout see (NUM_PROXIES)."""

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        session = getattr(request, "session", None)
        if session is not None:
            session.client = (lockout.client_ip(request), request.META.get("HTTP_USER_AGENT", "")[:300])
        return self.get_response(request)


# What a staff member who has yet to set up two-factor login may still reach.
STAFF_SETUP_OPEN = ("two_factor", "two_factor_enrol", "logout", "login", "login_code")


@for_pages
class StaffTwoFactorMiddleware:
    """With OTP_REQUIRED_FOR_STAFF on, a staff session that has not passed a one-time code
    reaches nothing but the two-factor setup (and logging out): pages redirect there, the
    API answers 403. Placed after django_otp's OTPMiddleware, which says who is verified."""

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        if not getattr(settings, "OTP_REQUIRED_FOR_STAFF", False) or request.path_info.startswith(
            ("/static/", "/healthz")
        ):
            return self.get_response(request)
        user = request.user
        if not (user.is_authenticated and user.is_staff) or user.is_verified():
            return self.get_response(request)
        if _url_name(request.path_info) in STAFF_SETUP_OPEN:
            return self.get_response(request)
        if request.path_info.startswith("/api/"):
            return JsonResponse(
                {
                    "error": {
                        "code": ErrorCode.TWO_FACTOR_REQUIRED,
                        "message": "Staff accounts must sign in with a one-time code: set up two-factor login first.",
                        "field": None,
                    }
                },
                status=403,
            )
        return redirect(reverse("two_factor"))


def _url_name(path) -> str | None:
    try:
        return resolve(path).url_name
    except Resolver404:
        return None
