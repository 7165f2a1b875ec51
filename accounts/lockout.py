"""Login lockout: too many failed logins lock the username, or the client address, for a while.

Failures are counted where every login passes, at the authentication layer: Django's
`user_login_failed` signal, sent by `django.contrib.auth.authenticate()` whatever door
called it (the API's login, the web login page's LoginView, the admin). The
`LockoutModelBackend` (accounts.backends) refuses to check a password while a lock stands.

Counts live in the shared cache (Redis when REDIS_URL is set), so every server process
sees the same count. Each count runs in a fixed window that starts at the first failure;
reaching the limit sets a lock for LOGIN_LOCKOUT_MINUTES. Attempts made while locked are
not counted, so a lock ends on time however hard someone keeps trying. A successful login
clears its username's count (never the address's: logging into one's own account must
not reset an attack on others).
"""

import hashlib
import math
import time

from django.conf import settings
from django.contrib.auth.signals import user_login_failed
from django.core.cache import cache
from django.dispatch import receiver


def _setting(name, default):
    return getattr(settings, name, default)


def _limits():
    """(kind, how many failures lock) for the two things counted: usernames and addresses."""
    return (
        ("user", _setting("LOGIN_LOCKOUT_ATTEMPTS", 5)),
        ("ip", _setting("LOGIN_LOCKOUT_IP_ATTEMPTS", 50)),
    )


def _window_seconds() -> int:
    return _setting("LOGIN_LOCKOUT_WINDOW_MINUTES", 15) * 60


def _lock_seconds() -> int:
    return _setting("LOGIN_LOCKOUT_MINUTES", 15) * 60


def _subject(kind, value) -> str | None:
    if not value:
        return None
    if kind == "user":
        value = str(value).casefold()
    # Hashed: any text may arrive as a username, and cache keys must stay short and plain.
    return hashlib.sha256(f"{kind}:{value}".encode("utf-8", "surrogatepass")).hexdigest()[:40]


def client_ip(request) -> str | None:
    """The client's address, as the throttles see it (honours REST_FRAMEWORK NUM_PROXIES)."""
    if request is None:
        return None
    from rest_framework.throttling import BaseThrottle

    return BaseThrottle().get_ident(request) or None


def locked_for(username, ip) -> int:
    """Seconds until the username and the address may try again; 0 when neither is locked."""
    now = time.time()
    keys = [f"lockout:lock:{subject}" for subject in (_subject("user", username), _subject("ip", ip)) if subject]
    until = max(cache.get_many(keys).values(), default=0)
    return max(0, math.ceil(until - now))


def failed(username, ip) -> None:
    """Count one failed login for the username and the address; lock those over the limit."""
    for (kind, limit), value in zip(_limits(), (username, ip), strict=True):
        subject = _subject(kind, value)
        if subject is None or cache.get(f"lockout:lock:{subject}"):
            continue
        key = f"lockout:failures:{subject}"
        if cache.add(key, 1, timeout=_window_seconds()):
            count = 1
        else:
            try:
                count = cache.incr(key)
            except ValueError:  # the window ended between add and incr
                cache.add(key, 1, timeout=_window_seconds())
                count = 1
        if count >= limit:
            cache.set(f"lockout:lock:{subject}", time.time() + _lock_seconds(), timeout=_lock_seconds())
            cache.delete(key)


def succeeded(username) -> None:
    subject = _subject("user", username)
    if subject:
        cache.delete(f"lockout:failures:{subject}")


@receiver(user_login_failed, dispatch_uid="accounts.lockout.count_failure")
def count_failure(sender, credentials, request=None, **kwargs):
    from django.contrib.auth import get_user_model

    username = credentials.get(get_user_model().USERNAME_FIELD) or credentials.get("username")
    failed(username, client_ip(request))
