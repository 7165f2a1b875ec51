"""A database that goes away under a request answers 503 in the caller's shape, never 500,
and the next request works (README, "When Redis or PostgreSQL goes away"). On PostgreSQL the connection is really
killed, with pg_terminate_backend on this test's own backend only."""

import json
import os

import psycopg
import pytest
from django.db import OperationalError, connection
from django.test import Client, RequestFactory

from quantumtrades.views import server_error
from tests.api_support import assert_error, client_for

postgres_only = pytest.mark.skipif(
    not os.environ.get("DATABASE_URL", "").startswith("postgres"), reason="kills a PostgreSQL connection"
)


def kill_this_tests_connection():
    """Terminate the server process behind Django's connection, from a connection of our own."""
    connection.ensure_connection()
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_backend_pid()")
        pid = cursor.fetchone()[0]
    params = connection.get_connection_params()
    params.pop("cursor_factory", None)
    params.pop("context", None)
    with psycopg.connect(**params, autocommit=True) as killer:
        assert killer.execute("SELECT pg_terminate_backend(%s)", [pid]).fetchone()[0]


@pytest.mark.postgres
@postgres_only
def test_an_api_request_whose_connection_is_killed_answers_503_and_the_next_works(transactional_db, alice):
    as_alice = client_for(alice)
    kill_this_tests_connection()

    response = as_alice.get("/api/orders")

    error = assert_error(response, 503, code="SERVICE_UNAVAILABLE")
    assert "try again" in error["message"].lower()
    assert response["Retry-After"] == "1"
    assert as_alice.get("/api/orders").status_code == 200


@pytest.mark.postgres
@postgres_only
def test_a_page_whose_connection_is_killed_answers_a_plain_503_page(transactional_db, alice):
    browser = Client()
    browser.force_login(alice)
    kill_this_tests_connection()

    response = browser.get("/portfolio/")

    assert response.status_code == 503
    assert response["Content-Type"].startswith("text/html")
    assert b"Back in a moment" in response.content
    assert browser.get("/portfolio/").status_code == 200


def test_handler500_answers_503_for_a_lost_database_outside_any_view():
    try:
        raise OperationalError("terminating connection due to administrator command")
    except OperationalError:
        api = server_error(RequestFactory().get("/api/orders"))
        page = server_error(RequestFactory().get("/portfolio/"))

    assert api.status_code == 503
    assert json.loads(api.content)["error"]["code"] == "SERVICE_UNAVAILABLE"
    assert page.status_code == 503 and b"Back in a moment" in page.content
