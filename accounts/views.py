"""Signing up, in and out of the trader's pages. Logging in is Django's own LoginView
(its authentication backends decide, lockout included); registration goes through the
`user_register` service, which deposits the paper-trading grant."""

from django.contrib.auth import authenticate, login
from django.http import HttpResponse
from django.shortcuts import redirect, render
from django.utils.http import url_has_allowed_host_and_scheme
from django.views.decorators.http import require_POST

from .decorators import login_required_page
from .forms import RegisterForm
from .services import user_register


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
