"""Signing up, in and out of the trader's pages, and the account's own pages.

- Registration goes through the `user_register` service, which deposits the paper grant.
- Logging in is Django's LoginView (its authentication backends decide, lockout
  included; during a lockout the form says so, and when to try again). For a user with two-factor login the password only opens the second step:
  the session remembers who passed it for LOGIN_CODE_SECONDS, and `login_code` signs
  them in once a code from their authenticator app checks out.
- Account pages: password change (and Django's reset by email, throttled, its links to
  SITE_URL), two-factor login, sessions. Each calls the services of accounts.security.
"""

import hashlib
import time
from urllib.parse import urlsplit

import django_otp
import segno
from django.conf import settings
from django.contrib import messages
from django.contrib.auth import authenticate, login
from django.contrib.auth import views as auth_views
from django.http import HttpResponse, HttpResponseRedirect
from django.shortcuts import redirect, render
from django.urls import reverse_lazy
from django.utils.http import url_has_allowed_host_and_scheme
from django.views.decorators.http import require_POST

from quantumtrades.core.errors import NotFound, ServiceError

from . import keys, lockout, security
from .decorators import login_required_page
from .forms import ApiKeyForm, CodeForm, LoginForm, RegisterForm
from .selectors import active_user
from .services import user_register

# How long the second step of a two-factor login waits for its code.
LOGIN_CODE_SECONDS = 300
PENDING_LOGIN = "accounts.pending_login"


def _next_url(request, default="home"):
    target = request.POST.get("next") or request.GET.get("next")
    if target and url_has_allowed_host_and_scheme(target, {request.get_host()}, request.is_secure()):
        return target
    return default


def register(request):
    if request.user.is_authenticated:
        return redirect(_next_url(request))
    form = RegisterForm(request.POST or None)
    if request.method == "POST" and form.is_valid():
        password = form.cleaned_data["password1"]
        user = user_register(
            username=form.cleaned_data["username"], email=form.cleaned_data.get("email", ""), password=password
        )
        # Through the authentication backends, so the session names the backend that vouched.
        user = authenticate(request, username=user.get_username(), password=password)
        if user is None:
            return redirect("login")
        login(request, user)
        return redirect(_next_url(request))
    status = 422 if form.is_bound else 200
    return render(request, "registration/register.html", {"form": form, "next": _next_url(request, "")}, status=status)


@require_POST
@login_required_page
def keep_alive(request):
    """The "Stay signed in" button: any request renews the session (SESSION_SAVE_EVERY_REQUEST)."""
    return HttpResponse(status=204)


# --- Logging in, with a second step for two-factor login -------------------------------


class LoginView(auth_views.LoginView):
    form_class = LoginForm  # says when the login is locked out, and until when
    redirect_authenticated_user = True

    def form_valid(self, form):
        user = form.get_user()
        if security.two_factor_device(user) is None:
            return super().form_valid(form)
        # The password was right; the code decides. Nothing is signed in yet.
        self.request.session[PENDING_LOGIN] = {
            "user": user.pk,
            "backend": user.backend,
            "until": time.time() + LOGIN_CODE_SECONDS,
            "next": self.get_success_url(),
        }
        return redirect("login_code")


def login_code(request):
    pending = request.session.get(PENDING_LOGIN)
    user = active_user(pending["user"]) if pending else None
    if user is None or pending["until"] < time.time():
        if request.session.pop(PENDING_LOGIN, None):
            messages.info(request, "Log in again: the code step timed out.")
        return redirect("login")
    form = CodeForm(request.POST or None)
    if request.method == "POST" and form.is_valid() and not _refused_too_soon(form, user):
        device = security.two_factor_verify(user=user, code=form.cleaned_data["code"])
        if device is not None:
            del request.session[PENDING_LOGIN]
            user.otp_device = device  # django-otp marks the new session verified on login
            login(request, user, backend=pending["backend"])
            return redirect(pending["next"])
        form.add_error("code", _code_refused(security.two_factor_device(user)))
    status = 422 if form.is_bound else 200
    return render(request, "registration/login_code.html", {"form": form}, status=status)


def _code_refused(device) -> str:
    # django-otp makes each failure wait longer for the next try: 1 s, 2 s, 4 s, ...
    wait = security.two_factor_wait_seconds(device) if device else 0
    later = f" Try again in {wait} second{'s' if wait != 1 else ''}." if wait else ""
    return f"That code was wrong or already used.{later}"


def _refused_too_soon(form, user) -> bool:
    """A code that comes before the wait after a wrong one is refused unread."""
    device = security.two_factor_device(user) or security.two_factor_enrolment_pending_device(user)
    wait = security.two_factor_wait_seconds(device) if device else 0
    if wait:
        form.add_error("code", f"Too many wrong codes: try again in {wait} second{'s' if wait != 1 else ''}.")
    return bool(wait)


# --- Password ----------------------------------------------------------------------------


class PasswordChangeView(auth_views.PasswordChangeView):
    template_name = "accounts/password_change.html"
    success_url = reverse_lazy("password_change")
    extra_context = {"section": "password"}

    def get_context_data(self, **kwargs):
        # The page says which keys a change revokes before the trader submits it.
        return {**super().get_context_data(**kwargs), "api_keys": keys.api_keys_for_user(self.request.user).count()}

    def form_valid(self, form):
        response = super().form_valid(form)  # keeps this session signed in
        signed_out = security.credentials_revoke(user=form.user, keep_session_key=self.request.session.session_key)
        messages.success(self.request, f"Password changed{_signed_out_text(signed_out)}.")
        return response


def _signed_out_text(signed_out) -> str:
    """ " and 1 other session signed out", ", 2 other sessions signed out and 1 API key revoked", ..."""
    parts = []
    if signed_out.sessions:
        parts.append(f"{signed_out.sessions} other session{'s' if signed_out.sessions != 1 else ''} signed out")
    if signed_out.api_keys:
        parts.append(f"{signed_out.api_keys} API key{'s' if signed_out.api_keys != 1 else ''} revoked")
    if not parts:
        return ""
    return (", " + ", ".join(parts[:-1]) + " and " if len(parts) > 1 else " and ") + parts[-1]


class PasswordResetView(auth_views.PasswordResetView):
    """Django's reset form, throttled per address and per client, its link built from
    SITE_URL: never from the request's Host header, which whoever asks for the email
    writes (a link to their own server would hand them the token)."""

    def form_valid(self, form):
        wait = security.password_reset_wait(request=self.request, email=form.cleaned_data["email"])
        if wait:
            form.add_error(None, f"Too many reset emails were asked for: try again {lockout.wait_text(wait)}.")
            return self.render_to_response(self.get_context_data(form=form), status=429)
        site = urlsplit(settings.SITE_URL)
        form.save(
            domain_override=site.netloc,
            use_https=site.scheme == "https",
            token_generator=self.token_generator,
            from_email=self.from_email,
            email_template_name=self.email_template_name,
            subject_template_name=self.subject_template_name,
            request=self.request,
            html_email_template_name=self.html_email_template_name,
            extra_email_context=self.extra_email_context,
        )
        return HttpResponseRedirect(self.get_success_url())


class PasswordResetConfirmView(auth_views.PasswordResetConfirmView):
    success_url = reverse_lazy("password_reset_complete")

    def form_valid(self, form):
        response = super().form_valid(form)
        # Whoever knew the old password is out everywhere: web, API logins and API keys.
        security.credentials_revoke(user=form.user)
        return response


# --- Two-factor login --------------------------------------------------------------------


@login_required_page
def two_factor(request):
    device = security.two_factor_device(request.user)
    context = {"section": "two_factor", "device": device, "form": CodeForm(), "required": _two_factor_required(request)}
    return render(request, "accounts/two_factor.html", context)


@login_required_page
def two_factor_enrol(request):
    """GET shows a secret to scan (a new one unless one is waiting); POST confirms it with a code."""
    if security.two_factor_device(request.user) is not None:
        return redirect("two_factor")
    form = CodeForm(request.POST or None)
    enrolment = security.two_factor_enrolment_pending(request.user)
    if (
        request.method == "POST"
        and enrolment is not None
        and form.is_valid()
        and not _refused_too_soon(form, request.user)
    ):
        device = security.two_factor_enrolment_confirm(user=request.user, code=form.cleaned_data["code"])
        if device is not None:
            django_otp.login(request, device)  # this session passed the code
            security.sessions_end_others(user=request.user, keep_session_key=request.session.session_key)
            messages.success(request, "Two-factor login is on: every login now asks for a code.")
            return redirect("two_factor")
        form.add_error("code", _code_refused(enrolment.device))
    if enrolment is None:
        enrolment = security.two_factor_enrolment_start(user=request.user)
    qr = segno.make(enrolment.uri, error="m").svg_data_uri(scale=5, border=2, dark="#0b0f14", light="#ffffff")
    context = {
        "section": "two_factor",
        "form": form,
        "secret": " ".join(enrolment.secret[i : i + 4] for i in range(0, len(enrolment.secret), 4)),
        "qr": qr,
    }
    status = 422 if form.is_bound else 200
    return render(request, "accounts/two_factor_enrol.html", context, status=status)


@require_POST
@login_required_page
def two_factor_disable(request):
    """Turning it off takes a current code: a borrowed session alone cannot do it."""
    form = CodeForm(request.POST)
    device = security.two_factor_device(request.user)
    if device is None:
        return redirect("two_factor")
    if form.is_valid() and not _refused_too_soon(form, request.user):
        if security.two_factor_verify(user=request.user, code=form.cleaned_data["code"]):
            security.two_factor_disable(user=request.user)
            messages.success(request, "Two-factor login is off.")
            return redirect("two_factor")
        form.add_error("code", _code_refused(device))
    context = {"section": "two_factor", "device": device, "form": form, "required": _two_factor_required(request)}
    return render(request, "accounts/two_factor.html", context, status=422)


def _two_factor_required(request) -> bool:
    return bool(getattr(settings, "OTP_REQUIRED_FOR_STAFF", False) and request.user.is_staff)


# --- API keys ----------------------------------------------------------------------------


@login_required_page
def api_keys(request):
    """The keys of accounts.keys: made here (the secret shown in this answer only), listed, revoked."""
    form = ApiKeyForm(request.POST or None)
    created = None
    if request.method == "POST" and form.is_valid():
        scopes = ["read", "trade"] if form.cleaned_data["trade"] else ["read"]
        try:
            key, secret = keys.api_key_create(
                user=request.user,
                name=form.cleaned_data["name"],
                scopes=scopes,
                allowed_ips=form.cleaned_data["allowed_ips"],
            )
        except ServiceError as exc:
            form.add_error(exc.field if exc.field in form.fields else None, exc.message)
        else:
            created = {"key": key, "secret": secret}
            form = ApiKeyForm()
    context = {"section": "api_keys", "form": form, "created": created, "keys": keys.api_keys_for_user(request.user)}
    response = render(request, "accounts/api_keys.html", context, status=422 if form.errors else 200)
    if created:
        response["Cache-Control"] = "no-store"  # the secret never sits in a cache
    return response


@require_POST
@login_required_page
def api_key_revoke(request, key_id):
    try:
        key = keys.api_key_revoke(user=request.user, key_id=key_id)
    except NotFound:
        messages.error(request, "That key is already revoked.")
    else:
        messages.success(request, f"Key “{key.name}” ({key.prefix}) is revoked: it is refused from now on.")
    return redirect("api_keys")


# --- Sessions ----------------------------------------------------------------------------


def session_handle(session_key: str) -> str:
    """What the page calls a session by: never its key, which is the cookie's secret."""
    return hashlib.sha256(session_key.encode()).hexdigest()[:16]


@login_required_page
def sessions(request):
    if request.method == "POST":
        if "all" in request.POST:
            ended = security.sessions_end_others(user=request.user, keep_session_key=request.session.session_key)
            messages.success(request, f"Signed out everywhere else ({ended} session{'s' if ended != 1 else ''}).")
        else:
            handle = request.POST.get("session", "")
            for session in security.sessions_for_user(request.user):
                if session_handle(session.session_key) == handle and session.session_key != request.session.session_key:
                    security.session_end(user=request.user, session_key=session.session_key)
                    messages.success(request, "That session is signed out.")
                    break
            else:
                messages.error(request, "That session has already ended.")
        return redirect("sessions")
    current = request.session.session_key
    rows = [
        {
            "handle": session_handle(session.session_key),
            "current": session.session_key == current,
            "device": describe_user_agent(session.user_agent),
            "ip": session.ip,
            "created_at": session.created_at,
            "last_seen": session.last_seen,
        }
        for session in security.sessions_for_user(request.user)
    ]
    rows.sort(key=lambda row: not row["current"])
    return render(request, "accounts/sessions.html", {"section": "sessions", "rows": rows})


def describe_user_agent(user_agent: str) -> str:
    """ "Firefox on Linux": enough to tell one's own devices apart, no more."""
    text = user_agent or ""
    browsers = [
        ("Edg/", "Edge"), ("OPR/", "Opera"), ("Firefox/", "Firefox"), ("HeadlessChrome/", "Headless Chrome"),
        ("Chrome/", "Chrome"), ("Safari/", "Safari"), ("curl/", "curl"), ("python", "Python"),
    ]  # fmt: skip
    systems = [
        ("iPhone", "iPhone"), ("iPad", "iPad"), ("Android", "Android"), ("Windows", "Windows"),
        ("Mac OS X", "macOS"), ("CrOS", "ChromeOS"), ("Linux", "Linux"),
    ]  # fmt: skip
    browser = next((name for mark, name in browsers if mark in text), None)
    system = next((name for mark, name in systems if mark in text), None)
    if browser and system:
        return f"{browser} on {system}"
    return browser or system or "Unknown device"
