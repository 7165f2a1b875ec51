"""Services of the account's security: web sessions, refresh tokens and two-factor login.

- Sessions: every web sign-in is an accounts.Session row (accounts.session_store).
  Ending one deletes the row, so its browser is signed out at its next request.
- API logins (accounts.tokens): signing out everywhere ends every one, so no program
  keeps a way back in: their refresh tokens are refused at once, their access tokens
  within seconds (accounts.authentication), on REST and on /ws alike.
- A password changed or reset is how a trader takes the account back: it also revokes
  every API key (`credentials_revoke`), since anyone who held the password, or a session
  opened with it, could have made one. Signing out everywhere leaves keys alone: they
  are programs' credentials, revoked one by one on the API keys page.
- Password reset: each request for a reset email counts against the address asked for and
  against the client's address (`password_reset_wait`), in the API's shared throttle
  counters: an address gets a few emails an hour however many clients ask, a client
  a few more whatever addresses it names. Counts never depend on whether the address
  has an account, so a refusal says nothing about it.
- Two-factor login: one TOTP device per user (django-otp). Enrolment makes an
  unconfirmed device; the first good code confirms it. Only a confirmed device makes the
  login ask for a code. Codes are checked by django-otp, which refuses a code used once
  already and slows down repeated failures (OTP_TOTP_THROTTLE_FACTOR).
"""

import hashlib
import unicodedata
from base64 import b32encode
from dataclasses import dataclass
from typing import NamedTuple

import django_otp
from django.db import transaction
from django.utils import timezone
from django_otp.plugins.otp_totp.models import TOTPDevice

from quantumtrades.core.throttles import WindowRateThrottle

from . import keys, tokens
from .models import ApiKey, Session

# --- Sessions -------------------------------------------------------------------------


def sessions_for_user(user) -> list[Session]:
    """The user's live web sessions, most recently used first."""
    return list(Session.objects.filter(user=user, expire_date__gt=timezone.now()).order_by("-last_seen"))


def session_alive(session_key: str) -> bool:
    """Whether the session is still signed in (not signed out, ended elsewhere or expired)."""
    return Session.objects.filter(session_key=session_key, expire_date__gt=timezone.now()).exists()


def session_end(*, user, session_key: str) -> bool:
    """Sign one of the user's sessions out; False when it is not (or no longer) theirs."""
    deleted, _ = Session.objects.filter(user=user, session_key=session_key).delete()
    return bool(deleted)


@transaction.atomic
def sessions_end_others(*, user, keep_session_key: str | None = None) -> int:
    """Sign the user out everywhere but the session kept (None: everywhere), API logins
    included. Answers how many web sessions ended."""
    deleted, _ = Session.objects.filter(user=user).exclude(session_key=keep_session_key or "").delete()
    tokens.api_logins_end(user=user)
    return deleted


class SignedOut(NamedTuple):
    sessions: int  # other web sessions ended
    api_keys: int  # API keys revoked


@transaction.atomic
def credentials_revoke(*, user, keep_session_key: str | None = None) -> SignedOut:
    """What a password change or reset does: every web session but the one kept ends,
    every API login ends, and every API key is revoked."""
    sessions = sessions_end_others(user=user, keep_session_key=keep_session_key)
    return SignedOut(sessions, keys.api_key_revoke_all(ApiKey.objects.filter(user=user)))


# --- Password reset -------------------------------------------------------------------


class PasswordResetThrottle(WindowRateThrottle):
    """Reset emails: REST_FRAMEWORK's "reset_email" rate per address asked for (however it
    is spelt: NFKC, any case, as Django matches it to accounts) and "reset_client" per
    client address (NUM_PROXIES honoured, as the API's throttles count)."""

    def __init__(self, email: str):
        folded = unicodedata.normalize("NFKC", email).casefold()
        # Hashed: cache keys stay short and say nothing of the address.
        self.email_ident = hashlib.sha256(folded.encode("utf-8", "surrogatepass")).hexdigest()[:40]

    def counters(self, request, view):
        return [("reset_email", self.email_ident), ("reset_client", self.get_ident(request))]


def password_reset_wait(*, request, email: str) -> int:
    """Count one request for a reset email to `email`: 0 when it may be sent, else the
    seconds until another may be asked for."""
    throttle = PasswordResetThrottle(email)
    if throttle.allow_request(request, None):
        return 0
    return max(1, int(throttle.wait() + 0.999))


# --- Two-factor login -----------------------------------------------------------------


@dataclass(frozen=True)
class Enrolment:
    device: TOTPDevice
    secret: str  # base32, as authenticator apps take it when typed in
    uri: str  # otpauth:// URI, the QR code's content


def two_factor_device(user) -> TOTPDevice | None:
    """The user's confirmed device: when there is one, logging in asks for a code."""
    if user is None or user.pk is None:
        return None
    return TOTPDevice.objects.filter(user=user, confirmed=True).first()


def two_factor_enrolment_start(*, user) -> Enrolment:
    """A new secret for the user to scan or type in (an unconfirmed device). Starting again
    replaces an unconfirmed one; a confirmed device stays until it is disabled."""
    TOTPDevice.objects.filter(user=user, confirmed=False).delete()
    device = TOTPDevice.objects.create(user=user, name="Authenticator app", confirmed=False)
    return enrolment_of(device)


def two_factor_enrolment_pending(user) -> Enrolment | None:
    device = two_factor_enrolment_pending_device(user)
    return enrolment_of(device) if device else None


def two_factor_enrolment_pending_device(user) -> TOTPDevice | None:
    return TOTPDevice.objects.filter(user=user, confirmed=False).first()


def enrolment_of(device) -> Enrolment:
    return Enrolment(device=device, secret=b32encode(device.bin_key).decode(), uri=device.config_url)


def two_factor_enrolment_confirm(*, user, code: str) -> TOTPDevice | None:
    """Confirm the pending device with a code from the app; None when the code is wrong.
    From then on every login asks for a code."""
    pending = TOTPDevice.objects.filter(user=user, confirmed=False).first()
    if pending is None:
        return None
    device = django_otp.verify_token(user, pending.persistent_id, code)
    if device is None:
        return None
    device.confirmed = True
    device.save(update_fields=["confirmed"])
    return device


def two_factor_verify(*, user, code: str) -> TOTPDevice | None:
    """The confirmed device, when the code is good for it (each code is good once)."""
    device = two_factor_device(user)
    if device is None:
        return None
    return django_otp.verify_token(user, device.persistent_id, code)


def two_factor_wait_seconds(device) -> int:
    """Seconds before the device takes another code after repeated failures; 0 when it does."""
    allowed, details = device.verify_is_allowed()
    if allowed:
        return 0
    locked_until = (details or {}).get("locked_until")
    if locked_until is None:
        return 1
    return max(1, int((locked_until - timezone.now()).total_seconds()) + 1)


def two_factor_disable(*, user) -> None:
    TOTPDevice.objects.filter(user=user).delete()
