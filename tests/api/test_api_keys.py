"""API keys over REST: made and revoked by their owner, hashed at rest, scoped, bound to
networks, throttled on their own (docs/API.md, "API keys").

Whole-stack: a key's `trade` scope is proven by placing orders, so these live beside the
other end-to-end API tests rather than in accounts.
"""

import hashlib

import pytest
from django.conf import settings as django_settings
from django.test import override_settings
from django.utils import timezone
from django.utils.crypto import get_random_string
from rest_framework.test import APIClient

from accounts import keys
from accounts.models import ApiKey
from tests.api_support import *  # noqa: F403
from tests.api_support import assert_error, client_for

pytestmark = pytest.mark.django_db

KEY_FIELDS = {"id", "name", "prefix", "scopes", "allowed_ips", "created_at", "last_used_at"}
ORDER = {"symbol": "QTX-USD", "side": "buy", "price": "10.00", "quantity": "1.00"}


def make_key(client, **fields):
    return client.post("/api/keys", {"name": "bot", **fields}, format="json")


def with_key(secret, **extra) -> APIClient:
    client = APIClient(**extra)
    client.credentials(HTTP_AUTHORIZATION=f"Api-Key {secret}")
    return client


@pytest.fixture
def trade_key(as_alice):
    return make_key(as_alice, scopes=["read", "trade"]).json()


@pytest.fixture
def read_key(as_alice):
    return make_key(as_alice).json()


# --- Making, listing, revoking -------------------------------------------------------------------


def test_a_new_key_is_shown_once_with_its_secret_and_never_again(as_alice):
    response = make_key(as_alice, name="market maker", scopes=["read", "trade"])

    assert response.status_code == 201
    made = response.json()
    assert set(made) == KEY_FIELDS | {"key"}
    assert made["name"] == "market maker"
    assert made["scopes"] == ["read", "trade"]
    assert made["allowed_ips"] == []
    assert made["last_used_at"] is None
    assert made["key"].startswith(made["prefix"] + ".")
    listed = as_alice.get("/api/keys").json()
    assert [set(k) for k in listed] == [KEY_FIELDS]
    assert made["key"] not in str(listed)


def test_the_secret_is_stored_only_as_a_hash(as_alice):
    made = make_key(as_alice).json()

    row = ApiKey.objects.get(pk=made["id"])
    stored = " ".join(str(value) for value in ApiKey.objects.filter(pk=made["id"]).values_list().get())
    secret_part = made["key"].split(".", 1)[1]
    assert secret_part not in stored
    assert row.hashed_key == "sha512$$" + hashlib.sha512(made["key"].encode()).hexdigest()


def test_the_default_scope_is_read_and_trade_needs_read(as_alice):
    assert make_key(as_alice).json()["scopes"] == ["read"]

    assert_error(make_key(as_alice, scopes=["trade"]), 400, "INVALID", "scopes")
    assert_error(make_key(as_alice, scopes=["admin"]), 400, "INVALID", "scopes.0")
    assert_error(make_key(as_alice, scopes="read"), 400, "INVALID", "scopes")


@pytest.mark.parametrize(
    "fields, field",
    [
        ({"name": ""}, "name"),
        ({"name": "x" * 51}, "name"),
        ({"name": 7}, "name"),
        ({"allowed_ips": ["not an address"]}, "allowed_ips"),
        ({"allowed_ips": ["10.0.0.0/33"]}, "allowed_ips"),
        ({"allowed_ips": "10.0.0.0/8"}, "allowed_ips"),
        ({"secret": "mine"}, "secret"),
    ],
)
def test_bad_key_requests_are_refused_by_field(as_alice, fields, field):
    assert_error(make_key(as_alice, **fields), 400, "INVALID", field)
    assert not ApiKey.objects.exists()


def test_networks_are_kept_in_their_canonical_spelling(as_alice):
    made = make_key(as_alice, allowed_ips=["203.0.113.7/24", "2001:DB8::1", "198.51.100.9"]).json()

    assert made["allowed_ips"] == ["203.0.113.0/24", "2001:db8::1/128", "198.51.100.9/32"]


def test_a_user_holds_a_bounded_number_of_keys(as_alice, alice):
    for n in range(keys.MAX_KEYS_PER_USER):
        keys.api_key_create(user=alice, name=f"k{n}")

    assert_error(make_key(as_alice), 400, "INVALID")
    keys.api_key_revoke(user=alice, key_id=keys.api_keys_for_user(alice).first().pk)
    assert make_key(as_alice).status_code == 201


def test_a_revoked_key_answers_401_from_then_on_and_leaves_the_list(as_alice, trade_key):
    assert with_key(trade_key["key"]).get("/api/user/balances").status_code == 200

    assert as_alice.delete(f"/api/keys/{trade_key['id']}").status_code == 204

    error = assert_error(with_key(trade_key["key"]).get("/api/user/balances"), 401, "API_KEY_INVALID")
    assert "revoked" in error["message"]
    assert as_alice.get("/api/keys").json() == []
    assert ApiKey.objects.get(pk=trade_key["id"]).revoked_at is not None
    assert_error(as_alice.delete(f"/api/keys/{trade_key['id']}"), 404, "NOT_FOUND")


def test_another_users_key_is_invisible(as_alice, as_bob, trade_key):
    assert as_bob.get("/api/keys").json() == []
    assert_error(as_bob.delete(f"/api/keys/{trade_key['id']}"), 404, "NOT_FOUND")
    assert_error(as_bob.delete("/api/keys/999999"), 404, "NOT_FOUND")
    assert_error(as_bob.delete(f"/api/keys/{2**64}"), 404, "NOT_FOUND")

    assert with_key(trade_key["key"]).get("/api/auth/me").json()["username"] == "alice"


@pytest.mark.parametrize(
    "header",
    ["Api-Key nothing-like-a-key", "Api-Key abcdefgh.wrongwrongwrongwrongwrongwrongwr", "Api-Key ", "Api-Key x" * 40],
)
def test_an_unknown_or_malformed_key_is_401(db, header):
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=header)

    response = client.get("/api/user/balances")

    assert_error(response, 401, "API_KEY_INVALID")


def test_a_tampered_secret_with_a_real_prefix_is_401(trade_key):
    prefix, secret = trade_key["key"].split(".", 1)
    tampered = f"{prefix}.{secret[:-1]}{'a' if secret[-1] != 'a' else 'b'}"

    assert_error(with_key(tampered).get("/api/user/balances"), 401, "API_KEY_INVALID")


def test_an_expired_key_is_401(trade_key):
    ApiKey.objects.filter(pk=trade_key["id"]).update(expiry_date=timezone.now() - timezone.timedelta(seconds=1))

    assert_error(with_key(trade_key["key"]).get("/api/user/balances"), 401, "API_KEY_INVALID")


def test_a_key_of_a_deactivated_user_is_401(alice, trade_key):
    alice.is_active = False
    alice.save()

    assert_error(with_key(trade_key["key"]).get("/api/user/balances"), 401, "API_KEY_INVALID")


def test_a_key_cannot_make_list_or_revoke_keys(trade_key):
    client = with_key(trade_key["key"])

    assert_error(client.get("/api/keys"), 403, "PERMISSION_DENIED")
    assert_error(make_key(client), 403, "PERMISSION_DENIED")
    assert_error(client.delete(f"/api/keys/{trade_key['id']}"), 403, "PERMISSION_DENIED")
    assert ApiKey.objects.filter(revoked=False).count() == 1


def test_keys_need_a_login(anon):
    assert_error(anon.get("/api/keys"), 401, "NOT_AUTHENTICATED")
    assert_error(make_key(anon), 401, "NOT_AUTHENTICATED")


def test_the_web_session_makes_keys_with_its_csrf_token(alice):
    client = APIClient(enforce_csrf_checks=True)
    client.force_login(alice)

    assert_error(make_key(client), 403, "PERMISSION_DENIED")  # no CSRF token
    token = get_random_string(32)
    client.cookies[django_settings.CSRF_COOKIE_NAME] = token
    response = client.post("/api/keys", {"name": "page"}, format="json", HTTP_X_CSRFTOKEN=token)
    assert response.status_code == 201, response.content


# --- Scopes -----------------------------------------------------------------------------------


def test_a_read_key_reads_my_data_but_cannot_trade(read_key, alice):
    client = with_key(read_key["key"])
    order_id = client_for(alice).post("/api/orders", ORDER, format="json").json()["order"]["id"]

    for path in ["/api/auth/me", "/api/user/balances", "/api/user/transactions", "/api/orders", "/api/orders/open",
                 f"/api/orders/{order_id}", "/api/trades/history", "/api/markets"]:  # fmt: skip
        assert client.get(path).status_code == 200, path
    for response in [
        client.post("/api/orders", ORDER, format="json"),
        client.patch(f"/api/orders/{order_id}", {"price": "9.00"}, format="json"),
        client.delete(f"/api/orders/{order_id}"),
        client.delete("/api/orders"),
    ]:
        error = assert_error(response, 403, "PERMISSION_DENIED")
        assert "trade" in error["message"]
    assert client_for(alice).get(f"/api/orders/{order_id}").json()["status"] == "open"


def test_a_trade_key_places_amends_and_cancels(trade_key, alice):
    client = with_key(trade_key["key"])

    placed = client.post("/api/orders", {**ORDER, "client_order_id": "k-1"}, format="json")
    assert placed.status_code == 201
    order_id = placed.json()["order"]["id"]
    assert client.post("/api/orders", {**ORDER, "client_order_id": "k-1"}, format="json").status_code == 200
    assert (
        client.patch(f"/api/orders/{order_id}", {"price": "9.00"}, format="json").json()["order"]["price"]
        == "9.00000000"
    )
    assert client.delete(f"/api/orders/{order_id}").json()["status"] == "cancelled"
    assert client.delete("/api/orders").status_code == 200
    assert alice.orders.count() == 1


def test_a_key_never_adjusts_balances_even_a_staff_users(operator, alice):
    _, secret = keys.api_key_create(user=operator, name="ops", scopes=["read", "trade"])

    response = with_key(secret).put(
        "/api/user/balance", {"username": "alice", "asset": "USD", "amount": "5", "reason": "x"}, format="json"
    )

    assert_error(response, 403, "PERMISSION_DENIED")


# --- Allowed networks -------------------------------------------------------------------------


def test_a_key_is_refused_outside_its_networks(as_alice):
    secret = make_key(as_alice, allowed_ips=["203.0.113.0/24"]).json()["key"]

    inside = with_key(secret, REMOTE_ADDR="203.0.113.77").get("/api/user/balances")
    outside = with_key(secret, REMOTE_ADDR="198.51.100.1").get("/api/user/balances")

    assert inside.status_code == 200
    error = assert_error(outside, 403, "ADDRESS_NOT_ALLOWED")
    assert "198.51.100.1" in error["message"]


def test_an_ipv6_network(as_alice):
    secret = make_key(as_alice, allowed_ips=["2001:db8::/32"]).json()["key"]

    assert with_key(secret, REMOTE_ADDR="2001:db8::5").get("/api/auth/me").status_code == 200
    assert_error(with_key(secret, REMOTE_ADDR="2001:db9::5").get("/api/auth/me"), 403, "ADDRESS_NOT_ALLOWED")
    assert_error(with_key(secret, REMOTE_ADDR="127.0.0.1").get("/api/auth/me"), 403, "ADDRESS_NOT_ALLOWED")


def test_behind_a_proxy_the_forwarded_address_counts_and_a_spoofed_one_does_not(as_alice):
    secret = make_key(as_alice, allowed_ips=["203.0.113.0/24"]).json()["key"]
    proxy = {"REMOTE_ADDR": "10.0.0.2"}

    with override_settings(REST_FRAMEWORK={**_rest(), "NUM_PROXIES": 1}):
        real = with_key(secret, **proxy, HTTP_X_FORWARDED_FOR="203.0.113.5").get("/api/auth/me")
        # The client wrote its own X-Forwarded-For; the proxy appended the real address.
        spoofed = with_key(secret, **proxy, HTTP_X_FORWARDED_FOR="203.0.113.5, 198.51.100.1").get("/api/auth/me")
    direct = with_key(secret, **proxy, HTTP_X_FORWARDED_FOR="203.0.113.5").get("/api/auth/me")

    assert real.status_code == 200
    assert_error(spoofed, 403, "ADDRESS_NOT_ALLOWED")
    # Without NUM_PROXIES the header is not believed at all: the peer is 10.0.0.2.
    assert_error(direct, 403, "ADDRESS_NOT_ALLOWED")


def _rest():
    return django_settings.REST_FRAMEWORK


# --- Last used, throttling ----------------------------------------------------------------------


def test_last_used_is_recorded(as_alice, read_key):
    assert read_key["last_used_at"] is None

    with_key(read_key["key"]).get("/api/auth/me")

    used = as_alice.get("/api/keys").json()[0]["last_used_at"]
    assert used is not None
    assert abs((timezone.now() - ApiKey.objects.get().last_used_at).total_seconds()) < 60


def test_each_key_is_throttled_on_its_own_at_the_users_rate(alice, as_alice, settings):
    first = keys.api_key_create(user=alice, name="one", scopes=["read", "trade"])[1]
    second = keys.api_key_create(user=alice, name="two", scopes=["read", "trade"])[1]
    settings.REST_FRAMEWORK = {
        **settings.REST_FRAMEWORK,
        "DEFAULT_THROTTLE_RATES": {**settings.REST_FRAMEWORK["DEFAULT_THROTTLE_RATES"], "user": "3/minute"},
    }

    answers = [with_key(first).get("/api/auth/me").status_code for _ in range(4)]

    assert answers == [200, 200, 200, 429]
    throttled = with_key(first).get("/api/auth/me")
    assert_error(throttled, 429, "THROTTLED")
    assert int(throttled["Retry-After"]) >= 1
    # Another key of the same user, and the user's own login, count on their own.
    assert with_key(second).get("/api/auth/me").status_code == 200
    assert as_alice.get("/api/auth/me").status_code == 200


def test_a_keys_order_commands_count_against_the_orders_rate(trade_key, settings):
    settings.REST_FRAMEWORK = {
        **settings.REST_FRAMEWORK,
        "DEFAULT_THROTTLE_RATES": {**settings.REST_FRAMEWORK["DEFAULT_THROTTLE_RATES"], "orders": "2/minute"},
    }
    client = with_key(trade_key["key"])

    codes = [client.post("/api/orders", ORDER, format="json").status_code for _ in range(3)]

    assert codes == [201, 201, 429]
    assert client.get("/api/orders").status_code == 200  # reads are not order commands


# --- Schema ------------------------------------------------------------------------------------


def test_the_schema_documents_keys_and_the_key_scheme(anon):
    schema = anon.get("/api/schema/", HTTP_ACCEPT="application/json").json()

    assert {"/api/keys", "/api/keys/{key_id}"} <= set(schema["paths"])
    assert schema["components"]["securitySchemes"]["ApiKey"]["type"] == "apiKey"
