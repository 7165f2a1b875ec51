"""Registration, login, token refresh and logout, and what the API does with bad tokens."""

import base64
import json
from datetime import timedelta

import jwt
import pytest
from django.contrib.auth.hashers import identify_hasher
from django.urls import reverse
from rest_framework.test import APIClient
from rest_framework_simplejwt.tokens import AccessToken, RefreshToken

from accounts.models import ApiLogin, Balance, User
from accounts.tokens import api_login_start
from tests.api_support import *  # noqa: F403
from tests.api_support import CONFIGURED_HASHERS, assert_error

pytestmark = pytest.mark.django_db

USER_FIELDS = {"id", "username", "email", "is_staff", "date_joined"}


def register(client, **fields):
    body = {"username": "carol", "email": "carol@example.com", "password": "a-long-passphrase-2026", **fields}
    return client.post("/api/auth/register", body, format="json")


def login(client, username="alice", password="alice-pass-2026"):
    return client.post("/api/auth/login", {"username": username, "password": password}, format="json")


def bearer(token) -> APIClient:
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {token}")
    return client


def b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


# --- Register --------------------------------------------------------------------------------


def test_register_creates_the_user_with_the_paper_grant(anon, market, settings):
    settings.PAPER_GRANT = {"USD": "2500", "QTX": "10"}

    response = register(anon)

    assert response.status_code == 201
    body = response.json()
    assert set(body) == USER_FIELDS
    assert body["username"] == "carol"
    assert body["is_staff"] is False
    balances = {b.asset_id: b.available for b in Balance.objects.filter(user__username="carol")}
    assert balances == {"USD": 2500, "QTX": 10}


def test_register_stores_the_password_with_argon2(anon, market, settings):
    settings.PASSWORD_HASHERS = CONFIGURED_HASHERS

    register(anon)

    assert CONFIGURED_HASHERS[0].endswith("Argon2PasswordHasher")
    assert identify_hasher(User.objects.get(username="carol").password).algorithm == "argon2"


@pytest.mark.parametrize(
    ("password", "reason"),
    [("short1", "too short"), ("password123", "too common"), ("8675309123", "entirely numeric"), ("carol-carol", "")],
    ids=["short", "common", "numeric", "like the username"],
)
def test_register_applies_djangos_password_validators(anon, market, password, reason):
    response = register(anon, password=password, username="carol-carol")

    error = assert_error(response, 400, code="INVALID", field="password")
    assert reason in error["message"]
    assert not User.objects.filter(username="carol-carol").exists()


@pytest.mark.parametrize(
    ("fields", "field"),
    [
        ({"username": "carol smith"}, "username"),
        ({"username": "c" * 151}, "username"),
        ({"email": "not-an-email"}, "email"),
        ({"email": None}, "email"),
        ({"password": 12345678}, "password"),
        ({"is_staff": True}, "is_staff"),
    ],
    ids=["space in username", "long username", "bad email", "null email", "numeric password", "unknown field"],
)
def test_register_refuses_bad_fields_by_name(anon, market, fields, field):
    assert_error(register(anon, **fields), 400, code="INVALID", field=field)
    assert not User.objects.filter(is_staff=True).exists()


def test_register_with_a_taken_username_is_409(anon, alice):
    assert_error(register(anon, username="alice"), 409, code="USERNAME_TAKEN", field="username")


def test_register_refuses_a_name_that_differs_only_in_case(anon, alice):
    error = assert_error(register(anon, username="Alice"), 409, code="USERNAME_TAKEN", field="username")

    assert error["message"] == "That username is taken."
    assert User.objects.count() == 2  # alice and the fee account


def test_register_refuses_latin_and_cyrillic_letters_in_one_name(anon, alice):
    response = register(anon, username="\u0430lice")  # a Cyrillic "а", then Latin letters

    error = assert_error(response, 400, code="INVALID", field="username")
    assert error["message"] == "username: Use letters of one script: this name mixes Cyrillic and Latin letters."


def test_register_stores_the_nfkc_form_of_the_name(anon, market):
    response = register(anon, username="\uff43\uff41\uff52\uff4f\uff4c")  # "ｃａｒｏｌ"

    assert response.status_code == 201 and response.json()["username"] == "carol"


def test_register_refuses_a_name_that_nfkc_makes_too_long(anon, market):
    name = "\ufb03" * 60  # the ligature "ﬃ": 60 characters, 180 once normalised

    assert_error(register(anon, username=name), 400, code="INVALID", field="username")


def test_register_accepts_a_name_in_another_single_script(anon, market):
    assert register(anon, username="кэрол").json()["username"] == "кэрол"


# --- Login -----------------------------------------------------------------------------------


def test_login_answers_access_refresh_expiry_and_user(anon, alice, settings):
    response = login(anon)

    assert response.status_code == 200
    body = response.json()
    assert set(body) == {"access", "refresh", "expires_in", "user"}
    assert body["expires_in"] == settings.ACCESS_TOKEN_EXPIRE_MINUTES * 60
    assert body["user"]["username"] == "alice"
    assert bearer(body["access"]).get("/api/auth/me").json()["username"] == "alice"


@pytest.mark.parametrize(
    "spelt", ["ALICE", "Alice", "\uff41\uff4c\uff49\uff43\uff45"], ids=["upper", "title", "full width"]
)
def test_login_finds_the_username_however_it_is_spelt(anon, alice, spelt):
    response = login(anon, username=spelt)

    assert response.status_code == 200 and response.json()["user"]["username"] == "alice"


def test_login_with_a_wrong_password_is_401(anon, alice):
    response = login(anon, password="wrong")

    assert_error(response, 401, code="INVALID_CREDENTIALS")
    assert response.headers["WWW-Authenticate"].startswith("Bearer")


def test_login_of_an_unknown_user_answers_like_a_wrong_password(anon, alice):
    assert login(anon, username="nobody").json() == login(anon, password="wrong").json()


def test_login_ignores_a_stale_token_sent_along(alice):
    assert (
        bearer("garbage")
        .post("/api/auth/login", {"username": "alice", "password": "alice-pass-2026"}, format="json")
        .status_code
        == 200
    )


# --- Lockout ---------------------------------------------------------------------------------


def fail_logins(client, times, username="alice"):
    return [login(client, username=username, password="wrong").status_code for _ in range(times)]


def test_repeated_failed_logins_lock_the_username_with_retry_after(anon, alice, settings):
    assert fail_logins(anon, settings.LOGIN_LOCKOUT_ATTEMPTS) == [401] * (settings.LOGIN_LOCKOUT_ATTEMPTS - 1) + [429]

    response = login(anon)  # the right password, too late

    assert_error(response, 429, code="LOGIN_LOCKED")
    assert 0 < int(response.headers["Retry-After"]) <= settings.LOGIN_LOCKOUT_MINUTES * 60


def test_failures_count_against_the_username_however_it_is_spelt(anon, alice, settings):
    spellings = ["alice", "ALICE", "\uff41\uff4c\uff49\uff43\uff45", "Alice", "\uff21\uff2c\uff29\uff23\uff25"]
    for n in range(settings.LOGIN_LOCKOUT_ATTEMPTS):
        login(anon, username=spellings[n % len(spellings)], password="wrong")

    assert_error(login(anon), 429, code="LOGIN_LOCKED")


def test_a_successful_login_clears_the_count(anon, alice, settings):
    fail_logins(anon, settings.LOGIN_LOCKOUT_ATTEMPTS - 1)
    assert login(anon).status_code == 200

    assert fail_logins(anon, settings.LOGIN_LOCKOUT_ATTEMPTS - 1) == [401] * (settings.LOGIN_LOCKOUT_ATTEMPTS - 1)
    assert login(anon).status_code == 200


def test_the_lock_ends_after_its_time(anon, alice, settings, monkeypatch):
    import accounts.lockout

    fail_logins(anon, settings.LOGIN_LOCKOUT_ATTEMPTS)
    later = accounts.lockout.time.time() + settings.LOGIN_LOCKOUT_MINUTES * 60 + 1
    monkeypatch.setattr(accounts.lockout.time, "time", lambda: later)

    assert login(anon).status_code == 200


def test_failed_web_logins_lock_the_api_login_too(client, anon, alice, settings):
    for _ in range(settings.LOGIN_LOCKOUT_ATTEMPTS):
        client.post(reverse("login"), {"username": "alice", "password": "wrong"})

    assert_error(login(anon), 429, code="LOGIN_LOCKED")


def test_failed_api_logins_lock_the_web_login_too(client, anon, alice, settings):
    fail_logins(anon, settings.LOGIN_LOCKOUT_ATTEMPTS)

    response = client.post(reverse("login"), {"username": "alice", "password": "alice-pass-2026"})

    assert response.status_code == 200  # the form again, not a redirect
    assert "_auth_user_id" not in client.session


def test_failed_logins_lock_the_admin_login_too(client, anon, operator, settings):
    fail_logins(anon, settings.LOGIN_LOCKOUT_ATTEMPTS, username="operator")

    # The admin signs in through the site's login page (accounts.admin_site).
    to_login = client.get("/admin/login/?next=/admin/")
    assert to_login.status_code == 302 and to_login["Location"] == "/accounts/login/?next=/admin/"
    response = client.post(to_login["Location"], {"username": "operator", "password": "operator-pass-2026"})

    assert response.status_code == 200
    assert "_auth_user_id" not in client.session


def test_many_usernames_failing_from_one_address_lock_the_address(anon, alice, settings):
    settings.LOGIN_LOCKOUT_IP_ATTEMPTS = 6
    for n in range(6):
        login(anon, username=f"guess-{n}", password="wrong")

    assert_error(login(anon), 429, code="LOGIN_LOCKED")
    other_address = APIClient(REMOTE_ADDR="10.1.2.3")
    assert login(other_address).status_code == 200


def test_wrong_passwords_for_alice_from_one_address_do_not_lock_her_out_from_another(alice, settings):
    guesser, alice_at_home = APIClient(REMOTE_ADDR="203.0.113.7"), APIClient(REMOTE_ADDR="198.51.100.20")

    assert fail_logins(guesser, settings.LOGIN_LOCKOUT_ATTEMPTS)[-1] == 429

    assert login(alice_at_home).status_code == 200
    assert_error(login(guesser), 429, code="LOGIN_LOCKED")  # the right password, from the locked address


def test_behind_a_proxy_the_lock_is_on_the_forwarded_client_address(alice, settings):
    settings.REST_FRAMEWORK = {**settings.REST_FRAMEWORK, "NUM_PROXIES": 1}

    def through_proxy(client_address):
        return APIClient(REMOTE_ADDR="10.0.0.2", HTTP_X_FORWARDED_FOR=client_address)

    fail_logins(through_proxy("203.0.113.7"), settings.LOGIN_LOCKOUT_ATTEMPTS)

    assert login(through_proxy("198.51.100.20")).status_code == 200
    assert_error(login(through_proxy("203.0.113.7")), 429, code="LOGIN_LOCKED")


def test_failures_from_many_addresses_do_not_add_up_to_a_lock(alice, settings):
    for n in range(settings.LOGIN_LOCKOUT_ATTEMPTS * 2):
        login(APIClient(REMOTE_ADDR=f"203.0.113.{n + 1}"), password="wrong")

    assert login(APIClient(REMOTE_ADDR="198.51.100.20")).status_code == 200


# --- Refresh and logout ----------------------------------------------------------------------


def test_refresh_rotates_the_pair_and_refuses_the_old_refresh_token(anon, alice):
    first = login(anon).json()

    rotated = anon.post("/api/auth/refresh", {"refresh": first["refresh"]}, format="json")

    assert rotated.status_code == 200
    assert set(rotated.json()) == {"access", "refresh", "expires_in"}
    assert rotated.json()["refresh"] != first["refresh"]
    assert bearer(rotated.json()["access"]).get("/api/auth/me").status_code == 200
    replayed = anon.post("/api/auth/refresh", {"refresh": first["refresh"]}, format="json")
    assert_error(replayed, 401, code="TOKEN_INVALID", field="refresh")


def test_refresh_with_an_access_token_is_401(anon, alice):
    access = login(anon).json()["access"]

    assert_error(anon.post("/api/auth/refresh", {"refresh": access}, format="json"), 401, code="TOKEN_INVALID")


def test_refresh_for_a_deactivated_user_is_401(anon, alice):
    refresh = login(anon).json()["refresh"]
    User.objects.filter(pk=alice.pk).update(is_active=False)

    assert_error(anon.post("/api/auth/refresh", {"refresh": refresh}, format="json"), 401, code="TOKEN_INVALID")


def test_logout_revokes_the_refresh_token(anon, alice):
    tokens = login(anon).json()

    response = anon.post("/api/auth/logout", {"refresh": tokens["refresh"]}, format="json")

    assert response.status_code == 204
    refreshed = anon.post("/api/auth/refresh", {"refresh": tokens["refresh"]}, format="json")
    assert_error(refreshed, 401, code="TOKEN_INVALID")


def refresh(client, token):
    return client.post("/api/auth/refresh", {"refresh": token}, format="json")


def test_reusing_a_rotated_refresh_token_ends_the_whole_login(anon, alice):
    first = login(anon).json()
    elsewhere = login(anon).json()  # another login of alice's, on another device
    second = refresh(anon, first["refresh"]).json()

    replayed = refresh(anon, first["refresh"])  # a thief's copy, or the owner's after the thief's

    error = assert_error(replayed, 401, code="TOKEN_INVALID", field="refresh")
    assert "used already" in error["message"]
    # Every token the login gave out is dead: whoever held the rotated token holds nothing.
    assert_error(refresh(anon, second["refresh"]), 401, code="TOKEN_INVALID", field="refresh")
    assert_error(bearer(second["access"]).get("/api/auth/me"), 401, code="TOKEN_INVALID")
    assert_error(bearer(first["access"]).get("/api/auth/me"), 401, code="TOKEN_INVALID")
    assert ApiLogin.objects.get(pk=api_login_id(first["refresh"])).end_reason == "reuse"
    # Other logins go on.
    assert bearer(elsewhere["access"]).get("/api/auth/me").status_code == 200
    assert refresh(anon, elsewhere["refresh"]).status_code == 200


def test_a_refreshed_pair_belongs_to_the_same_login(anon, alice):
    first = login(anon).json()

    second = refresh(anon, first["refresh"]).json()

    assert api_login_id(second["access"]) == api_login_id(second["refresh"]) == api_login_id(first["refresh"])


def test_two_refreshes_racing_with_one_token_get_one_pair(anon, alice):
    """The second is a reuse as far as the server can tell; the login ends (the client logs in again)."""
    first = login(anon).json()

    answers = [refresh(anon, first["refresh"]).status_code for _ in range(2)]

    assert answers == [200, 401]


def test_logout_ends_the_access_token_at_once(anon, alice):
    tokens = login(anon).json()
    me = bearer(tokens["access"])
    assert me.get("/api/auth/me").status_code == 200

    assert anon.post("/api/auth/logout", {"refresh": tokens["refresh"]}, format="json").status_code == 204

    error = assert_error(me.get("/api/auth/me"), 401, code="TOKEN_INVALID")
    assert (
        error["message"]
        == "The access token was refused: its login has ended (logged out or signed out); log in again."
    )
    assert_error(refresh(anon, tokens["refresh"]), 401, code="TOKEN_INVALID", field="refresh")


def test_logout_ends_only_that_login(anon, alice):
    phone, laptop = login(anon).json(), login(anon).json()

    anon.post("/api/auth/logout", {"refresh": phone["refresh"]}, format="json")

    assert bearer(laptop["access"]).get("/api/auth/me").status_code == 200
    assert refresh(anon, laptop["refresh"]).status_code == 200


def test_logging_out_twice_is_no_error(anon, alice):
    tokens = login(anon).json()
    anon.post("/api/auth/logout", {"refresh": tokens["refresh"]}, format="json")

    assert anon.post("/api/auth/logout", {"refresh": tokens["refresh"]}, format="json").status_code == 204


def test_an_access_token_that_names_no_login_is_401(alice):
    """Every token the platform gives out names its login (the "fam" claim); a token made
    any other way cannot be signed out, so it is refused."""
    token = AccessToken.for_user(alice)

    error = assert_error(bearer(str(token)).get("/api/auth/me"), 401, code="TOKEN_INVALID")
    assert "belongs to no login" in error["message"]


def test_a_refresh_token_that_names_no_login_is_refused(anon, alice):
    refresh = RefreshToken.for_user(alice)  # as the server made them before logins had families

    error = assert_error(anon.post("/api/auth/refresh", {"refresh": str(refresh)}, format="json"), 401, field="refresh")
    assert error["code"] == "TOKEN_INVALID" and "belongs to no login" in error["message"]


def api_login_id(token: str) -> str:
    return json.loads(base64.urlsafe_b64decode(token.split(".")[1] + "=="))["fam"]


def test_logout_with_garbage_is_401(anon):
    assert_error(anon.post("/api/auth/logout", {"refresh": "garbage"}, format="json"), 401, code="TOKEN_INVALID")


def test_logout_without_a_token_is_400(anon):
    assert_error(anon.post("/api/auth/logout", {}, format="json"), 400, field="refresh")


# --- Who am I, and bad tokens ---------------------------------------------------------------------


def test_me_answers_the_user(as_alice):
    response = as_alice.get("/api/auth/me")

    assert response.status_code == 200
    assert response.json()["username"] == "alice"
    assert set(response.json()) == USER_FIELDS


def test_no_token_is_401_not_authenticated(anon):
    response = anon.get("/api/auth/me")

    assert_error(response, 401, code="NOT_AUTHENTICATED")
    assert response.headers["WWW-Authenticate"] == 'Bearer realm="api"'


@pytest.mark.parametrize(
    "header",
    ["Bearer garbage", "Bearer ", "Bearer a.b.c", "Bearer one two"],
    ids=["garbage", "empty", "three dots of garbage", "two words"],
)
def test_a_garbage_token_is_401(alice, header):
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=header)

    assert_error(client.get("/api/auth/me"), 401)


def test_another_scheme_than_bearer_is_not_authenticated(alice):
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION="Basic YWxpY2U6YWxpY2UtcGFzcy0yMDI2")

    assert_error(client.get("/api/auth/me"), 401, code="NOT_AUTHENTICATED")


def test_an_expired_token_is_401(alice):
    token = api_login_start(user=alice).access_token
    token.set_exp(lifetime=-timedelta(seconds=1))

    error = assert_error(bearer(str(token)).get("/api/auth/me"), 401, code="TOKEN_INVALID")
    assert "expired" in error["message"]


def test_an_unsigned_alg_none_token_is_401(alice):
    payload = api_login_start(user=alice).access_token.payload
    header = {"alg": "none", "typ": "JWT"}
    token = f"{b64(json.dumps(header).encode())}.{b64(json.dumps(payload).encode())}."

    assert_error(bearer(token).get("/api/auth/me"), 401, code="TOKEN_INVALID")


def test_a_token_signed_with_another_key_is_401(alice):
    payload = api_login_start(user=alice).access_token.payload
    token = jwt.encode(payload, "not-the-server-secret-but-long-enough-for-hs256", algorithm="HS256")

    assert_error(bearer(token).get("/api/auth/me"), 401, code="TOKEN_INVALID")


def test_a_token_with_a_forged_user_id_is_401(alice, bob):
    header, payload, signature = str(api_login_start(user=alice).access_token).split(".")
    claims = json.loads(base64.urlsafe_b64decode(payload + "=="))
    claims["user_id"] = str(bob.pk)
    forged = f"{header}.{b64(json.dumps(claims).encode())}.{signature}"

    assert_error(bearer(forged).get("/api/auth/me"), 401, code="TOKEN_INVALID")


def test_a_refresh_token_used_as_an_access_token_is_401(alice):
    refresh = api_login_start(user=alice)

    error = assert_error(bearer(str(refresh)).get("/api/auth/me"), 401, code="TOKEN_INVALID")
    assert "wrong type" in error["message"]


def test_a_token_of_a_deactivated_user_is_401(alice):
    token = api_login_start(user=alice).access_token
    User.objects.filter(pk=alice.pk).update(is_active=False)

    assert_error(bearer(str(token)).get("/api/auth/me"), 401, code="TOKEN_INVALID")


def test_checking_a_token_against_its_login_costs_no_query_per_request(alice, django_assert_num_queries):
    """The user and their ended logins are read together, then remembered for a few seconds."""
    client = bearer(api_login_start(user=alice).access_token)
    with django_assert_num_queries(2):  # alice's row, and her lately ended logins
        assert client.get("/api/auth/me").status_code == 200

    with django_assert_num_queries(0):
        assert client.get("/api/auth/me").status_code == 200


def test_a_user_saved_deactivated_is_refused_at_once_though_their_row_was_just_read(alice):
    """The process keeps a user it authenticated for a few seconds; saving the user
    forgets it at once (other processes: within USER_CACHE_SECONDS)."""
    client = bearer(api_login_start(user=alice).access_token)
    assert client.get("/api/auth/me").status_code == 200  # alice is remembered now

    alice.is_active = False
    alice.save()

    assert_error(client.get("/api/auth/me"), 401, code="TOKEN_INVALID")


# --- Throttling ---------------------------------------------------------------------------------


def test_auth_endpoints_are_throttled_per_address_with_retry_after(anon, alice, settings):
    settings.REST_FRAMEWORK = {
        **settings.REST_FRAMEWORK,
        "DEFAULT_THROTTLE_RATES": {**settings.REST_FRAMEWORK["DEFAULT_THROTTLE_RATES"], "auth": "2/minute"},
    }

    statuses = [anon.post("/api/auth/refresh", {"refresh": "x"}, format="json").status_code for _ in range(3)]
    throttled = anon.post("/api/auth/refresh", {"refresh": "x"}, format="json")

    assert statuses == [401, 401, 429]
    assert_error(throttled, 429, code="THROTTLED")
    assert int(throttled.headers["Retry-After"]) >= 1
