"""What an outsider can send that once reached a server error: each is refused in the
documented shape, and nothing is written."""

import asyncio
import base64
import json
from decimal import Decimal

import pytest
from asgiref.testing import ApplicationCommunicator
from channels.testing import WebsocketCommunicator
from django.conf import settings
from django.db import connection
from django.test import Client

from accounts.models import Balance, LedgerEntry
from quantumtrades.asgi import application, django_asgi_app
from quantumtrades.core.money import MONEY_MAX
from tests.api_support import *  # noqa: F403
from tests.api_support import assert_error, balances_of

# Past Django's DATA_UPLOAD_MAX_MEMORY_SIZE (Django's default, 2.5 MB, was where the 500s began).
HUGE = 2_700_000
API_ROUTES = [
    "/api/auth/login",
    "/api/auth/register",
    "/api/auth/refresh",
    "/api/auth/logout",
    "/api/orders",
    "/api/keys",
]


def huge_body() -> str:
    return json.dumps({"username": "a" * HUGE, "password": "x"})


@pytest.mark.parametrize("path", API_ROUTES)
def test_a_body_past_the_limit_is_413_in_the_error_shape_on_every_api_route(as_alice, path):
    response = as_alice.post(path, data=huge_body(), content_type="application/json")

    assert_error(response, 413, "PAYLOAD_TOO_LARGE")


def test_a_body_between_the_api_limit_and_the_site_limit_is_413_too(anon):
    body = json.dumps({"username": "a" * 100_000, "password": "x"})

    assert_error(anon.post("/api/auth/login", data=body, content_type="application/json"), 413, "PAYLOAD_TOO_LARGE")


def asgi_post(path, chunks, headers=()):
    """(status, body) of a POST sent straight to the ASGI application daphne serves."""

    async def exchange():
        scope = {
            "type": "http",
            "asgi": {"version": "3.0"},
            "http_version": "1.1",
            "method": "POST",
            "scheme": "http",
            "path": path,
            "raw_path": path.encode(),
            "query_string": b"",
            "root_path": "",
            "headers": [(b"host", b"127.0.0.1"), (b"content-type", b"application/json"), *headers],
            "client": ("127.0.0.1", 50000),
            "server": ("127.0.0.1", 8000),
        }
        app = ApplicationCommunicator(django_asgi_app, scope)
        for index, chunk in enumerate(chunks):
            await app.send_input({"type": "http.request", "body": chunk, "more_body": index < len(chunks) - 1})
        start = await app.receive_output(10)
        body = await app.receive_output(10)
        await app.wait(10)
        return start["status"], body.get("body", b"")

    return asyncio.run(exchange())


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("path", ["/api/auth/login", "/accounts/login/"])
def test_the_server_refuses_a_body_past_the_limit_by_its_length_before_reading_it(path):
    limit = settings.DATA_UPLOAD_MAX_MEMORY_SIZE

    # Only the announced length arrives: the answer does not wait for the body.
    status, body = asgi_post(path, [b"{"], headers=[(b"content-length", str(limit + 1).encode())])

    assert status == 413
    if path.startswith("/api/"):
        assert json.loads(body)["error"]["code"] == "PAYLOAD_TOO_LARGE"


@pytest.mark.django_db(transaction=True)
def test_the_server_refuses_a_body_without_a_length_once_it_passes_the_limit():
    chunk = b" " * (256 * 1024)
    status, body = asgi_post("/api/auth/register", [chunk] * 5)

    assert status == 413
    assert json.loads(body)["error"]["code"] == "PAYLOAD_TOO_LARGE"


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("get", "/markets/QTX-USD%00/"),
        ("post", "/markets/QTX-USD%00/ticket/"),
        ("post", "/markets/QTX-USD%00/ticket/preview/"),
        ("get", "/markets/%00/"),
        ("get", "/markets/qtx-usd/"),
    ],
)
def test_a_page_path_whose_symbol_no_market_can_have_is_404(alice, method, path):
    client = Client()
    client.force_login(alice)

    response = getattr(client, method)(path)

    assert response.status_code == 404


def test_a_symbol_no_market_can_have_is_404_on_the_api(anon):
    assert_error(anon.get("/api/markets/QTX-USD%00"), 404, "NOT_FOUND")
    assert_error(anon.get("/api/markets/QTX-USD%00/trades"), 404, "NOT_FOUND")
    assert_error(anon.get("/api/book/snapshot", {"symbol": "QTX\x00USD"}), 400, "INVALID", "symbol")


def test_an_adjustment_past_what_a_balance_column_holds_is_refused_and_writes_nothing(alice, as_operator):
    before, entries = balances_of(alice), LedgerEntry.objects.count()

    response = as_operator.put(
        "/api/user/balance",
        {"username": "alice", "asset": "USD", "amount": f"{MONEY_MAX}", "reason": "fat finger"},
        format="json",
    )

    assert_error(response, 400, "INVALID", "amount")
    assert balances_of(alice) == before
    assert LedgerEntry.objects.count() == entries


@pytest.mark.postgres  # SQLite keeps about 15 significant digits of a decimal, not 28
def test_the_largest_balance_a_column_holds_can_still_be_reached(alice, as_operator):
    if connection.vendor != "postgresql":
        pytest.skip("needs PostgreSQL's numeric(28, 8)")
    usd = Balance.objects.get(user=alice, asset_id="USD")
    room = MONEY_MAX - usd.available - usd.held

    response = as_operator.put(
        "/api/user/balance",
        {"username": "alice", "asset": "USD", "amount": f"{room}", "reason": "top up"},
        format="json",
    )

    assert response.status_code == 200, response.content
    assert Decimal(response.json()["total"]) == MONEY_MAX


@pytest.mark.parametrize("position", ["abc", "-1", "1.5", "9" * 30, ""])
@pytest.mark.parametrize("path", ["/api/orders", "/api/orders/open", "/api/trades/history", "/api/user/transactions"])
def test_a_cursor_whose_position_is_no_id_is_400(as_alice, path, position):
    # A cursor is base64 of "o=<offset>&r=<reverse>&p=<position>"; one made by hand reached the query.
    cursor = base64.b64encode(f"p={position}".encode()).decode()

    assert_error(as_alice.get(path, {"cursor": cursor}), 400, "INVALID", "cursor")


@pytest.mark.parametrize("path", ["/ws/nope", "/ws//", "/wsx", "/ws/live/QTX-USD/extra/", "/"])
def test_a_socket_to_a_path_with_no_consumer_is_refused_at_the_handshake(path):
    async def handshake():
        communicator = WebsocketCommunicator(application, path)
        connected, _ = await communicator.connect(timeout=5)
        return connected

    # No route used to raise in the application: daphne logged a traceback for each.
    assert asyncio.run(handshake()) is False


@pytest.mark.parametrize("method", ["options", "post", "put", "delete", "patch"])
@pytest.mark.parametrize("path", ["/api/docs/", "/api/schema/"])
def test_the_api_docs_answer_other_methods_without_a_server_error(anon, path, method):
    # OPTIONS on Swagger UI's page rendered DRF's metadata through a template it has not: a 500.
    response = getattr(anon, method)(path)

    assert response.status_code < 500, response.content[:300]
