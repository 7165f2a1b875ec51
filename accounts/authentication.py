"""API authentication: simplejwt's bearer tokens, with each token's user kept in memory briefly.

simplejwt reads the user's row for every request that carries a token. That read (an ORM
query, and the database connection it opens) was a quarter of the server's time on
`GET /api/auth/me` and a tenth of it on `POST /api/orders` (docs/BENCHMARKS.md, "REST
API"). Here a process keeps the users it authenticated for `USER_CACHE_SECONDS`. Saving or
deleting a user forgets it in that process at once (the signal below); other processes
forget it when the time runs out, so an account an operator deactivates stops
authenticating within `USER_CACHE_SECONDS` everywhere. Access tokens themselves live for
ACCESS_TOKEN_EXPIRE_MINUTES whatever happens, so this adds seconds to minutes.
"""

import copy
import time

from django.conf import settings
from django.db.models.signals import post_delete, post_save
from django.dispatch import receiver
from drf_spectacular.contrib.rest_framework_simplejwt import SimpleJWTScheme
from rest_framework_simplejwt import authentication
from rest_framework_simplejwt.settings import api_settings

USER_CACHE_SECONDS = 5.0
# Far more users than one process serves in USER_CACHE_SECONDS; past it, start again.
MAX_CACHED_USERS = 10_000

_recent: dict = {}  # user id -> (valid until, user)


class JWTAuthentication(authentication.JWTAuthentication):
    """simplejwt's JWTAuthentication, reading each user's row at most every few seconds."""

    def get_user(self, validated_token):
        user_id = validated_token.get(api_settings.USER_ID_CLAIM)
        entry = _recent.get(user_id)
        if entry is not None and entry[0] > time.monotonic() and not api_settings.CHECK_REVOKE_TOKEN:
            # A copy: a view may change its request.user, never another request's.
            return copy.copy(entry[1])
        # Reads the row and refuses missing, inactive (and revoked) users, as always.
        user = super().get_user(validated_token)
        if len(_recent) >= MAX_CACHED_USERS:
            _recent.clear()
        _recent[user_id] = (time.monotonic() + USER_CACHE_SECONDS, copy.copy(user))
        return user


class JWTScheme(SimpleJWTScheme):
    """The OpenAPI schema describes it as simplejwt's bearer scheme."""

    target_class = "accounts.authentication.JWTAuthentication"


@receiver(post_save, sender=settings.AUTH_USER_MODEL, dispatch_uid="accounts.authentication.forget_saved")
@receiver(post_delete, sender=settings.AUTH_USER_MODEL, dispatch_uid="accounts.authentication.forget_deleted")
def forget_user(sender, instance, **kwargs):
    _recent.pop(instance.pk, None)


def forget_all_users():
    _recent.clear()
