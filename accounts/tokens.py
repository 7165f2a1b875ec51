"""API logins: each `POST /api/auth/login` starts a family of tokens, and ending it ends them all.

A login is an accounts.ApiLogin row. Its tokens are simplejwt's, each carrying the
login's id in the `fam` claim (simplejwt copies a refresh token's claims into its access
token). Refreshing trades the refresh token for a new pair in the same family and
blacklists the old one (simplejwt's blacklist), so each refresh token works once.

Ending a login sets its `ended_at`. From then on its refresh tokens are refused here, and
its access tokens by accounts.authentication, which reads the user's lately ended logins
with the user's row (at most every USER_CACHE_SECONDS per process; this process forgets
its copy at once). Logins end when:

- the client logs out with any of the login's refresh tokens (`api_login_end`);
- the user signs out everywhere, changes or resets the password (`api_logins_end`);
- a refresh token that was already used comes back (`api_login_refresh`): two parties hold
  tokens of the family, and the server cannot tell the thief from the owner, so the whole
  family ends (OAuth 2.0 Security Best Current Practice, RFC 9700, section 4.14.2). The
  owner logs in again; the thief's tokens are dead.

The service API:
    api_login_start(user=) -> RefreshToken (its `.access_token` is the pair's access token)
    api_login_refresh(refresh=) -> RefreshToken of the same login (TokenRefused)
    api_login_end(refresh=) -> None (TokenRefused for a token that is not ours)
    api_logins_end(user=, reason=) -> how many logins ended
    api_logins_ended_lately(user_id) -> ids of the user's logins whose access tokens may still be unexpired
"""

import logging
import uuid
from datetime import timedelta

from django.db import transaction
from django.utils import timezone
from rest_framework_simplejwt.exceptions import TokenError
from rest_framework_simplejwt.settings import api_settings as jwt_settings
from rest_framework_simplejwt.token_blacklist.models import BlacklistedToken, OutstandingToken
from rest_framework_simplejwt.tokens import RefreshToken, Token
from rest_framework_simplejwt.utils import datetime_from_epoch

from quantumtrades.core.errors import ErrorCode, ServiceError

from .models import ApiLogin

log = logging.getLogger(__name__)

FAMILY_CLAIM = "fam"
EndReason = ApiLogin.EndReason
# Ended logins are remembered with their user for as long as their access tokens can live,
# and this much longer: the clocks of the server processes and the database may differ.
CLOCK_MARGIN = timedelta(seconds=60)


class TokenRefused(ServiceError):
    """A refresh token that is not, or no longer, good: 401 TOKEN_INVALID."""

    status = 401
    code = ErrorCode.TOKEN_INVALID

    def __init__(self, message):
        super().__init__(f"The refresh token was refused: {message}", field="refresh")


class _UnlistedRefreshToken(RefreshToken):
    """A refresh token checked for its signature, expiry and type, not for the blacklist:
    a used token must reach `api_login_refresh`, which ends its login."""

    def verify(self, *args, **kwargs):
        Token.verify(self, *args, **kwargs)


def _decoded(raw: str) -> RefreshToken:
    try:
        return _UnlistedRefreshToken(raw)
    except TokenError as exc:
        raise TokenRefused(f"{str(exc).rstrip('.')}.") from None


def _login_id(token) -> uuid.UUID:
    try:
        return uuid.UUID(hex=str(token[FAMILY_CLAIM]))
    except (KeyError, ValueError):
        raise TokenRefused("it belongs to no login; log in again.") from None


def _refresh_for(login: ApiLogin) -> RefreshToken:
    """A new refresh token of `login`, listed as outstanding (the blacklist's record)."""
    refresh = RefreshToken()
    refresh[jwt_settings.USER_ID_CLAIM] = str(login.user_id)
    refresh[FAMILY_CLAIM] = login.pk.hex
    OutstandingToken.objects.create(
        user_id=login.user_id,
        jti=refresh[jwt_settings.JTI_CLAIM],
        token=str(refresh),
        created_at=refresh.current_time,
        expires_at=datetime_from_epoch(refresh["exp"]),
    )
    return refresh


@transaction.atomic
def api_login_start(*, user) -> RefreshToken:
    """A new login for `user` (whose password, and code, were checked): its first pair."""
    login = ApiLogin.objects.create(user=user, expires_at=timezone.now() + jwt_settings.REFRESH_TOKEN_LIFETIME)
    return _refresh_for(login)


def api_login_refresh(*, refresh: str) -> RefreshToken:
    """The next pair of the login `refresh` belongs to; `refresh` is used up.

    TokenRefused for a bad or expired token, one of an ended login or a disabled user, and
    for a token used already, which also ends its login (see the module docstring).
    """
    old = _decoded(refresh)
    with transaction.atomic():
        # The login's row is the lock: of two refreshes with one token, the second waits
        # and then finds the token blacklisted.
        login = ApiLogin.objects.select_for_update().filter(pk=_login_id(old)).first()
        if login is None or login.ended_at is not None:
            raise TokenRefused("its login has ended (logged out or signed out); log in again.")
        if str(login.user_id) != str(old.get(jwt_settings.USER_ID_CLAIM)):
            raise TokenRefused("it belongs to no login; log in again.")
        if not login.user.is_active:
            raise TokenRefused("its account is disabled.")
        _, first_use = old.blacklist()
        if first_use:
            new = _refresh_for(login)
            login.expires_at = datetime_from_epoch(new["exp"])
            login.save(update_fields=["expires_at"])
            return new
        _end(ApiLogin.objects.filter(pk=login.pk), EndReason.REUSE)
    log.warning("API login %s of user %s ended: a used refresh token came back", login.pk, login.user_id)
    raise TokenRefused("it was used already, so its login has ended; log in again.")


def api_login_end(*, refresh: str) -> None:
    """Log out: end the login that `refresh` (any of its refresh tokens) belongs to.
    Ending an ended login changes nothing."""
    token = _decoded(refresh)
    login_id = _login_id(token)
    with transaction.atomic():
        _end(ApiLogin.objects.filter(pk=login_id, user_id=token.get(jwt_settings.USER_ID_CLAIM)), EndReason.LOGOUT)
        token.blacklist()


@transaction.atomic
def api_logins_end(*, user, reason=EndReason.SIGN_OUT) -> int:
    """End every login of `user` (signing out everywhere, a password changed or reset).
    Answers how many were live."""
    ended = _end(ApiLogin.objects.filter(user=user), reason)
    # Their refresh tokens are refused by their logins' end already; blacklisting them
    # too keeps simplejwt's own record (and its admin) truthful.
    live = OutstandingToken.objects.filter(user=user, expires_at__gt=timezone.now(), blacklistedtoken__isnull=True)
    BlacklistedToken.objects.bulk_create([BlacklistedToken(token=token) for token in live], ignore_conflicts=True)
    return ended


def _end(logins, reason) -> int:
    user_ids = set(logins.filter(ended_at__isnull=True).values_list("user_id", flat=True))
    ended = logins.filter(ended_at__isnull=True).update(ended_at=timezone.now(), end_reason=reason)
    if ended:
        from .authentication import forget_user_id

        for user_id in user_ids:
            forget_user_id(user_id)
            # Again once committed: a request of this process may have read the user
            # (and the login still live) in between.
            transaction.on_commit(lambda user_id=user_id: forget_user_id(user_id))
    return ended


def api_logins_ended_lately(user_id) -> frozenset[str]:
    """Ids (as in the `fam` claim) of the user's logins ended recently enough that access
    tokens of theirs may not have expired yet."""
    since = timezone.now() - jwt_settings.ACCESS_TOKEN_LIFETIME - CLOCK_MARGIN
    ids = ApiLogin.objects.filter(user_id=user_id, ended_at__gt=since).values_list("pk", flat=True)
    return frozenset(login_id.hex for login_id in ids)
