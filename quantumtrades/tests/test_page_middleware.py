"""The pages' middleware (quantumtrades/core/page_middleware.py): API requests that carry a
token or an API key pass over it; every other request goes through it whole."""

import pytest
from django.test import Client, RequestFactory
from rest_framework.test import APIClient

from quantumtrades.core.page_middleware import carries_credentials


@pytest.mark.parametrize(
    ("path", "authorization", "carries"),
    [
        ("/api/orders", "Bearer eyJ0", True),
        ("/api/orders", "Api-Key qt_abc", True),
        ("/api/orders", "api-key qt_abc", True),  # ApiKeyAuthentication takes any case
        ("/api/keys", "bearer eyJ0", False),  # simplejwt takes "Bearer" only: the session may answer
        ("/api/keys", "Basic YWxpY2U6eA==", False),
        ("/api/keys", None, False),
        ("/portfolio/", "Bearer eyJ0", False),
    ],
)
def test_which_requests_carry_their_own_credentials(path, authorization, carries):
    headers = {"HTTP_AUTHORIZATION": authorization} if authorization else {}
    assert carries_credentials(RequestFactory().get(path, **headers)) is carries


def token_for(username, password) -> str:
    response = APIClient().post("/api/auth/login", {"username": username, "password": password}, format="json")
    assert response.status_code == 200, response.content
    return response.json()["access"]


def test_a_token_request_is_the_tokens_user_whatever_session_the_browser_holds(alice, bob, operator, settings):
    """A staff session that has not passed a one-time code holds its browser back from the
    API (403); a request with bob's token from that same browser is bob's, and goes."""
    bearer = f"Bearer {token_for('bob', 'bob-pass-2026')}"
    APIClient().post("/api/keys", {"name": "bob's bot"}, format="json", HTTP_AUTHORIZATION=bearer)
    settings.OTP_REQUIRED_FOR_STAFF = True
    browser = Client()
    browser.force_login(operator)

    with_session = browser.get("/api/keys")
    with_token = browser.get("/api/keys", HTTP_AUTHORIZATION=bearer)

    assert with_session.status_code == 403 and with_session.json()["error"]["code"] == "TWO_FACTOR_REQUIRED"
    assert with_token.status_code == 200 and [key["name"] for key in with_token.json()] == ["bob's bot"]
    # The session was left alone: not read, not saved, no cookie set.
    assert "sessionid" not in with_token.cookies and "Cookie" not in with_token.get("Vary", "")


def test_the_web_session_still_reaches_the_api_that_takes_it(alice):
    browser = Client()
    browser.force_login(alice)
    response = browser.get("/api/keys")
    assert response.status_code == 200 and response.json() == []
    # A page of the same session: its user, its messages (the middleware whole).
    page = browser.get("/portfolio/")
    assert page.status_code == 200 and page.wsgi_request.user == alice
