"""POST /api/orders refuses every malformed or rule-breaking body with 400 in the error
shape, naming the field, and places nothing: no order row, no balance touched."""

import json

import pytest

from orders.models import Order
from tests.api_support import *  # noqa: F403
from tests.api_support import assert_error, balances_of

pytestmark = pytest.mark.django_db

URL = "/api/orders"
GOOD = {"symbol": "QTX-USD", "side": "buy", "type": "limit", "price": "10.00", "quantity": "1.00"}


def body(**changes):
    """The good order with some fields changed; a value of `...` removes the field."""
    order = {**GOOD, **changes}
    return {key: value for key, value in order.items() if value is not ...}


def raw(text_of_price=None, text_of_quantity=None):
    """A body whose price or quantity is raw JSON text (NaN, 1e3: what json.dumps cannot write)."""
    price = text_of_price if text_of_price is not None else '"10.00"'
    quantity = text_of_quantity if text_of_quantity is not None else '"1.00"'
    return f'{{"symbol": "QTX-USD", "side": "buy", "type": "limit", "price": {price}, "quantity": {quantity}}}'


# (case, body: a dict or raw JSON text, the field the error must name)
BAD_ORDERS = [
    # Unknown and missing fields
    ("unknown field", body(leverage="10"), "leverage"),
    ("unknown nested object", body(order={"side": "buy"}), "order"),
    ("missing symbol", body(symbol=...), "symbol"),
    ("missing side", body(side=...), "side"),
    ("missing quantity", body(quantity=...), "quantity"),
    ("limit order without price", body(price=...), "price"),
    # Enums
    ("side in capitals", body(side="BUY"), "side"),
    ("side not an enum value", body(side="hold"), "side"),
    ("side empty", body(side=""), "side"),
    ("side a number", body(side=1), "side"),
    ("type not an enum value", body(type="stop"), "type"),
    ("time_in_force not an enum value", body(time_in_force="DAY"), "time_in_force"),
    ("time_in_force in lower case", body(time_in_force="gtc"), "time_in_force"),
    ("post_only a string", body(post_only="true"), "post_only"),
    ("post_only a number", body(post_only=1), "post_only"),
    # Not numbers, or numbers in disguise
    ("price NaN as text", body(price="NaN"), "price"),
    ("price NaN literal", raw(text_of_price="NaN"), "price"),
    ("price Infinity as text", body(price="Infinity"), "price"),
    ("quantity Infinity literal", raw(text_of_quantity="Infinity"), "quantity"),
    ("quantity -Infinity literal", raw(text_of_quantity="-Infinity"), "quantity"),
    ("price with exponent as text", body(price="1e3"), "price"),
    ("price with exponent as number", raw(text_of_price="1e3"), "price"),
    ("price with negative exponent", body(price="1E-2"), "price"),
    ("quantity with exponent as number", raw(text_of_quantity="0.5e1"), "quantity"),
    ("price with leading space", body(price=" 10.00"), "price"),
    ("price with a plus sign", body(price="+10.00"), "price"),
    ("price with two points", body(price="10.00.0"), "price"),
    ("price as words", body(price="ten"), "price"),
    ("price in hexadecimal", body(price="0x10"), "price"),
    ("quantity in non-ASCII digits", body(quantity="\u0661\u0662"), "quantity"),
    ("price empty text", body(price=""), "price"),
    ("price oversized text", body(price="1" * 50), "price"),
    # Wrong JSON types
    ("price a boolean", body(price=True), "price"),
    ("price a list", body(price=["10.00"]), "price"),
    ("price an object", body(price={"value": "10.00"}), "price"),
    ("quantity null", body(quantity=None), "quantity"),
    ("symbol a number", body(symbol=123), "symbol"),
    ("symbol null", body(symbol=None), "symbol"),
    # Precision and sign
    ("quantity with 9 decimals", body(quantity="0.000000001"), "quantity"),
    ("quantity with 9 decimals as number", raw(text_of_quantity="1.123456789"), "quantity"),
    ("price zero", body(price="0"), "price"),
    ("price negative", body(price="-10.00"), "price"),
    ("quantity zero", body(quantity="0"), "quantity"),
    ("quantity negative", body(quantity="-1"), "quantity"),
    ("quantity past the largest amount", body(quantity="100000000000000000000"), "quantity"),
    # Trading rules, judged by the engine's order_validate
    ("price off the tick", body(price="10.001"), "price"),
    ("price off the tick as number", raw(text_of_price="10.005"), "price"),
    ("quantity off the lot", body(quantity="1.005"), "quantity"),
    ("below the minimum notional", body(price="0.01", quantity="1.00"), "quantity"),
    ("notional past the largest amount", body(price="99999999999999999999", quantity="2.00"), "quantity"),
    ("market order with a price", body(type="market", time_in_force="IOC"), "price"),
    ("market order good till cancelled", body(type="market", price=..., time_in_force="GTC"), "time_in_force"),
    ("post only but immediate or cancel", body(post_only=True, time_in_force="IOC"), "post_only"),
    # Strings: size and content
    ("symbol oversized", body(symbol="X" * 1000), "symbol"),
    ("symbol with a NUL character", body(symbol="QTX-USD\u0000"), "symbol"),
    ("symbol of no market", body(symbol="NOPE-USD"), "symbol"),
    ("client_order_id too long", body(client_order_id="x" * 65), "client_order_id"),
    ("client_order_id empty", body(client_order_id=""), "client_order_id"),
    ("client_order_id a number", body(client_order_id=42), "client_order_id"),
    ("client_order_id with a line break", body(client_order_id="bad\nid"), "client_order_id"),
    # Funds
    ("more than the balance can pay", body(quantity="100000.00"), "quantity"),
]


def test_the_table_has_at_least_forty_bad_orders():
    assert len(BAD_ORDERS) >= 40
    assert len({case for case, _, _ in BAD_ORDERS}) == len(BAD_ORDERS)


@pytest.mark.parametrize(("case", "order", "field"), BAD_ORDERS, ids=[case for case, _, _ in BAD_ORDERS])
def test_bad_order_is_refused_naming_the_field_and_places_nothing(as_alice, alice, case, order, field):
    before = balances_of(alice)
    text = order if isinstance(order, str) else json.dumps(order)

    response = as_alice.post(URL, data=text, content_type="application/json")

    error = assert_error(response, 400, field=field)
    assert field in error["message"], error
    assert not Order.objects.exists()
    assert balances_of(alice) == before


@pytest.mark.parametrize(
    ("text", "message_part"),
    [
        ("[]", "JSON object"),
        ('"buy"', "JSON object"),
        ("42", "JSON object"),
        ("null", "JSON object"),
        ('{"symbol": "QTX-USD",', "not valid JSON"),
        ("{'symbol': 'QTX-USD'}", "not valid JSON"),
        ('{"side": "buy", "side": "sell"}', "appears twice"),
        ("[" * 100_000, "larger than"),
        ("[" * 5000 + "]" * 5000, "not valid JSON"),
    ],
    ids=["list", "string", "number", "null", "truncated", "single quotes", "duplicate key", "too large", "too deep"],
)
def test_a_body_that_is_not_one_json_object_is_refused(as_alice, text, message_part):
    response = as_alice.post(URL, data=text, content_type="application/json")

    error = assert_error(response, 413 if message_part == "larger than" else 400)
    assert message_part in error["message"]
    assert not Order.objects.exists()


def test_a_body_that_is_not_utf8_is_refused(as_alice):
    response = as_alice.post(URL, data=b'{"symbol": "\xff"}', content_type="application/json")

    assert_error(response, 400, code="PARSE_ERROR")


def test_a_form_encoded_body_is_refused_as_unsupported(as_alice):
    response = as_alice.post(URL, data="symbol=QTX-USD&side=buy", content_type="application/x-www-form-urlencoded")

    assert_error(response, 415, code="UNSUPPORTED_MEDIA_TYPE")
    assert not Order.objects.exists()
