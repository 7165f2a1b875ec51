"""API keys: made, listed, revoked and checked here; every door (REST, /ws, pages) calls these.

A key is `<prefix>.<secret>` (djangorestframework-api-key's format and hashing). It is
shown once, by `api_key_create`, and kept only as a hash; the prefix stays readable so
its owner can tell keys apart. A key acts for its user within its scopes:

- `read`: every GET of the owner's data, and the private `orders` channel on /ws;
- `trade`: also place, amend and cancel orders (REST and /ws).

`allowed_ips`, when not empty, lists the CIDR networks the key may be used from; the client
address is the one the throttles and the login lockout see (NUM_PROXIES honoured). Keys
never make or list keys: a stolen key cannot mint more (docs/API.md, "API keys").

The service API (for the API, the account page and the admin):
    api_key_create(user=, name=, scopes=, allowed_ips=) -> (ApiKey, secret shown once)
    api_keys_for_user(user) -> a user's usable keys, newest first
    api_key_revoke(user=, key_id=) -> ApiKey (NotFound for someone else's)
    api_key_revoke_all(queryset) -> how many were revoked (the admin's action)
    api_key_authenticate(raw_key, address) -> ApiKey (KeyRefused, KeyAddressRefused)
    api_key_reread(key) -> the key again, or None once unusable (long-lived sockets)
    api_key_data(key) -> the key as the API shows it (never the secret nor its hash)
"""

import ipaddress
import time
from types import SimpleNamespace

from django.db import transaction
from django.http.request import HttpHeaders
from django.utils import timezone
from rest_framework.fields import DateTimeField
from rest_framework.throttling import BaseThrottle

from quantumtrades.core.errors import ErrorCode, InvalidInput, NotFound, ServiceError
from quantumtrades.core.process_caches import ProcessCache

from .models import ApiKey, User

Scope = ApiKey.Scope
NAME_MAX = ApiKey._meta.get_field("name").max_length
# A key's last-used time is written at most this often per process: exact to the minute,
# and one UPDATE a minute instead of one per request on the hot path.
LAST_USED_EVERY_SECONDS = 60.0
MAX_ALLOWED_IPS = 20
# Active keys one user may hold. Each key has its own throttle budget, so without a bound
# a user could multiply their rate by making keys.
MAX_KEYS_PER_USER = 20
# A raw key is "<8 characters>.<32 characters>"; anything much longer is not one of ours.
RAW_KEY_MAX = 100

_last_written = ProcessCache("API keys' last-used writes")  # (key id, prefix) -> monotonic time of the last write
_DATE = DateTimeField()


class KeyRefused(ServiceError):
    """Unknown, revoked or malformed: answered 401, whatever the reason."""

    status = 401
    code = ErrorCode.API_KEY_INVALID


class KeyAddressRefused(ServiceError):
    """A valid key used from outside its allowed networks."""

    status = 403
    code = ErrorCode.ADDRESS_NOT_ALLOWED


def normalise_networks(allowed_ips) -> list[str]:
    """The CIDR list, each network in its canonical spelling; InvalidInput naming the entry."""
    if allowed_ips is None:
        return []
    if not isinstance(allowed_ips, list | tuple):
        raise InvalidInput('allowed_ips is a list of networks, such as ["203.0.113.0/24"].', field="allowed_ips")
    if len(allowed_ips) > MAX_ALLOWED_IPS:
        raise InvalidInput(f"allowed_ips has at most {MAX_ALLOWED_IPS} networks.", field="allowed_ips")
    networks = []
    for entry in allowed_ips:
        if not isinstance(entry, str) or len(entry) > 64:
            raise InvalidInput("allowed_ips entries are strings such as 203.0.113.0/24.", field="allowed_ips")
        try:
            # strict=False: "203.0.113.7/24" means the /24 it lies in, as firewalls read it.
            network = ipaddress.ip_network(entry.strip(), strict=False)
        except ValueError:
            message = f"allowed_ips: {entry[:64]!r} is not an address or CIDR network."
            raise InvalidInput(message, field="allowed_ips") from None
        networks.append(str(network))
    return list(dict.fromkeys(networks))


def normalise_scopes(scopes) -> list[str]:
    if not isinstance(scopes, list | tuple) or not all(isinstance(s, str) for s in scopes):
        raise InvalidInput('scopes is ["read"] or ["read", "trade"].', field="scopes")
    unknown = [s for s in scopes if s not in Scope.values]
    if unknown:
        raise InvalidInput(f"scopes: {unknown[0][:32]!r} is not a scope (read, trade).", field="scopes")
    if Scope.READ not in scopes:
        raise InvalidInput('scopes must include "read": a key that may trade may also read.', field="scopes")
    return [s for s in Scope.values if s in scopes]


@transaction.atomic
def api_key_create(*, user, name: str, scopes=("read",), allowed_ips=None) -> tuple[ApiKey, str]:
    """A new key for `user`; returns it with its secret, which is never shown again."""
    if not isinstance(name, str) or not name.strip() or len(name) > NAME_MAX or not name.isprintable():
        raise InvalidInput(f"name is printable text of 1 to {NAME_MAX} characters.", field="name")
    scopes = normalise_scopes(list(scopes))
    networks = normalise_networks(allowed_ips)
    # The user's row is the lock that makes the count below exact under concurrent requests.
    User.objects.select_for_update().filter(pk=user.pk).first()
    if ApiKey.objects.filter(user=user, revoked=False).count() >= MAX_KEYS_PER_USER:
        raise InvalidInput(f"A user holds at most {MAX_KEYS_PER_USER} keys: revoke one first.", field="name")
    key, secret = ApiKey.objects.create_key(user=user, name=name.strip(), scopes=scopes, allowed_ips=networks)
    return key, secret


def api_keys_for_user(user):
    """A user's usable keys, newest first. A revoked key is gone for its owner (operators
    still see it in the admin, with when it was revoked)."""
    return ApiKey.objects.filter(user=user, revoked=False).order_by("-created", "-id")


def api_key_revoke(*, user, key_id) -> ApiKey:
    """Revoke one of `user`'s keys: it answers 401 from the next request on. Someone
    else's key, and one already revoked, is NotFound, like a missing one."""
    key = api_keys_for_user(user).filter(pk=key_id).first() if _is_id(key_id) else None
    if key is None:
        raise NotFound("No such API key.")
    key.revoked, key.revoked_at = True, timezone.now()
    key.save(update_fields=["revoked", "revoked_at"])
    return key


def api_key_revoke_all(queryset) -> int:
    """Revoke every key of `queryset` (the admin's action); answers how many were revoked."""
    return queryset.filter(revoked=False).update(revoked=True, revoked_at=timezone.now())


def _is_id(value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and 0 < value < 2**63


def api_key_authenticate(raw_key, address: str | None) -> ApiKey:
    """The usable key that `raw_key` spells, with its user, checked against `address`.

    KeyRefused (401) for an unknown, revoked or expired key, or an inactive user;
    KeyAddressRefused (403) when the key has allowed networks and `address` is in none.
    Marks the key used (at most once a minute per process).
    """
    if not isinstance(raw_key, str) or not raw_key or len(raw_key) > RAW_KEY_MAX or not raw_key.isprintable():
        raise KeyRefused("The API key was refused: it is not a key.")
    try:
        key = ApiKey.objects.get_from_key(raw_key)
    except ApiKey.DoesNotExist:
        raise KeyRefused("The API key was refused: it is unknown or revoked.") from None
    if key.has_expired:
        raise KeyRefused("The API key was refused: it has expired.")
    if key.allowed_ips and not address_allowed(key, address):
        raise KeyAddressRefused(f"This API key may not be used from {address or 'an unknown address'}.")
    _mark_used(key)
    return key


def api_key_reread(key: ApiKey) -> ApiKey | None:
    """A key that authenticated a long-lived socket, read again with its user: None once
    it is revoked or expired, or its user is deactivated (one query)."""
    key = ApiKey.objects.get_usable_keys().filter(pk=key.pk).first()
    return None if key is None or key.has_expired else key


def address_allowed(key: ApiKey, address: str | None) -> bool:
    if not key.allowed_ips:
        return True
    try:
        ip = ipaddress.ip_address((address or "").strip())
    except ValueError:
        return False
    if ip.version == 6 and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    for network in key.allowed_ips:
        net = ipaddress.ip_network(network, strict=False)
        if ip.version == net.version and ip in net:
            return True
    return False


def client_address(remote_addr: str | None, forwarded_for: str | None) -> str | None:
    """The client's address from a connection's peer and X-Forwarded-For, exactly as the
    API's throttles and the login lockout read it (REST_FRAMEWORK NUM_PROXIES): for doors
    that have no HTTP request, such as a WebSocket's scope."""
    meta = {"REMOTE_ADDR": remote_addr}
    if forwarded_for is not None:
        meta["HTTP_X_FORWARDED_FOR"] = forwarded_for
    return BaseThrottle().get_ident(SimpleNamespace(META=meta, headers=HttpHeaders(meta))) or None


def _mark_used(key: ApiKey) -> None:
    now = time.monotonic()
    marker = (key.pk, key.prefix)
    last = _last_written.get(marker)
    if last is not None and now - last < LAST_USED_EVERY_SECONDS:
        return
    if len(_last_written) > 10_000:
        _last_written.clear()
    _last_written[marker] = now
    key.last_used_at = timezone.now()
    ApiKey.objects.filter(pk=key.pk).update(last_used_at=key.last_used_at)


def api_key_data(key: ApiKey, secret: str | None = None) -> dict:
    """A key as its owner sees it; `key` (the secret) only in the answer that made it."""
    data = {
        "id": key.pk,
        "name": key.name,
        "prefix": key.prefix,
        "scopes": list(key.scopes),
        "allowed_ips": list(key.allowed_ips),
        "created_at": _DATE.to_representation(key.created),
        "last_used_at": _DATE.to_representation(key.last_used_at) if key.last_used_at else None,
    }
    if secret is not None:
        data["key"] = secret
    return data
