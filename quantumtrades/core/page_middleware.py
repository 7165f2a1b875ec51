"""The middleware of pages and sessions, which API requests that carry their own credentials
pass over.

A request under /api/ with `Authorization: Bearer <token>` or `Authorization: Api-Key <key>`
is authenticated by that header alone: the API's authentication classes try it before the
web session, and refuse it outright when it is wrong. The session and its user, the
one-time-code state, flash messages and htmx's headers are nothing to it. Yet every such
request went through all of them, for 7 % of the server's CPU per order and of
its latency at one client (docs/BENCHMARKS.md, "Pages' middleware passed over"). Every
other request goes through them as before: pages, the admin, and API calls made with the
web session, which /api/keys takes. Django's CSRF middleware stays whole for every request:
API views are exempt from it anyway (DRF checks CSRF itself for a session's calls), and
`check --deploy` looks for it by name.

`for_pages(cls)` is `cls` with that exception; settings.MIDDLEWARE names the classes below
in place of the packages' own.
"""

from django.contrib.auth.middleware import AuthenticationMiddleware as _Authentication
from django.contrib.messages.middleware import MessageMiddleware as _Messages
from django.contrib.sessions.middleware import SessionMiddleware as _Sessions
from django_htmx.middleware import HtmxMiddleware as _Htmx
from django_otp.middleware import OTPMiddleware as _Otp


def carries_credentials(request) -> bool:
    """An API request authenticated by its Authorization header, as the API's authentication
    classes read it (a bearer token: "Bearer", as simplejwt takes it; an API key: any case)."""
    if not request.path_info.startswith("/api/"):
        return False
    scheme = request.META.get("HTTP_AUTHORIZATION", "").partition(" ")[0]
    return scheme == "Bearer" or scheme.lower() == "api-key"


def for_pages(middleware_class):
    """`middleware_class`, but a request that carries credentials goes straight past it.
    Synchronous, as the server runs the chain (quantumtrades/core/handlers.py)."""

    class PagesOnly(middleware_class):
        sync_capable = True
        async_capable = False

        def __call__(self, request):
            if carries_credentials(request):
                return self.get_response(request)
            return super().__call__(request)

    for name in ("__name__", "__qualname__", "__module__", "__doc__"):
        setattr(PagesOnly, name, getattr(middleware_class, name))
    return PagesOnly


SessionMiddleware = for_pages(_Sessions)
AuthenticationMiddleware = for_pages(_Authentication)
OTPMiddleware = for_pages(_Otp)
MessageMiddleware = for_pages(_Messages)
HtmxMiddleware = for_pages(_Htmx)
