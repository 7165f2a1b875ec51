"""Generated requests to every operation of the REST API: never a 5xx, never a traceback in the
log, every refusal in the one error shape, and a refused request writes nothing.

The operations come from the API's own OpenAPI schema (an endpoint added to the URLconf is
fuzzed with no change here), and so do their field and parameter names, so that the bodies
carry the real names with plausible values and junk: wrong types, decimals with exponents,
NaN, too many places or past every column, text with NUL, control characters, lone
surrogates or 5,000 characters, nested objects and lists, a key twice, no JSON at all, bytes
that are not UTF-8, the wrong Content-Type; query strings with the real parameter names and
junk values (percent-encoded bytes that are not UTF-8 among them); path parameters (ids and
symbols) with junk. Each request goes anonymously, with alice's access token, with an API key
of bob's (read and trade) or with an operator's token (to get past the staff check).

For every answer: status < 500; a 4xx (HEAD aside) is exactly {"error": {"code", "message",
"field"}} with a message; nothing was logged at ERROR or with a traceback; and for a 4xx the
database's fingerprint (counts and sums of users, keys, balances, ledger, orders, fills,
trades, the book, candles, tokens) is what it was before.

Examples (hypothesis, derandomized, no example database): EXAMPLES_PER_OPERATION requests for
each of the 33 operations, and STRAY_EXAMPLES to paths and methods the API does not have:
33 x 30 + 100 = 1,090 requests: about 20 s on SQLite and 15 s on PostgreSQL on a two-core machine.
The counts are printed (pytest -s) and asserted.
"""

import json
import re
from collections import Counter
from decimal import Decimal
from urllib.parse import quote

import pytest
from django.test import Client
from drf_spectacular.generators import SchemaGenerator
from hypothesis import given
from hypothesis import strategies as st

from accounts.keys import api_key_create
from accounts.tokens import api_login_start
from orders.services import order_place
from tests.api_support import *  # noqa: F403
from tests.api_support import client_for

from .fuzz_support import (
    GOOD_DECIMALS,
    PERCENT_JUNK,
    Fingerprints,
    LogWatch,
    check_error_shape,
    content_type,
    decimal_string_json,
    encoded,
    examples,
    fuzz_settings,
    junk_json,
    long_text,
    malformed_json,
    object_json,
    often,
    string_json,
    text,
    well_formed_json,
)

pytestmark = [pytest.mark.slow, pytest.mark.timeout(300)]

EXAMPLES_PER_OPERATION = 30
STRAY_EXAMPLES = 100
SCHEMA = SchemaGenerator().get_schema(request=None, public=True)
OPERATIONS = sorted(
    (method.upper(), path, operation)
    for path, operations in SCHEMA["paths"].items()
    for method, operation in operations.items()
)
IDENTITIES = ("anonymous", "alice", "bob's key", "operator")
METHODS = ("GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS", "TRACE", "CONNECT", "PROPFIND", "get", "FOO")


def resolve(schema: dict) -> dict:
    """A schema with its $ref (and single allOf) followed into the components."""
    while True:
        if "$ref" in schema:
            schema = SCHEMA["components"]["schemas"][schema["$ref"].rsplit("/", 1)[1]]
        elif len(schema.get("allOf", [])) == 1:
            schema = {**schema["allOf"][0], **{k: v for k, v in schema.items() if k != "allOf"}}
        else:
            return schema


def enum_of(schema: dict) -> list:
    schema = resolve(schema)
    values = list(schema.get("enum", []))
    for option in schema.get("oneOf", []):
        values += enum_of(option)
    return [value for value in values if value is not None]


def plausible_json(name: str, schema: dict, known: dict) -> st.SearchStrategy[str]:
    """JSON text of a value that fits the field, or nearly does."""
    schema = resolve(schema)
    if name in known:
        return st.sampled_from(known[name]).map(json.dumps)
    if enum_of(schema):
        return st.sampled_from(enum_of(schema)).map(json.dumps)
    if "pattern" in schema:  # the API's decimals
        return often(st.sampled_from(GOOD_DECIMALS).map(json.dumps), [decimal_string_json])
    kind = schema.get("type")
    if kind == "boolean":
        return st.sampled_from(["true", "false"])
    if kind == "integer":
        return st.integers(-5, 100).map(str)
    if kind == "array":
        return st.lists(plausible_json(name + "[]", schema.get("items", {}), known), max_size=3).map(
            lambda items: "[" + ",".join(items) + "]"
        )
    return text.map(string_json)


def body_strategy(operation: dict, known: dict) -> st.SearchStrategy[tuple[bytes, str]]:
    """(the body's bytes, its Content-Type)."""
    content = operation.get("requestBody", {}).get("content", {}).get("application/json")
    schema = resolve(content["schema"]) if content else {}
    properties = schema.get("properties", {})
    required = schema.get("required", [])
    plausible = {name: plausible_json(name, prop, known) for name, prop in properties.items()}
    names = sorted(properties)
    as_text = st.one_of(
        well_formed_json(required, [name for name in names if name not in required], plausible),
        well_formed_json(required, [name for name in names if name not in required], plausible),
        object_json(names, plausible),
        object_json(names, plausible),
        junk_json,
        malformed_json,
        # A body just past the API's 64 KiB limit, well formed otherwise.
        long_text.map(lambda filler: json.dumps({(names or ["x"])[0]: filler})),
        # A key twice, as a JSON library would never write it.
        st.sampled_from(names or ["x"]).map(lambda name: f'{{"{name}": "1", "{name}": "1"}}'),
    )
    return st.tuples(as_text.flatmap(encoded), content_type)


def parameter_value(schema: dict, name: str, known: dict) -> st.SearchStrategy[str]:
    """A query or path parameter's value as text: plausible, or junk."""
    schema = resolve(schema)
    good = [str(value) for value in known.get(name, [])] + [str(value) for value in enum_of(schema)]
    if schema.get("type") == "integer":
        good += ["1", "2", "50", str(schema.get("maximum", 500)), str(schema.get("maximum", 500) + 1), "0", "-1"]
    junk = st.one_of(
        text,
        st.integers().map(str),
        st.sampled_from(["1.5", "1e3", " 1", "1 ", "+1", "0x1", "９", "-0", "00001", "1" * 30, "true", "null"]),
    )
    return st.one_of(st.sampled_from(good), junk) if good else junk


def query_strategy(operation: dict, known: dict) -> st.SearchStrategy[str]:
    """A raw query string: the real parameter names (and others) with values, percent-encoded
    or not, sometimes with bytes that are not UTF-8, sometimes a name twice."""
    parameters = [p for p in operation.get("parameters", []) if p["in"] == "query"]
    pair = st.one_of(
        *(
            parameter_value(p.get("schema", {}), p["name"], known).map(lambda value, name=p["name"]: (name, value))
            for p in parameters
        ),
        st.tuples(st.sampled_from(["cursor", "page_size", "symbol", "limit", "x"]), text),
    )

    def render(pairs_and_junk):
        pairs, junk = pairs_and_junk
        parts = [f"{quote(name, safe='')}={quote(value, safe='')}" for name, value in pairs]
        return "&".join(parts + junk)

    return st.tuples(
        st.lists(pair, max_size=4), st.lists(st.sampled_from(PERCENT_JUNK + ["&", "=", "a=%"]), max_size=2)
    ).map(render)


def path_strategy(template: str, operation: dict, known: dict) -> st.SearchStrategy[str]:
    """The operation's path with its parameters filled in: a real id or symbol, or junk
    (percent-encoded text, NUL, bytes that are not UTF-8, numbers past every column)."""
    parameters = {p["name"]: p for p in operation.get("parameters", []) if p["in"] == "path"}
    names = re.findall(r"{(\w+)}", template)
    if not names:
        return st.just(template)

    def segment(name):
        good = [str(value) for value in known.get(name, [])]
        return st.one_of(
            st.sampled_from(good) if good else st.nothing(),
            parameter_value(parameters.get(name, {}).get("schema", {}), name, known).map(lambda v: quote(v, safe="")),
            st.sampled_from(PERCENT_JUNK).map(lambda junk: "QTX-USD" + junk),
            st.sampled_from(["9223372036854775808", "99999999999999999999999", "0", "-1", "1.0", "1%00"]),
        )

    def fill(values):
        given_values = iter(values)
        return re.sub(r"{(\w+)}", lambda match: next(given_values), template)

    return st.tuples(*(segment(name) for name in names)).map(fill)


@pytest.fixture
def world(transactional_db, market, alice, bob, operator, settings):
    """alice and bob with a few orders on QTX-USD, bob's API key, and limits that do not bite."""
    settings.REST_FRAMEWORK = {
        **settings.REST_FRAMEWORK,
        "DEFAULT_THROTTLE_RATES": {scope: "1000000/minute" for scope in ("anon", "user", "orders", "auth")},
    }
    settings.LOGIN_LOCKOUT_ATTEMPTS = settings.LOGIN_LOCKOUT_IP_ATTEMPTS = 1_000_000
    orders = [
        order_place(user=alice, market=market, side="buy", type="limit", price=Decimal("9.50"), quantity=Decimal("1")),
        order_place(user=bob, market=market, side="sell", type="limit", price=Decimal("10.50"), quantity=Decimal("1")),
        order_place(
            user=alice, market=market, side="sell", type="stop_limit", stop_price=Decimal("8"), price=Decimal("7.99"),
            quantity=Decimal("1"),
        ),
    ]  # fmt: skip
    key, secret = api_key_create(user=bob, name="bob's bot", scopes=["read", "trade"])
    alice_key, _ = api_key_create(user=alice, name="alice's reader", scopes=["read"])
    refresh = api_login_start(user=alice)
    clients = {"anonymous": Client(), "alice": Client(), "bob's key": Client(), "operator": Client()}
    headers = {
        "anonymous": {},
        "alice": {"HTTP_AUTHORIZATION": client_for(alice)._credentials["HTTP_AUTHORIZATION"]},
        "bob's key": {"HTTP_AUTHORIZATION": f"Api-Key {secret}"},
        "operator": {"HTTP_AUTHORIZATION": client_for(operator)._credentials["HTTP_AUTHORIZATION"]},
    }
    known = {
        "symbol": ["QTX-USD", "BTC-USD", "qtx-usd"],
        "username": ["alice", "bob", "operator", "new-trader", "Alice"],
        "password": ["alice-pass-2026", "a-long-passphrase-2026", "short", "pass\ud800word-2026"],
        "email": ["dave@example.com", "not-an-email", "a@b"],
        "otp": ["123456", "000000", " 12 34 56"],
        "refresh": [str(refresh), str(refresh.access_token), "a.b.c"],
        "asset": ["USD", "QTX", "usd", "XXX"],
        "reason": ["fuzz", ""],
        "name": ["bot", "", " "],
        "client_order_id": ["fuzz-1", "fuzz-2", ""],
        "scopes[]": ["read", "trade", "admin"],
        "allowed_ips[]": ["127.0.0.1/32", "::1", "10.0.0.0/8", "300.1.1.1", "1.2.3.4/33", "fe80::1%eth0"],
        "order_id": [order.order.pk for order in orders] + [2**63 - 1],
        "key_id": [key.pk, alice_key.pk, 2**63 - 1],
        "cursor": ["cD0x", "bz0xJnI9MSZwPTE=", "cD1hYmM=", "cD0tMQ==", "cD05OTk5OTk5OTk5OTk5OTk5OTk5OTk5", "%%%"],
        "before": ["1", str(2**63 - 1), str(2**63)],
    }
    return clients, headers, known


def exchange(client, headers, method, path, query, body, ctype, accept):
    extra = {**headers, "QUERY_STRING": query}
    if accept is not None:
        extra["HTTP_ACCEPT"] = accept
    return client.generic(method, path, data=body, content_type=ctype, **extra)


# Swagger UI's page and the schema itself answer as drf-spectacular renders them, not in JSON.
DOCUMENTS = ("/api/docs/", "/api/schema/")


def check_answer(response, method, before, after, log_lines, request_text, shape=True):
    assert response.status_code < 500, (request_text, response.status_code, response.content[:500])
    assert not log_lines, (request_text, log_lines)
    if 400 <= response.status_code < 500:
        assert before == after, (request_text, response.status_code, before, after)
        if method != "HEAD" and shape:
            assert response["Content-Type"].startswith("application/json"), (request_text, response["Content-Type"])
            check_error_shape(json.loads(response.content))


def run_examples(requests, method, clients, headers, log, counts, statuses, label):
    fingerprints = Fingerprints()

    @given(request=requests)
    @fuzz_settings(EXAMPLES_PER_OPERATION)
    def answers_without_a_server_error(request):
        identity, path, query, (body, ctype), accept = request
        log.take()
        response = exchange(clients[identity], headers[identity], method, path, query, body, ctype, accept)
        request_text = f"{identity}: {method} {path}?{query} [{ctype}] {body[:300]!r}"
        check_answer(response, method, *fingerprints.next(), log.take(), request_text)
        counts[label] += 1
        statuses[response.status_code] += 1

    answers_without_a_server_error()


ACCEPTS = often(st.none(), [st.sampled_from(["text/html", "application/xml", "*/*", "%%%", ""])], times=8)


def test_every_operation_refuses_junk_in_the_error_shape_and_writes_nothing(world, capsys):
    clients, headers, known = world
    counts, statuses = {}, Counter()
    with LogWatch() as log:
        for method, template, operation in OPERATIONS:
            label = f"{method} {template}"
            counts[label] = 0
            requests = st.tuples(
                st.sampled_from(IDENTITIES),
                path_strategy(template, operation, known),
                query_strategy(operation, known),
                body_strategy(operation, known)
                if "requestBody" in operation
                else st.one_of(st.just((b"", "application/json")), body_strategy(operation, known)),
                ACCEPTS,
            )

            run_examples(requests, method, clients, headers, log, counts, statuses, label)

    with capsys.disabled():
        print(
            f"\nREST fuzz: {sum(counts.values())} requests over {len(counts)} operations; answers {dict(sorted(statuses.items()))}"
        )
    assert counts == {label: examples(EXAMPLES_PER_OPERATION) for label in counts}, counts
    assert len(counts) == 33


def stray_path(symbol_ids):
    """A path under /api/ that is no operation's: unknown, a trailing slash, junk segments."""
    known_paths = sorted(SCHEMA["paths"])
    return st.one_of(
        st.sampled_from(known_paths).map(lambda path: re.sub(r"{\w+}", "1", path) + "/"),
        st.sampled_from(known_paths).map(lambda path: re.sub(r"{\w+}", "QTX-USD", path)),
        st.sampled_from(PERCENT_JUNK).map(lambda junk: f"/api/markets/QTX-USD{junk}/trades"),
        st.sampled_from(PERCENT_JUNK).map(lambda junk: f"/api/{junk}"),
        text.map(lambda segment: "/api/" + quote(segment, safe="")),
        st.sampled_from(["/api/docs/", "/api/schema/", "/api/schema/?format=yaml", "/api/schema/?format=x"]),
        st.just("/api/orders/" + "9" * 30),
        st.just("/api/keys/-1"),
        st.just("/api/" + "a/" * 200),
    )


def test_paths_and_methods_the_api_does_not_have_are_refused_in_the_error_shape(world, capsys):
    clients, headers, known = world
    count = 0
    fingerprints = Fingerprints()
    with LogWatch() as log:

        @given(
            identity=st.sampled_from(IDENTITIES),
            method=st.sampled_from(METHODS),
            path=stray_path(known),
            body=st.one_of(st.just((b"", "application/json")), body_strategy({}, known)),
        )
        @fuzz_settings(STRAY_EXAMPLES)
        def refused_as_documented(identity, method, path, body):
            nonlocal count
            log.take()
            response = exchange(clients[identity], headers[identity], method, path, "", body[0], body[1], None)
            request_text = f"{identity}: {method} {path} {body[0][:200]!r}"
            shape = not path.startswith(DOCUMENTS)
            check_answer(response, method, *fingerprints.next(), log.take(), request_text, shape)
            count += 1

        refused_as_documented()

    with capsys.disabled():
        print(f"\nREST fuzz, stray paths and methods: {count} requests")
    assert count == examples(STRAY_EXAMPLES)
