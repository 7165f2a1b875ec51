"""Schemathesis against the API's own OpenAPI schema, with its checks: no input makes a 5xx,
every answer's status, content type, headers and body are the ones the schema documents,
input the schema calls invalid is refused, and the rest of what schemathesis can check.

Runs in process, on the WSGI app, with the database in autocommit as in production
(a transactional test: the book snapshot opens its own REPEATABLE READ transaction,
which PostgreSQL allows only outside one). alice (a trader, given staff rights so that
PUT /api/user/balance is exercised past its 403) sends her access token with every request
(as the run's own header, so that ignored_auth can take it away), and the order endpoints
really run: the schema's request examples place real orders on QTX-USD.

Each operation gets its schema examples, schemathesis's coverage cases (the boundaries of
every parameter and field, each one missing, wrong types, methods the path does not have,
content types), and EXAMPLES_PER_OPERATION generated requests, valid (positive) and invalid
(negative): about 900 coverage cases and 1,300 generated requests in all, printed per
operation (pytest -s). Bounded: no shrinking, no example database; about 30 s on SQLite
and 25 s on PostgreSQL.

The checks (schemathesis.checks), on every request:
- not_a_server_error, status_code_conformance, content_type_conformance,
  response_headers_conformance (the 401's WWW-Authenticate, the 429's Retry-After),
  response_schema_conformance;
- negative_data_rejection: the schema is as strict as the API (unknown fields refused,
  decimals and symbols with their patterns, enums, lengths, bounds: quantumtrades/core/
  api_schema.py and the views' extend_schema), so anything it calls invalid is refused;
- ignored_auth, missing_required_header, unsupported_method, allow_header_conformance;
- use_after_free and ensure_resource_availability are run too, but judge only sequences of
  calls linked in the schema (a stateful run); the schema declares no links, so here they
  cannot fail. Left for when the schema has links (POST /api/orders to /api/orders/{id}).

positive_data_acceptance is narrowed to POSITIVE_HOLDS: the operations whose valid input
the schema describes whole. Elsewhere the API refuses, by its nature, requests the schema
cannot call invalid: a symbol of the right form that names no market (400 in a body or a
query), an order off the market's tick or lot, below its minimum notional or past the
trader's funds; a cursor that no next or previous link gave (opaque by design); text that is
not printable (Python's str.isprintable, which no JSON Schema pattern spells); a username
that is taken, an email address Django's validator refuses, a password its validators
refuse; a refresh token that is not one.
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
from schemathesis.checks import (
    allow_header_conformance,
    content_type_conformance,
    ensure_resource_availability,
    ignored_auth,
    missing_required_header,
    negative_data_rejection,
    not_a_server_error,
    positive_data_acceptance,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
    unsupported_method,
    use_after_free,
)
from schemathesis.generation.drivers import CoverageGenerator
from schemathesis.generation.feedback import FeedbackSources
from schemathesis.generation.overrides import Override

from accounts.tokens import api_login_start
from tests.api_support import *  # noqa: F403

EXAMPLES_PER_OPERATION = 60
OPERATIONS = sorted(
    (method.upper(), path)
    for path, operations in SchemaGenerator().get_schema(request=None, public=True)["paths"].items()
    for method in operations
)
CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
    negative_data_rejection,
    ignored_auth,
    missing_required_header,
    unsupported_method,
    allow_header_conformance,
    use_after_free,
    ensure_resource_availability,
]
POSITIVE_HOLDS = {
    ("GET", "/api/auth/me"),
    ("GET", "/api/keys"),
    ("DELETE", "/api/keys/{key_id}"),
    ("GET", "/api/markets"),
    ("GET", "/api/markets/{symbol}"),
    ("GET", "/api/markets/{symbol}/candles"),
    ("GET", "/api/markets/{symbol}/trades"),
    ("GET", "/api/orders/{order_id}"),
    ("DELETE", "/api/orders/{order_id}"),
    ("GET", "/api/orders/lists/{list_id}"),
    ("DELETE", "/api/orders/lists/{list_id}"),
    ("POST", "/api/orders/cancel-after"),
    ("GET", "/api/user/balances"),
}


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
    assert len(OPERATIONS) == 31


def coverage_cases(operation) -> list:
    """Schemathesis's coverage phase for one operation: boundaries, missing parts, wrong
    types, methods the path does not have."""
    config = operation.schema.config.generation_for(operation=operation, phase="coverage")
    return list(
        CoverageGenerator(
            operation=operation,
            generation_modes=[GenerationMode.POSITIVE, GenerationMode.NEGATIVE],
            generation_config=config,
            auth_storage=None,
            override=Override(),
            feedback=FeedbackSources(),
        )
    )


@pytest.mark.slow
@pytest.mark.parametrize(("method", "path"), OPERATIONS, ids=[f"{method} {path}" for method, path in OPERATIONS])
def test_the_api_answers_generated_requests_as_documented(api_schema, token, method, path, capsys):
    api_schema.config.update(headers={"Authorization": f"Bearer {token}"})
    operation = api_schema[path][method]
    checks = CHECKS + ([positive_data_acceptance] if (method, path) in POSITIVE_HOLDS else [])
    counts = {"coverage": 0, "generated": 0}

    for case in coverage_cases(operation):
        case.call_and_validate(checks=checks)
        counts["coverage"] += 1

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
        case.call_and_validate(checks=checks)
        counts["generated"] += 1

    answers_as_documented()

    with capsys.disabled():
        print(f"\nschemathesis {method} {path}: {counts['coverage']} coverage cases, {counts['generated']} generated")
    # An operation that takes no input has one request to make: hypothesis stops there.
    takes_input = any(len(part) for part in (operation.path_parameters, operation.query, operation.body))
    assert counts["generated"] >= EXAMPLES_PER_OPERATION or not takes_input, counts
