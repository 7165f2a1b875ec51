"""Schemathesis against the API's own OpenAPI schema: no input makes a 5xx, and every
response matches what the schema documents for its status code.

Runs in process, on the WSGI app, with the database in autocommit as in production
(a transactional test: the book snapshot opens its own REPEATABLE READ transaction,
which PostgreSQL allows only outside one). alice (a
trader, given staff rights so that PUT /api/user/balance is exercised past its 403)
sends her access token with every request, so the order endpoints really run; the
schema's request examples place real orders on QTX-USD. Each operation gets schema
examples, valid (positive) and invalid (negative) requests. Bounded: a fixed number of
examples per operation, no shrinking, no example database.
"""

import pytest
import schemathesis
from django.core.handlers.wsgi import WSGIHandler
from django.core.signals import request_finished, request_started
from django.db import close_old_connections
from drf_spectacular.generators import SchemaGenerator
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error, response_schema_conformance

from accounts.tokens import api_login_start
from tests.api_support import *  # noqa: F403

EXAMPLES_PER_OPERATION = 60
OPERATIONS = sorted(
    (method.upper(), path)
    for path, operations in SchemaGenerator().get_schema(request=None, public=True)["paths"].items()
    for method in operations
)


@pytest.fixture
def api_schema(transactional_db, market, alice, bob, settings):
    # Generous limits: this test is about answers to odd input, not about throttling.
    settings.REST_FRAMEWORK = {
        **settings.REST_FRAMEWORK,
        "DEFAULT_THROTTLE_RATES": {scope: "100000/minute" for scope in ("anon", "user", "orders", "auth")},
    }
    settings.LOGIN_LOCKOUT_ATTEMPTS = settings.LOGIN_LOCKOUT_IP_ATTEMPTS = 100000
    # The WSGI handler would close the test's connection after each request (CONN_MAX_AGE
    # is 0 on SQLite); Django's own test client switches this off the same way.
    request_started.disconnect(close_old_connections)
    request_finished.disconnect(close_old_connections)
    yield schemathesis.openapi.from_wsgi("/api/schema/?format=json", WSGIHandler())
    request_started.connect(close_old_connections)
    request_finished.connect(close_old_connections)


@pytest.fixture
def token(alice):
    alice.is_staff = True
    alice.save(update_fields=["is_staff"])
    return str(api_login_start(user=alice).access_token)


def test_the_schema_lists_every_endpoint_of_the_design():
    assert len(OPERATIONS) == 24


@pytest.mark.slow
@pytest.mark.parametrize(("method", "path"), OPERATIONS, ids=[f"{method} {path}" for method, path in OPERATIONS])
def test_the_api_answers_generated_requests_as_documented(api_schema, token, method, path):
    operation = api_schema[path][method]
    strategies = [
        *api_schema.get_strategies_from_examples(operation),
        operation.as_strategy(GenerationMode.POSITIVE),
        operation.as_strategy(GenerationMode.NEGATIVE),
    ]

    @given(case=st.one_of(strategies))
    @settings(
        max_examples=EXAMPLES_PER_OPERATION,
        deadline=None,
        database=None,
        derandomize=True,
        phases=[Phase.explicit, Phase.generate],
        suppress_health_check=list(HealthCheck),
    )
    def answers_as_documented(case):
        case.headers = {**(case.headers or {}), "Authorization": f"Bearer {token}"}
        case.call_and_validate(checks=[not_a_server_error, response_schema_conformance])

    answers_as_documented()
