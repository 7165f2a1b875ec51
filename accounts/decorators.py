from functools import wraps

from django.contrib.auth.views import redirect_to_login
from django_htmx.http import HttpResponseClientRedirect


def login_required_page(view):
    """login_required that also answers htmx requests: those get the whole page sent to the
    login form (HX-Redirect), coming back to the page the trader was on, not to the URL of
    the fragment that asked."""

    @wraps(view)
    def wrapper(request, *args, **kwargs):
        if request.user.is_authenticated:
            return view(request, *args, **kwargs)
        if request.htmx:
            back = request.htmx.current_url_abs_path or "/"
            return HttpResponseClientRedirect(redirect_to_login(back)["Location"])
        return redirect_to_login(request.get_full_path())

    return wrapper
