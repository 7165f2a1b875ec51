"""The account's security: password change and reset, two-factor login (web, admin, API), sessions."""

import re
import time

import pytest
from django.core import mail
from django.test import Client
from django_otp.oath import TOTP
from django_otp.plugins.otp_totp.models import TOTPDevice
from rest_framework.test import APIClient
from rest_framework_simplejwt.token_blacklist.models import OutstandingToken

from accounts.models import Session, User

PASSWORD = "correct-horse-battery-2026"
NEW_PASSWORD = "a-brand-new-passphrase-2026"


@pytest.fixture(autouse=True)
def fast_password_hashing(settings):
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]


@pytest.fixture
def dave(db):
    return User.objects.create_user(username="dave", email="dave@example.com", password=PASSWORD)


@pytest.fixture
def operator(db):
    return User.objects.create_user(username="operator", email="op@example.com", password=PASSWORD, is_staff=True)


def browser(**meta):
    return Client(HTTP_USER_AGENT="Mozilla/5.0 (X11; Linux x86_64) Firefox/130.0", **meta)


def log_in(client, username="dave", password=PASSWORD, next_path=""):
    return client.post(
        f"/accounts/login/{'?next=' + next_path if next_path else ''}", {"username": username, "password": password}
    )


def code_for(device, steps_ahead=0):
    """The code an authenticator app would show, `steps_ahead` 30-second steps from now
    (the device accepts one step either side, and each step's code once)."""
    totp = TOTP(device.bin_key, device.step, device.t0, device.digits)
    totp.time = time.time() + steps_ahead * device.step
    return f"{totp.token():06d}"


def enrolled(user):
    """A confirmed TOTP device for the user, as the enrolment pages leave it."""
    return TOTPDevice.objects.create(user=user, name="Authenticator app", confirmed=True)


# --- Password ------------------------------------------------------------------------------


def test_dave_changes_his_password_and_his_other_sessions_are_signed_out(dave):
    laptop, phone = browser(), browser()
    assert log_in(laptop).status_code == 302 and log_in(phone).status_code == 302

    response = laptop.post(
        "/accounts/password/",
        {"old_password": PASSWORD, "new_password1": NEW_PASSWORD, "new_password2": NEW_PASSWORD},
        follow=True,
    )

    assert "Password changed and 1 other session signed out." in response.content.decode()
    assert laptop.get("/portfolio/").status_code == 200  # still signed in here
    assert phone.get("/portfolio/").status_code == 302  # not there
    assert Session.objects.filter(user=dave).count() == 1
    dave.refresh_from_db()
    assert dave.check_password(NEW_PASSWORD)


def test_a_wrong_old_password_changes_nothing(dave):
    client = browser()
    log_in(client)

    response = client.post(
        "/accounts/password/", {"old_password": "nope", "new_password1": NEW_PASSWORD, "new_password2": NEW_PASSWORD}
    )

    assert response.status_code == 200
    assert "Your old password was entered incorrectly." in response.content.decode()
    dave.refresh_from_db()
    assert dave.check_password(PASSWORD)


def test_a_forgotten_password_is_reset_through_the_emailed_link(dave, settings):
    settings.EMAIL_BACKEND = "django.core.mail.backends.locmem.EmailBackend"
    signed_in_elsewhere = browser()
    log_in(signed_in_elsewhere)
    api_login = APIClient().post("/api/auth/login", {"username": "dave", "password": PASSWORD}, format="json").json()
    client = Client()
    assert "Forgot your password?" in client.get("/accounts/login/").content.decode()

    response = client.post("/accounts/password/reset/", {"email": "DAVE@example.com"})

    assert response.status_code == 302 and response["Location"] == "/accounts/password/reset/sent/"
    assert len(mail.outbox) == 1 and mail.outbox[0].to == ["dave@example.com"]
    link = re.search(rf"{settings.SITE_URL}(/accounts/reset/\S+/)", mail.outbox[0].body).group(1)
    form_page = client.get(link, follow=True)  # Django moves the token out of the address
    assert "Choose a new password" in form_page.content.decode()
    done = client.post(form_page.redirect_chain[-1][0], {"new_password1": NEW_PASSWORD, "new_password2": NEW_PASSWORD})
    assert done.status_code == 302 and done["Location"] == "/accounts/reset/done/"

    assert log_in(Client(), password=NEW_PASSWORD).status_code == 302
    assert log_in(Client()).status_code == 200  # the old password is refused
    assert signed_in_elsewhere.get("/portfolio/").status_code == 302
    refreshed = APIClient().post("/api/auth/refresh", {"refresh": api_login["refresh"]}, format="json")
    assert refreshed.status_code == 401  # the API's login ended too
    # The link works once.
    assert "That link has expired" in client.get(link, follow=True).content.decode()


def api_credentials(**key_fields):
    """dave's API login and one API key, as his programs hold them."""
    tokens = api_login().json()
    bearer = {"HTTP_AUTHORIZATION": f"Bearer {tokens['access']}"}
    key = APIClient().post("/api/keys", {"name": "bot", **key_fields}, format="json", **bearer).json()["key"]
    return tokens, key


def still_accepted(tokens, key) -> dict:
    """What each credential gets now, each on its own door."""
    return {
        "access": APIClient(HTTP_AUTHORIZATION=f"Bearer {tokens['access']}").get("/api/auth/me").status_code,
        "refresh": APIClient().post("/api/auth/refresh", {"refresh": tokens["refresh"]}, format="json").status_code,
        "key": APIClient(HTTP_AUTHORIZATION=f"Api-Key {key}").get("/api/user/balances").status_code,
    }


def test_the_password_page_says_a_change_revokes_the_api_keys(dave):
    client = browser()
    log_in(client)
    api_credentials()
    api_credentials()

    page = client.get("/accounts/password/").content.decode()

    assert "signs you out of every other session, web and API, and revokes" in page
    assert "your 2 API keys: programs that use them will need new ones" in page


def test_a_password_change_ends_the_api_logins_and_revokes_the_api_keys(dave):
    client = browser()
    log_in(client)
    tokens, key = api_credentials()
    assert APIClient(HTTP_AUTHORIZATION=f"Bearer {tokens['access']}").get("/api/auth/me").status_code == 200

    response = client.post(
        "/accounts/password/",
        {"old_password": PASSWORD, "new_password1": NEW_PASSWORD, "new_password2": NEW_PASSWORD},
        follow=True,
    )

    assert "Password changed and 1 API key revoked." in response.content.decode()
    assert still_accepted(tokens, key) == {"access": 401, "refresh": 401, "key": 401}
    assert "No keys yet." in client.get("/accounts/api-keys/").content.decode()
    assert client.get("/portfolio/").status_code == 200  # this session stays


def test_a_password_reset_ends_the_api_logins_and_revokes_the_api_keys(dave, settings):
    settings.EMAIL_BACKEND = "django.core.mail.backends.locmem.EmailBackend"
    tokens, key = api_credentials()
    client = Client()
    client.post("/accounts/password/reset/", {"email": "dave@example.com"})
    link = re.search(r"https?://[^/\s]+(/accounts/reset/\S+/)", mail.outbox[0].body).group(1)
    form_page = client.get(link, follow=True)
    assert "revokes your API keys" in form_page.content.decode()

    client.post(form_page.redirect_chain[-1][0], {"new_password1": NEW_PASSWORD, "new_password2": NEW_PASSWORD})

    assert still_accepted(tokens, key) == {"access": 401, "refresh": 401, "key": 401}


def test_signing_out_everywhere_keeps_the_api_keys(dave):
    """Keys are programs' credentials, revoked one by one; signing out ends logins only."""
    here = browser()
    log_in(here)
    tokens, key = api_credentials()

    here.post("/accounts/sessions/", {"all": "1"})

    assert still_accepted(tokens, key) == {"access": 401, "refresh": 401, "key": 200}


def test_a_reset_for_an_unknown_address_sends_nothing_and_says_the_same(db, settings):
    settings.EMAIL_BACKEND = "django.core.mail.backends.locmem.EmailBackend"
    response = Client().post("/accounts/password/reset/", {"email": "nobody@example.com"}, follow=True)

    assert "If an account has that address" in response.content.decode()
    assert mail.outbox == []


def reset(email, client=None, **meta):
    return (client or Client(**meta)).post("/accounts/password/reset/", {"email": email})


def reset_rates(settings, per_address, per_client):
    settings.REST_FRAMEWORK = {
        **settings.REST_FRAMEWORK,
        "DEFAULT_THROTTLE_RATES": {
            **settings.REST_FRAMEWORK["DEFAULT_THROTTLE_RATES"],
            "reset_email": f"{per_address}/hour",
            "reset_client": f"{per_client}/hour",
        },
    }


def test_the_reset_link_is_built_from_site_url_never_the_host_header(dave, settings):
    settings.EMAIL_BACKEND = "django.core.mail.backends.locmem.EmailBackend"
    settings.SITE_URL = "https://trade.example.com"

    response = reset("dave@example.com", HTTP_HOST="localhost:6666")

    assert response.status_code == 302
    body = mail.outbox[0].body
    assert re.search(r"^https://trade\.example\.com/accounts/reset/\S+/$", body, re.M), body
    assert "6666" not in body and "localhost" not in body


def test_reset_emails_to_one_address_are_throttled_from_every_client(dave, settings):
    settings.EMAIL_BACKEND = "django.core.mail.backends.locmem.EmailBackend"
    rate = 5
    reset_rates(settings, per_address=rate, per_client=20)

    answers = [reset("dave@example.com", REMOTE_ADDR=f"203.0.113.{n}").status_code for n in range(1, 21)]

    assert len(mail.outbox) == rate
    assert answers == [302] * rate + [429] * (20 - rate)
    # Spelt otherwise, it is the same address.
    assert reset("DAVE@EXAMPLE.COM", REMOTE_ADDR="198.51.100.1").status_code == 429
    refused = reset("dave@example.com", REMOTE_ADDR="198.51.100.2")
    assert "Too many reset emails were asked for: try again in" in refused.content.decode()


def test_reset_requests_from_one_client_are_throttled_whatever_the_addresses(dave, settings):
    settings.EMAIL_BACKEND = "django.core.mail.backends.locmem.EmailBackend"
    rate = 20
    reset_rates(settings, per_address=5, per_client=rate)
    client = Client(REMOTE_ADDR="203.0.113.7")

    answers = [reset(f"nobody-{n}@example.com", client).status_code for n in range(rate)]
    refused = reset("dave@example.com", client)

    assert answers == [302] * rate
    assert refused.status_code == 429 and mail.outbox == []
    assert reset("dave@example.com", REMOTE_ADDR="198.51.100.20").status_code == 302  # from elsewhere
    assert len(mail.outbox) == 1


def test_a_throttled_reset_says_nothing_of_whether_the_address_has_an_account(dave, settings):
    reset_rates(settings, per_address=1, per_client=20)

    def refusal(email):
        reset(email, REMOTE_ADDR="203.0.113.1")
        page = reset(email, REMOTE_ADDR="203.0.113.2")
        return page.status_code, re.search(r'<p class="error" role="alert">([^<]*)<', page.content.decode()).group(1)

    known, unknown = refusal("dave@example.com"), refusal("nobody@example.com")

    assert known[0] == unknown[0] == 429
    assert re.sub(r"\d+", "N", known[1]) == re.sub(r"\d+", "N", unknown[1])


# --- Two-factor login: enrolment -------------------------------------------------------------


def test_dave_enrols_scanning_the_qr_code_and_confirming_a_code(dave):
    client = browser()
    log_in(client)
    assert "Set up two-factor login" in client.get("/accounts/two-factor/").content.decode()

    page = client.get("/accounts/two-factor/enrol/").content.decode()

    assert re.search(r'<img class="qr" src="data:image/svg\+xml;charset=utf-8,%3Csvg', page)
    device = TOTPDevice.objects.get(user=dave)
    assert not device.confirmed
    secret = re.search(r"data-secret>([A-Z2-7 ]+)<", page).group(1).replace(" ", "")
    assert secret == device.config_url.split("secret=")[1].split("&")[0]
    # Reloading the page shows the same secret until it is confirmed.
    assert secret in client.get("/accounts/two-factor/enrol/").content.decode().replace(" ", "")

    wrong = client.post("/accounts/two-factor/enrol/", {"code": "000000" if code_for(device) != "000000" else "111111"})
    assert wrong.status_code == 422 and "That code was wrong" in wrong.content.decode()
    device.refresh_from_db()
    device.throttle_reset()  # django-otp slows down the next try after a failure
    response = client.post("/accounts/two-factor/enrol/", {"code": code_for(device)}, follow=True)

    assert "Two-factor login is on" in response.content.decode()
    device.refresh_from_db()
    assert device.confirmed
    assert client.session["otp_device_id"] == device.persistent_id  # this session counts as verified


def test_enrolment_signs_out_the_other_sessions(dave):
    client, other = browser(), browser()
    log_in(client)
    log_in(other)
    client.get("/accounts/two-factor/enrol/")
    device = TOTPDevice.objects.get(user=dave)

    client.post("/accounts/two-factor/enrol/", {"code": code_for(device)})

    assert other.get("/portfolio/").status_code == 302
    assert client.get("/portfolio/").status_code == 200


def test_turning_it_off_takes_a_current_code(dave):
    device = enrolled(dave)
    client = browser()
    client.force_login(dave)

    refused = client.post("/accounts/two-factor/disable/", {"code": "12345"})
    assert refused.status_code == 422 and TOTPDevice.objects.filter(user=dave).exists()

    response = client.post("/accounts/two-factor/disable/", {"code": code_for(device)}, follow=True)

    assert "Two-factor login is off." in response.content.decode()
    assert not TOTPDevice.objects.filter(user=dave).exists()


# --- Two-factor login: logging in ----------------------------------------------------------


def test_with_two_factor_the_password_leads_to_the_code_step(dave):
    device = enrolled(dave)
    client = browser()

    response = log_in(client, next_path="/portfolio/")

    assert response.status_code == 302 and response["Location"] == "/accounts/login/code/"
    assert "_auth_user_id" not in client.session  # nobody is signed in yet
    assert client.get("/portfolio/").status_code == 302
    page = client.get("/accounts/login/code/").content.decode()
    assert 'autocomplete="one-time-code"' in page

    wrong = client.post("/accounts/login/code/", {"code": "abc"})
    assert wrong.status_code == 422 and "Enter the 6 digits" in wrong.content.decode()
    response = client.post("/accounts/login/code/", {"code": code_for(device)})

    assert response.status_code == 302 and response["Location"] == "/portfolio/"
    assert client.get("/portfolio/").status_code == 200


def test_a_code_works_once(dave):
    device = enrolled(dave)
    code = code_for(device)
    first, second = browser(), browser()
    log_in(first)
    log_in(second)

    assert first.post("/accounts/login/code/", {"code": code}).status_code == 302
    replay = second.post("/accounts/login/code/", {"code": code})

    assert replay.status_code == 422 and "already used" in replay.content.decode()


def test_wrong_codes_are_slowed_down(dave):
    device = enrolled(dave)
    client = browser()
    log_in(client)
    wrong = "000000" if code_for(device) != "000000" else "111111"
    client.post("/accounts/login/code/", {"code": wrong})

    # Right after a failure even the right code waits its turn (1 s, then 2, 4, ...).
    response = client.post("/accounts/login/code/", {"code": code_for(device)})

    assert response.status_code == 422 and "Too many wrong codes: try again in" in response.content.decode()


def test_the_code_step_times_out(dave, monkeypatch):
    enrolled(dave)
    client = browser()
    log_in(client)
    monkeypatch.setattr(time, "time", lambda real=time.time: real() + 301)

    response = client.get("/accounts/login/code/", follow=True)

    assert response.redirect_chain[-1][0] == "/accounts/login/"
    assert "timed out" in response.content.decode()


def test_the_code_step_without_a_password_goes_back_to_the_login(db):
    response = Client().get("/accounts/login/code/")
    assert response.status_code == 302 and response["Location"] == "/accounts/login/"


def test_a_locked_out_username_never_reaches_the_code_step(dave, settings):
    enrolled(dave)
    client = browser()
    for _ in range(settings.LOGIN_LOCKOUT_ATTEMPTS):
        log_in(client, password="wrong")

    response = log_in(client)  # the right password, while locked

    assert response.status_code == 200
    assert "accounts.pending_login" not in client.session


def test_a_locked_out_web_login_says_it_is_a_lockout_and_when_to_try_again(dave, settings):
    client = browser()
    for _ in range(settings.LOGIN_LOCKOUT_ATTEMPTS - 1):
        assert "Please enter a correct username and password" in log_in(client, password="wrong").content.decode()
    locking = log_in(client, password="wrong").content.decode()  # the failure that locks it

    response = log_in(client)  # the right password, while locked

    minutes = settings.LOGIN_LOCKOUT_MINUTES
    for page in (locking, response.content.decode()):
        assert "Too many failed logins: logging in with this username from your address is locked." in page
        assert f"Try again in {minutes} minutes." in page
        assert "enter a correct username and password" not in page
    assert "_auth_user_id" not in client.session


# --- The admin ----------------------------------------------------------------------------------


def test_the_admin_signs_in_through_the_sites_login_and_its_code_step(operator):
    device = enrolled(operator)
    client = browser()

    to_login = client.get("/admin/", follow=True).redirect_chain
    assert to_login[-1][0] == "/accounts/login/?next=/admin/"
    log_in(client, username="operator", next_path="/admin/")
    response = client.post("/accounts/login/code/", {"code": code_for(device)})

    assert response["Location"] == "/admin/"
    assert client.get("/admin/").status_code == 200


def test_staff_must_set_it_up_when_required(operator, settings):
    settings.OTP_REQUIRED_FOR_STAFF = True
    client = browser()
    log_in(client, username="operator")

    for path in ("/", "/portfolio/", "/admin/", "/accounts/sessions/"):
        response = client.get(path)
        assert response.status_code == 302 and response["Location"] == "/accounts/two-factor/", path
    assert "Staff accounts must use two-factor login" in client.get("/accounts/two-factor/").content.decode()
    assert client.get("/api/auth/me").status_code in (401, 403)
    client.get("/accounts/two-factor/enrol/")
    device = TOTPDevice.objects.get(user=operator)
    client.post("/accounts/two-factor/enrol/", {"code": code_for(device)})

    assert client.get("/admin/").status_code == 200
    assert client.get("/portfolio/").status_code == 200
    # And staff cannot turn it off while it is required.
    assert "Turn off" not in client.get("/accounts/two-factor/").content.decode()


def test_traders_are_not_required_to_use_it(dave, settings):
    settings.OTP_REQUIRED_FOR_STAFF = True
    client = browser()
    log_in(client)
    assert client.get("/portfolio/").status_code == 200


# --- The API --------------------------------------------------------------------------------------


def api_login(**body):
    return APIClient().post("/api/auth/login", {"username": "dave", "password": PASSWORD, **body}, format="json")


def test_the_api_login_asks_an_enrolled_user_for_the_code(dave):
    device = enrolled(dave)

    missing = api_login()
    assert missing.status_code == 401
    assert missing.json()["error"] == {
        "code": "OTP_REQUIRED",
        "message": "This account has two-factor login: send the code from the authenticator app as otp.",
        "field": "otp",
    }
    assert api_login(password="wrong", otp=code_for(device)).json()["error"]["code"] == "INVALID_CREDENTIALS"

    response = api_login(otp=code_for(device))

    assert response.status_code == 200 and response.json()["user"]["username"] == "dave"
    replay = api_login(otp=code_for(device))
    assert replay.status_code == 401 and replay.json()["error"]["code"] == "OTP_INVALID"


def test_wrong_api_codes_are_throttled_with_retry_after(dave):
    device = enrolled(dave)
    wrong = "000000" if code_for(device) != "000000" else "111111"

    assert api_login(otp=wrong).status_code in (401, 429)
    response = api_login(otp=code_for(device))

    assert response.status_code == 429
    assert response.json()["error"]["code"] == "OTP_THROTTLED" and int(response["Retry-After"]) >= 1


def test_the_otp_field_must_be_text(dave):
    enrolled(dave)
    response = api_login(otp=123456)
    assert response.status_code == 400 and response.json()["error"]["field"] == "otp"


def test_a_user_without_two_factor_logs_in_without_a_code(dave):
    assert api_login().status_code == 200


def test_staff_without_two_factor_get_no_tokens_when_it_is_required(operator, settings):
    settings.OTP_REQUIRED_FOR_STAFF = True
    response = APIClient().post("/api/auth/login", {"username": "operator", "password": PASSWORD}, format="json")
    assert response.status_code == 403 and response.json()["error"]["code"] == "TWO_FACTOR_REQUIRED"


# --- Sessions -----------------------------------------------------------------------------------


def test_the_sessions_page_lists_each_sign_in_with_device_address_and_last_use(dave):
    laptop = browser(REMOTE_ADDR="198.51.100.20")
    phone = Client(HTTP_USER_AGENT="Mozilla/5.0 (iPhone; CPU iPhone OS 17_0 like Mac OS X) Safari/604.1")
    log_in(laptop)
    log_in(phone)

    page = laptop.get("/accounts/sessions/").content.decode()

    rows = re.findall(r"<tr data-session=.*?</tr>", page, re.S)
    assert len(rows) == 2
    assert "Firefox on Linux" in rows[0] and "This browser" in rows[0] and "198.51.100.20" in rows[0]
    assert "Safari on iPhone" in rows[1] and "127.0.0.1" in rows[1]
    assert laptop.session.session_key not in page and phone.session.session_key not in page  # never the secret


def test_sign_out_one_session(dave):
    laptop, phone, tablet = browser(), browser(), browser()
    for client in (laptop, phone, tablet):
        log_in(client)
    phone_row = Session.objects.get(session_key=phone.session.session_key)
    from accounts.views import session_handle

    response = laptop.post("/accounts/sessions/", {"session": session_handle(phone_row.session_key)}, follow=True)

    assert "That session is signed out." in response.content.decode()
    assert phone.get("/portfolio/").status_code == 302
    assert tablet.get("/portfolio/").status_code == 200
    assert laptop.get("/portfolio/").status_code == 200


def test_someone_elses_session_cannot_be_ended(dave, operator):
    mine, theirs = browser(), browser()
    log_in(mine)
    log_in(theirs, username="operator")
    from accounts.views import session_handle

    response = mine.post("/accounts/sessions/", {"session": session_handle(theirs.session.session_key)}, follow=True)

    assert "That session has already ended." in response.content.decode()
    assert theirs.get("/portfolio/").status_code == 200


def test_sign_out_everywhere_else_ends_web_sessions_and_api_logins(dave):
    here, there = browser(), browser()
    log_in(here)
    log_in(there)
    refresh = api_login().json()["refresh"]

    response = here.post("/accounts/sessions/", {"all": "1"}, follow=True)

    assert "Signed out everywhere else (1 session)." in response.content.decode()
    assert there.get("/portfolio/").status_code == 302
    assert here.get("/portfolio/").status_code == 200
    assert APIClient().post("/api/auth/refresh", {"refresh": refresh}, format="json").status_code == 401
    assert OutstandingToken.objects.filter(user=dave, blacklistedtoken__isnull=True).count() == 0


def test_sign_out_everywhere_else_ends_the_api_access_tokens_at_once(dave):
    here = browser()
    log_in(here)
    tokens = api_login().json()
    program = APIClient(HTTP_AUTHORIZATION=f"Bearer {tokens['access']}")
    assert program.get("/api/auth/me").status_code == 200

    here.post("/accounts/sessions/", {"all": "1"})

    refused = program.get("/api/auth/me")
    assert refused.status_code == 401 and refused.json()["error"]["code"] == "TOKEN_INVALID"
    assert "login has ended" in refused.json()["error"]["message"]


def test_a_session_row_follows_its_user_and_last_use(dave):
    client = browser()
    log_in(client)
    row = Session.objects.get(user=dave)
    first_seen = row.last_seen

    client.get("/portfolio/")

    row.refresh_from_db()
    assert row.last_seen > first_seen and row.created_at <= first_seen
    client.post("/accounts/logout/")
    assert not Session.objects.filter(user=dave).exists()


def test_a_request_in_flight_does_not_bring_an_ended_session_back(dave):
    """The session engine's save is an update: a session deleted while one of its requests
    runs stays deleted (every request saves its session)."""
    from django.contrib.sessions.backends.base import UpdateError

    from accounts.session_store import SessionStore

    client = browser()
    log_in(client)
    in_flight = SessionStore(client.session.session_key)
    in_flight.load()
    Session.objects.filter(user=dave).delete()  # "sign out" from another device

    with pytest.raises(UpdateError):
        in_flight.save()
    assert not Session.objects.filter(user=dave).exists()


# --- API keys -------------------------------------------------------------------------------------


def test_dave_creates_a_key_on_the_page_sees_it_once_and_uses_it(dave):
    client = browser()
    client.force_login(dave)

    response = client.post("/accounts/api-keys/", {"name": "my bot", "allowed_ips": "127.0.0.1, 10.0.0.0/8"})

    page = response.content.decode()
    assert response.status_code == 200 and response["Cache-Control"] == "no-store"
    secret = re.search(r"data-new-key>([^<]+)<", page).group(1)
    assert "Copy it now" in page and "my bot" in page and "<code>10.0.0.0/8</code>" in page
    me = APIClient().get("/api/user/balances", HTTP_AUTHORIZATION=f"Api-Key {secret}")
    assert me.status_code == 200
    listed = client.get("/accounts/api-keys/").content.decode()
    assert secret not in listed and secret.split(".")[0] in listed  # the prefix, never again the secret


def test_a_key_with_a_bad_network_is_refused_on_the_form(dave):
    client = browser()
    client.force_login(dave)

    response = client.post("/accounts/api-keys/", {"name": "bot", "allowed_ips": "not-a-network"})

    assert response.status_code == 422
    assert "is not an address or CIDR network" in response.content.decode()
    assert not dave.api_keys.exists()


def test_dave_revokes_a_key_and_it_is_refused(dave):
    client = browser()
    client.force_login(dave)
    page = client.post("/accounts/api-keys/", {"name": "bot", "trade": "on"}).content.decode()
    secret = re.search(r"data-new-key>([^<]+)<", page).group(1)
    key = dave.api_keys.get()
    assert key.scopes == ["read", "trade"]

    response = client.post(f"/accounts/api-keys/{key.pk}/revoke/", follow=True)

    assert "is revoked" in response.content.decode()
    assert APIClient().get("/api/user/balances", HTTP_AUTHORIZATION=f"Api-Key {secret}").status_code == 401
    assert "No keys yet." in response.content.decode()


def test_someone_elses_key_cannot_be_revoked(dave, operator):
    from accounts.keys import api_key_create

    key, _ = api_key_create(user=operator, name="theirs")
    client = browser()
    client.force_login(dave)

    response = client.post(f"/accounts/api-keys/{key.pk}/revoke/", follow=True)

    assert "already revoked" in response.content.decode()
    key.refresh_from_db()
    assert not key.revoked


def test_operators_can_remove_a_lost_device_in_the_admin_but_never_read_its_secret(dave, db):
    boss = User.objects.create_superuser(username="boss", email="boss@example.com", password=PASSWORD)
    device = enrolled(dave)
    client = browser()
    client.force_login(boss)

    page = client.get(f"/admin/otp_totp/totpdevice/{device.pk}/change/").content.decode()

    assert page.count("dave") >= 1
    assert device.key not in page and "qrcode" not in page
    assert client.get(f"/admin/otp_totp/totpdevice/{device.pk}/delete/").status_code == 200
