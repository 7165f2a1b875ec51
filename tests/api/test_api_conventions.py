"""What holds for the whole API: the error shape on every path, CORS, the schema and its docs."""

import base64
import json
from datetime import timedelta

import pytest
from rest_framework.test import APIClient

from accounts.tokens import api_login_start
from tests.api_support import *  # noqa: F403
from tests.api_support import assert_error

pytestmark = pytest.mark.django_db


def test_an_unknown_api_path_is_404_in_the_error_shape(anon):
    assert_error(anon.get("/api/no-such-thing"), 404, code="NOT_FOUND")


def test_a_trailing_slash_is_404_with_a_hint(as_alice):
    error = assert_error(as_alice.get("/api/orders/"), 404, code="NOT_FOUND")

    assert "trailing slash" in error["message"]


def test_a_trailing_slash_on_an_unknown_path_gives_no_hint(anon):
    error = assert_error(anon.get("/api/nothing-here/"), 404, code="NOT_FOUND")

    assert "trailing slash" not in error["message"]


def test_an_unexpected_failure_is_500_in_the_error_shape_and_logged(as_alice, monkeypatch, caplog):
    def broken(**kwargs):
        raise RuntimeError("a bug")

    monkeypatch.setattr("orders.api.orders.order_place", broken)

    response = as_alice.post(
        "/api/orders", {"symbol": "QTX-USD", "side": "buy", "price": "10.00", "quantity": "1.00"}, format="json"
    )

    assert_error(response, 500, code="INTERNAL_ERROR")
    assert "a bug" not in response.content.decode()
    assert any("a bug" in str(record.exc_info) for record in caplog.records if record.exc_info)


def test_a_method_the_endpoint_lacks_is_405_in_the_error_shape(as_alice):
    response = as_alice.put("/api/orders", {}, format="json")

    assert_error(response, 405, code="METHOD_NOT_ALLOWED")
    assert "POST" in response.headers["Allow"]


def test_cors_preflight_from_an_allowed_origin(anon, settings):
    settings.CORS_ALLOWED_ORIGINS = ["https://app.example.com"]

    response = anon.options(
        "/api/orders",
        HTTP_ORIGIN="https://app.example.com",
        HTTP_ACCESS_CONTROL_REQUEST_METHOD="POST",
        HTTP_ACCESS_CONTROL_REQUEST_HEADERS="authorization, content-type",
    )

    assert response.status_code == 200
    assert response.headers["Access-Control-Allow-Origin"] == "https://app.example.com"
    assert "authorization" in response.headers["Access-Control-Allow-Headers"]


def test_cors_refuses_an_origin_not_listed(anon, settings):
    settings.CORS_ALLOWED_ORIGINS = ["https://app.example.com"]

    response = anon.get("/api/markets", HTTP_ORIGIN="https://evil.example.com")

    assert "Access-Control-Allow-Origin" not in response.headers


def test_the_openapi_schema_is_public_and_describes_bearer_auth(client):
    response = client.get("/api/schema/", {"format": "json"}, HTTP_AUTHORIZATION="Bearer stale")

    assert response.status_code == 200
    schema = response.json()
    assert schema["components"]["securitySchemes"]["jwtAuth"] == {
        "type": "http",
        "scheme": "bearer",
        "bearerFormat": "JWT",
    }
    assert schema["components"]["schemas"]["Error"]["properties"]["error"]
    assert schema["components"]["schemas"]["OrderPlaceInputRequest"]["additionalProperties"] is False
    place = schema["paths"]["/api/orders"]["post"]
    assert {"200", "201", "400", "401", "409", "429"} <= set(place["responses"])


def test_every_documented_operation_documents_its_errors(client):
    schema = client.get("/api/schema/", {"format": "json"}).json()

    for path, operations in schema["paths"].items():
        for method, operation in operations.items():
            codes = set(operation["responses"])
            assert "429" in codes, (method, path)
            if operation.get("security") and {} not in operation["security"]:
                assert "401" in codes, (method, path)


def test_swagger_ui_is_served_at_api_docs(client):
    response = client.get("/api/docs/")

    assert response.status_code == 200
    assert b"swagger" in response.content.lower()


# --- Every endpoint that needs a token refuses every bad one ----------------------------------------

PRIVATE_ENDPOINTS = [
    ("get", "/api/auth/me"),
    ("get", "/api/user/balances"),
    ("get", "/api/user/transactions"),
    ("put", "/api/user/balance"),
    ("get", "/api/orders"),
    ("post", "/api/orders"),
    ("delete", "/api/orders"),
    ("get", "/api/orders/open"),
    ("get", "/api/orders/1"),
    ("patch", "/api/orders/1"),
    ("delete", "/api/orders/1"),
    ("get", "/api/trades/history"),
]


def _b64(data) -> str:
    return base64.urlsafe_b64encode(json.dumps(data).encode()).rstrip(b"=").decode()


def bad_token(kind, user) -> str | None:
    if kind == "none":
        return None
    if kind == "garbage":
        return "Bearer garbage"
    if kind == "expired":
        token = api_login_start(user=user).access_token
        token.set_exp(lifetime=-timedelta(seconds=1))
        return f"Bearer {token}"
    if kind == "alg none":
        return f"Bearer {_b64({'alg': 'none', 'typ': 'JWT'})}.{_b64(api_login_start(user=user).access_token.payload)}."
    if kind == "refresh as access":
        return f"Bearer {api_login_start(user=user)}"
    raise AssertionError(kind)


@pytest.mark.parametrize("kind", ["none", "garbage", "expired", "alg none", "refresh as access"])
@pytest.mark.parametrize(("method", "path"), PRIVATE_ENDPOINTS, ids=[f"{m} {p}" for m, p in PRIVATE_ENDPOINTS])
def test_every_private_endpoint_refuses_a_missing_or_bad_token(alice, method, path, kind):
    client = APIClient()
    header = bad_token(kind, alice)
    if header:
        client.credentials(HTTP_AUTHORIZATION=header)

    response = getattr(client, method)(path, {}, format="json")

    assert_error(response, 401, code="NOT_AUTHENTICATED" if kind == "none" else "TOKEN_INVALID")
    assert response.headers["WWW-Authenticate"] == 'Bearer realm="api"'
