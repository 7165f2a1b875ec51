"""Signing up, in and out through the pages, and the idle session."""

import pytest
from django.conf import settings
from django.test import Client

from accounts.models import Asset, Balance, User

HTMX = {"HTTP_HX_REQUEST": "true"}
PASSWORD = "correct-horse-battery-2026"


@pytest.fixture(autouse=True)
def fast_password_hashing(settings):
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]


@pytest.fixture
def assets(db):
    for code in ("USD", "QTX"):
        Asset.objects.get_or_create(code=code, defaults={"name": code})


@pytest.fixture
def dave(db):
    return User.objects.create_user(username="dave", password=PASSWORD)


def register(client, **fields):
    data = {"username": "erin", "email": "erin@example.com", "password1": PASSWORD, "password2": PASSWORD}
    data.update(fields)
    return client.post("/accounts/register/", data)


def test_the_register_page_has_a_labelled_form(client, db):
    page = client.get("/accounts/register/").content.decode()
    for field in ("username", "email", "password1", "password2"):
        assert f'<label for="id_{field}">' in page


def test_erin_registers_gets_the_paper_grant_and_is_signed_in(client, assets):
    response = register(client)

    assert response.status_code == 302 and response["Location"] == "/"
    erin = User.objects.get(username="erin")
    grant = {b.asset_id: b.available for b in Balance.objects.filter(user=erin)}
    assert grant == {"USD": 100000, "QTX": 1000}  # the grant's assets that exist here
    assert client.get("/portfolio/").status_code == 200


def test_registration_returns_to_where_she_came_from(client, assets):
    response = register(client, next="/markets/QTX-USD/")
    assert response["Location"] == "/markets/QTX-USD/"


def test_registration_never_redirects_off_site(client, assets):
    response = register(client, next="https://evil.example.com/")
    assert response["Location"] == "/"


def test_a_taken_username_is_refused_inline(client, assets, dave):
    response = register(client, username="dave")

    assert response.status_code == 422
    assert "A user with that username already exists." in response.content.decode()


def test_a_name_mixing_latin_and_cyrillic_letters_is_refused(client, assets):
    response = register(client, username="\u0435rin")  # a Cyrillic "е", then Latin letters

    assert response.status_code == 422
    assert "Use letters of one script: this name mixes Cyrillic and Latin letters." in response.content.decode()
    assert not User.objects.filter(username__endswith="rin").exists()


def test_a_name_differing_only_in_case_is_refused(client, assets, dave):
    response = register(client, username="Dave")

    assert response.status_code == 422
    assert "A user with that username already exists." in response.content.decode()


def test_a_full_width_name_is_stored_as_the_letters_it_stands_for(client, assets):
    register(client, username="\uff45\uff52\uff49\uff4e")  # "ｅｒｉｎ"

    assert User.objects.filter(username="erin").exists()


def test_mismatched_passwords_are_refused(client, assets):
    response = register(client, password2="something-else-2026")

    assert response.status_code == 422
    assert "didn’t match" in response.content.decode()
    assert not User.objects.filter(username="erin").exists()


def test_a_weak_password_is_refused(client, assets):
    response = register(client, password1="password", password2="password")

    assert response.status_code == 422
    assert "too common" in response.content.decode()


def test_dave_logs_in_and_comes_back_to_the_page_he_wanted(client, dave):
    response = client.post("/accounts/login/", {"username": "dave", "password": PASSWORD, "next": "/portfolio/"})
    assert response.status_code == 302 and response["Location"] == "/portfolio/"


def test_dave_logs_in_whatever_the_case_he_types(client, dave):
    response = client.post("/accounts/login/", {"username": "DAVE", "password": PASSWORD})

    assert response.status_code == 302
    assert client.get("/portfolio/").context["user"] == dave


def test_a_wrong_password_is_refused(client, dave):
    response = client.post("/accounts/login/", {"username": "dave", "password": "nope"})

    assert response.status_code == 200
    assert "Please enter a correct username and password" in response.content.decode()


def test_logging_out_takes_a_post(client, dave):
    client.force_login(dave)

    assert client.get("/accounts/logout/").status_code == 405
    response = client.post("/accounts/logout/")

    assert response.status_code == 302
    assert client.get("/portfolio/").status_code == 302


def test_the_top_bar_shows_who_is_signed_in_and_staff_see_the_admin(client, dave, db):
    client.force_login(dave)
    page = client.get("/").content.decode()
    assert "dave" in page and "Log out" in page
    assert "/admin/" not in page

    operator = User.objects.create_user(username="olga", password=PASSWORD, is_staff=True)
    client.force_login(operator)
    assert 'href="/admin/">Admin</a>' in client.get("/").content.decode()


def test_the_page_knows_when_the_session_goes_idle(client, dave):
    client.force_login(dave)
    page = client.get("/").content.decode()

    assert settings.SESSION_COOKIE_AGE == 60 * 60
    assert f'data-session-idle="{settings.SESSION_COOKIE_AGE}"' in page
    assert 'id="session-warning"' in page and "Stay signed in" in page


def test_every_request_renews_the_idle_session(client, dave):
    assert settings.SESSION_SAVE_EVERY_REQUEST
    client.force_login(dave)

    response = client.post("/accounts/keep-alive/", **HTMX)

    assert response.status_code == 204
    assert response.cookies["sessionid"]["max-age"] == settings.SESSION_COOKIE_AGE


def test_keep_alive_after_the_session_ended_sends_the_page_to_log_in(client, db):
    response = client.post("/accounts/keep-alive/", HTTP_HX_CURRENT_URL="http://testserver/portfolio/", **HTMX)

    assert response["HX-Redirect"] == "/accounts/login/?next=/portfolio/"


@pytest.mark.parametrize("path", ["/accounts/register/", "/accounts/login/"])
def test_signing_up_or_in_without_the_csrf_token_is_refused(path, assets, dave):
    client = Client(enforce_csrf_checks=True)

    response = client.post(path, {"username": "dave", "password": PASSWORD})

    assert response.status_code == 403
