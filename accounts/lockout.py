"""Login lockout: too many failed logins lock a username at one address, or the address, for a while.

Failures are counted where every login passes, at the authentication layer: Django's
`user_login_failed` signal, sent by `django.contrib.auth.authenticate()` whatever door
called it (the API's login, the web login page's LoginView, the admin). The
`LockoutModelBackend` (accounts.backends) refuses to check a password while a lock stands.

Two things are counted (OWASP's advice against both guessing and lockout abuse):
- a username together with the client address: LOGIN_LOCKOUT_ATTEMPTS failures lock that
  username from that address only. Locking the username for everyone would let anyone
  lock a trader out by typing wrong passwords for her; she still logs in from her own
  address while the guesser's is locked.
- the client address alone: LOGIN_LOCKOUT_IP_ATTEMPTS failures, whatever the usernames,
  lock the address (a guesser trying many names, or one name many times).

Counts live in the shared cache (Redis when REDIS_URL is set), so every server process
sees the same count; while Redis is down the cache counts in each process's memory
(quantumtrades/core/cache.py), so a lock still comes, per process. Each count runs in a fixed window that starts at the first failure;
reaching the limit sets a lock for LOGIN_LOCKOUT_MINUTES. Attempts made while locked are
not counted, so a lock ends on time however hard someone keeps trying. A successful login
clears its username's count at that address (never the address's own: logging into one's
own account must not reset an attack on others).
"""

import hashlib
import math
import time
import unicodedata

from django.conf import settings
from django.contrib.auth.signals import user_login_failed
from django.core.cache import cache
from django.dispatch import receiver


def _setting(name, default):
    return getattr(settings, name, default)


def _subjects(username, ip) -> list[tuple[str, int]]:
    """(cache subject, failures that lock it) of what one login attempt counts against:
    the username at this address, and the address."""
    subjects = []
    if username:
        subjects.append((_user_at(username, ip), _setting("LOGIN_LOCKOUT_ATTEMPTS", 5)))
    if ip:
        subjects.append((_subject("ip", ip), _setting("LOGIN_LOCKOUT_IP_ATTEMPTS", 50)))
    return subjects


def _user_at(username, ip) -> str:
    # The name as logins find it (NFKC, any case): "ALICE" and a full-width "ａｌｉｃｅ" are
    # alice, so their failures count against her name.
    return _subject("user", f"{unicodedata.normalize('NFKC', str(username)).casefold()}\x00{ip or ''}")


def _window_seconds() -> int:
    return _setting("LOGIN_LOCKOUT_WINDOW_MINUTES", 15) * 60


def _lock_seconds() -> int:
    return _setting("LOGIN_LOCKOUT_MINUTES", 15) * 60


def _subject(kind, value) -> str:
    # Hashed: any text may arrive as a username, and cache keys must stay short and plain.
    return hashlib.sha256(f"{kind}:{value}".encode("utf-8", "surrogatepass")).hexdigest()[:40]


def wait_text(seconds: int) -> str:
    """ "in 40 seconds", "in 15 minutes": when something refused may be tried again."""
    if seconds < 90:
        return f"in {seconds} second{'s' if seconds != 1 else ''}"
    return f"in {math.ceil(seconds / 60)} minutes"


def client_ip(request) -> str | None:
    """The client's address, as the throttles see it (honours REST_FRAMEWORK NUM_PROXIES)."""
    if request is None:
        return None
    from rest_framework.throttling import BaseThrottle

    return BaseThrottle().get_ident(request) or None


def locked_for(username, ip) -> int:
    """Seconds until the username may try again from this address; 0 when not locked."""
    now = time.time()
    keys = [f"lockout:lock:{subject}" for subject, _ in _subjects(username, ip)]
    until = max(cache.get_many(keys).values(), default=0)
    return max(0, math.ceil(until - now))


def failed(username, ip) -> None:
    """Count one failed login for the username at the address, and for the address; lock
    those over their limit."""
    for subject, limit in _subjects(username, ip):
        if cache.get(f"lockout:lock:{subject}"):
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


def succeeded(username, ip) -> None:
    if username:
        cache.delete(f"lockout:failures:{_user_at(username, ip)}")


@receiver(user_login_failed, dispatch_uid="accounts.lockout.count_failure")
def count_failure(sender, credentials, request=None, **kwargs):
    from django.contrib.auth import get_user_model

    username = credentials.get(get_user_model().USERNAME_FIELD) or credentials.get("username")
    failed(username, client_ip(request))
