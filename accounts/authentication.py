"""API authentication: simplejwt's bearer tokens, decoded once and their users kept briefly.

simplejwt decodes and verifies the token (PyJWT) and reads the user's row for every
request. Both were a large part of a short API request: the user's row (an ORM query, and
the database connection it opened) a quarter of `GET /api/auth/me`, the decoding as much
Python work as the view's own (docs/BENCHMARKS.md, "REST API"). Here a process keeps:

- each token it validated, until the token expires or for TOKEN_CACHE_SECONDS, whichever
  comes first: a valid signature stays valid, so nothing changes but the work;
- each user it authenticated, for USER_CACHE_SECONDS, with the ids of the user's API
  logins that ended lately (accounts.tokens). Saving or deleting a user, or ending one
  of their logins, forgets it in that process at once (the signal below,
  `forget_user_id`); other processes forget it when the time runs out. So an access
  token whose login ended (logout, signing out everywhere, a password change) and an
  account an operator deactivates stop authenticating within USER_CACHE_SECONDS
  everywhere, at the cost of reading the user and those logins once per
  USER_CACHE_SECONDS, not once per request.

Every access token names its login (the `fam` claim); one without it was not made by
accounts.tokens and is refused.
"""

import copy
import time

from django.conf import settings
from django.db.models.signals import post_delete, post_save
from django.dispatch import receiver
from drf_spectacular.contrib.rest_framework_simplejwt import SimpleJWTScheme
from drf_spectacular.extensions import OpenApiAuthenticationExtension
from rest_framework import exceptions
from rest_framework.authentication import BaseAuthentication
from rest_framework.permissions import SAFE_METHODS, BasePermission
from rest_framework_simplejwt import authentication
from rest_framework_simplejwt.settings import api_settings

from quantumtrades.core.errors import ErrorCode
from quantumtrades.core.process_caches import ProcessCache

from . import keys, lockout, tokens
from .models import ApiKey

USER_CACHE_SECONDS = 5.0
# Far more users than one process serves in USER_CACHE_SECONDS; past it, start again.
MAX_CACHED_USERS = 10_000

# user id (text, as in the token) -> (valid until, user, ids of lately ended logins)
_recent = ProcessCache("users authenticated lately, with their ended API logins")
# A token's signature and claims are checked once; the outcome holds until the token
# expires, so it is kept for up to a minute (never past the expiry). PyJWT's decoding was
# as much Python work per request as all of the view's own.
TOKEN_CACHE_SECONDS = 60.0
API_KEY_REALM = 'Api-Key realm="api"'
_validated = ProcessCache("access tokens validated lately")  # raw token -> (valid until, validated token)


class JWTAuthentication(authentication.JWTAuthentication):
    """simplejwt's JWTAuthentication, decoding each token once and reading each user's row
    at most every few seconds."""

    def get_validated_token(self, raw_token):
        entry = _validated.get(raw_token)
        now = time.time()
        if entry is not None and entry[0] > now:
            return entry[1]
        token = super().get_validated_token(raw_token)
        if len(_validated) >= MAX_CACHED_USERS:
            _validated.clear()
        _validated[raw_token] = (min(now + TOKEN_CACHE_SECONDS, float(token["exp"])), token)
        return token

    def get_user(self, validated_token):
        login_id = validated_token.get(tokens.FAMILY_CLAIM)
        if not isinstance(login_id, str):
            raise LoginEnded("it belongs to no login; log in again")
        user_id = str(validated_token.get(api_settings.USER_ID_CLAIM))
        entry = _recent.get(user_id)
        if entry is not None and entry[0] > time.monotonic() and not api_settings.CHECK_REVOKE_TOKEN:
            _, user, ended = entry
            # A copy: a view may change its request.user, never another request's.
            user = copy.copy(user)
        else:
            # Reads the row and refuses missing, inactive (and revoked) users, as always.
            user = super().get_user(validated_token)
            ended = tokens.api_logins_ended_lately(user.pk)
            if len(_recent) >= MAX_CACHED_USERS:
                _recent.clear()
            _recent[user_id] = (time.monotonic() + USER_CACHE_SECONDS, copy.copy(user), ended)
        if login_id in ended:
            raise LoginEnded("its login has ended (logged out or signed out); log in again")
        return user


def login_standing(validated_token) -> bool | None:
    """Whether an access token's login stands, from this process's copy alone (no query, so
    an open socket may ask it often): None when the copy of its user is missing or stale,
    and only `JWTAuthentication().get_user` can tell."""
    entry = _recent.get(str(validated_token.get(api_settings.USER_ID_CLAIM)))
    if entry is None or entry[0] <= time.monotonic():
        return None
    return validated_token.get(tokens.FAMILY_CLAIM) not in entry[2]


class LoginEnded(exceptions.AuthenticationFailed):
    """An access token of an ended login (accounts.tokens), or of none: 401 TOKEN_INVALID."""

    error_code = ErrorCode.TOKEN_INVALID


class JWTScheme(SimpleJWTScheme):
    """The OpenAPI schema describes it as simplejwt's bearer scheme."""

    target_class = "accounts.authentication.JWTAuthentication"


@receiver(post_save, sender=settings.AUTH_USER_MODEL, dispatch_uid="accounts.authentication.forget_saved")
@receiver(post_delete, sender=settings.AUTH_USER_MODEL, dispatch_uid="accounts.authentication.forget_deleted")
def forget_user(sender, instance, **kwargs):
    forget_user_id(instance.pk)


def forget_user_id(user_id) -> None:
    """Read the user (and their ended logins) again at their next request in this process."""
    _recent.pop(str(user_id), None)


# --- API keys ----------------------------------------------------------------------------------


class ApiKeyRefused(exceptions.AuthenticationFailed):
    error_code = ErrorCode.API_KEY_INVALID
    auth_header = API_KEY_REALM


class ApiKeyAddressRefused(exceptions.PermissionDenied):
    error_code = ErrorCode.ADDRESS_NOT_ALLOWED


class ApiKeyAuthentication(BaseAuthentication):
    """`Authorization: Api-Key <key>`: the key's user, with the key as `request.auth`.

    Checked by `accounts.keys.api_key_authenticate` (hash, revocation, expiry, allowed
    networks); what the key may do is `ApiKeyScope`'s to say.
    """

    keyword = "Api-Key"

    def authenticate(self, request):
        header = request.META.get("HTTP_AUTHORIZATION", "")
        keyword, _, raw = header.partition(" ")
        if keyword.lower() != self.keyword.lower():
            return None
        try:
            key = keys.api_key_authenticate(raw.strip(), lockout.client_ip(request))
        except keys.KeyRefused as exc:
            raise ApiKeyRefused(exc.message) from None
        except keys.KeyAddressRefused as exc:
            raise ApiKeyAddressRefused(exc.message) from None
        return key.user, key

    def authenticate_header(self, request):
        return API_KEY_REALM


class ApiKeyScope(BasePermission):
    """What a request made with an API key may do (docs/API.md, "API keys").

    `read` opens every safe method; `trade` also the order commands (views that set
    `order_commands = True`: place, amend, cancel). Anything else (making keys, operators'
    adjustments) is for people, never for a key. Requests without a key pass through.
    """

    message = "This API key may not do this."

    def has_permission(self, request, view):
        key = request.auth
        if not isinstance(key, ApiKey):
            return True
        if getattr(view, "people_only", False):
            self.message = "API keys cannot manage API keys: log in (JWT or the web session) to do this."
            return False
        if request.method in SAFE_METHODS:
            return ApiKey.Scope.READ in key.scopes
        if not getattr(view, "order_commands", False):
            self.message = "API keys may only read and trade; this needs a login."
            return False
        if not key.can_trade:
            self.message = (
                'This API key may only read: make one with the "trade" scope to place, amend or cancel orders.'
            )
            return False
        return True


class ApiKeyScheme(OpenApiAuthenticationExtension):
    target_class = "accounts.authentication.ApiKeyAuthentication"
    name = "ApiKey"

    def get_security_definition(self, auto_schema):
        return {"type": "apiKey", "in": "header", "name": "Authorization", "description": "Api-Key <key>"}
