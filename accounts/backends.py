"""The authentication backend: Django's ModelBackend behind the login lockout."""

from django.contrib.auth import get_user_model
from django.contrib.auth.backends import ModelBackend
from django.core.exceptions import PermissionDenied

# Importing the lockout connects its user_login_failed receiver; authenticate() loads this
# backend before it can send that signal, so no failure goes uncounted.
from . import lockout


class LockoutModelBackend(ModelBackend):
    """Checks username and password like ModelBackend, unless the login is locked out.

    While the username is locked at the client's address, or the address is, the password is not even looked
    at: PermissionDenied stops `authenticate()` at once (no other backend is asked) and
    it answers None, so every door refuses the login the same way.
    """

    def authenticate(self, request, username=None, password=None, **kwargs):
        if username is None:
            username = kwargs.get(get_user_model().USERNAME_FIELD)
        ip = lockout.client_ip(request)
        if lockout.locked_for(username, ip):
            raise PermissionDenied("Too many failed logins.")
        user = super().authenticate(request, username=username, password=password, **kwargs)
        if user is not None:
            lockout.succeeded(username, ip)
        return user
