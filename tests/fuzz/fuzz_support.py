"""What the fuzz tests share: hypothesis strategies that write JSON as text (so it can hold
what a JSON library would never write: NaN, exponents, a key twice, lone surrogates), the
database's fingerprint, and a watch on the log.

Every strategy mixes inputs that are nearly right (the real field names and plausible
values, so that some requests get past the parsers to the services and the engine) with
junk of every kind, because a server error hides where a request is almost valid.
"""

import json
import logging
import os

from django.db.models import Count, Max, Sum
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from rest_framework_simplejwt.token_blacklist.models import BlacklistedToken, OutstandingToken

from accounts.models import ApiKey, Balance, LedgerEntry, User
from marketdata.models import BookLevel, Candle, Market, Trade
from orders.models import Fill, Order

# By hand, for a longer hunt: QT_FUZZ_SCALE=10 tries ten times the examples, QT_FUZZ_RANDOM=1
# draws other examples on every run (CI's runs are the same each time).
SCALE = float(os.environ.get("QT_FUZZ_SCALE", "1"))
RANDOM = bool(os.environ.get("QT_FUZZ_RANDOM"))


def examples(count: int) -> int:
    return max(1, round(count * SCALE))


def fuzz_settings(count: int) -> settings:
    """Bounded and the same on every run: `count` examples (times QT_FUZZ_SCALE), no example
    database, no deadline (a first request warms caches)."""
    return settings(
        max_examples=examples(count),
        derandomize=not RANDOM,
        database=None,
        deadline=None,
        suppress_health_check=list(HealthCheck),
        print_blob=False,
    )


# --- Text ------------------------------------------------------------------------------------

# Strings that have broken servers somewhere: NUL and control characters, direction marks,
# look-alike digits, escapes, paths, markup, SQL.
ODD_STRINGS = [
    "",
    " ",
    "\x00",
    "QTX-USD\x00",
    "\x00QTX-USD",
    "\t\n\r",
    "\x1b[31m",
    "\x7f",
    "\u0085",
    "\u2028",
    "\u202e",
    "\ufeff",
    "\uffff",
    "é",
    "ﬁ",
    "𝕏",
    "٣",
    "１２",
    "🙂" * 20,
    "null",
    "true",
    "NaN",
    "Infinity",
    "1e3",
    "0x10",
    "-0",
    "%00",
    "%ZZ",
    "../../etc/passwd",
    "<script>alert(1)</script>",
    "'; DROP TABLE orders; --",
    "qtx-usd",
    "QTX-USD ",
    " QTX-USD",
    "QTX/USD",
    "QTX-USD?",
    "A" * 25,
]
# Percent-encodings that are no UTF-8, or decode to NUL, a slash, a newline, a direction mark.
PERCENT_JUNK = ["%00", "%ff", "%C0%80", "%ED%A0%80", "%ZZ", "%", "%2F", "%25", "%E2%80%AE", "%0A", "%20", "+", "%2B"]
# Text a JSON body can carry but Python can hardly encode: lone surrogates, as escapes.
SURROGATE_ESCAPES = ["\\ud800", "\\udfff", "a\\ud83d", "\\udc80QTX-USD"]

text = st.one_of(
    st.text(max_size=30),
    st.sampled_from(ODD_STRINGS),
    st.text(st.characters(max_codepoint=0x20), max_size=8),
    st.integers(min_value=200, max_value=5000).map(lambda n: "x" * n),
)
long_text = st.integers(min_value=70_000, max_value=70_100).map(lambda n: "y" * n)


def string_json(value: str, ascii_only: bool = True) -> str:
    return json.dumps(value, ensure_ascii=ascii_only)


# A number as JSON text may spell it: exponents, NaN, Infinity, past every column, too precise.
ODD_NUMBERS = [
    "0",
    "-0",
    "0.0",
    "-1",
    "1e3",
    "1E+3",
    "-1e-7",
    "1e999",
    "NaN",
    "Infinity",
    "-Infinity",
    "0.000000001",
    "1.123456789",
    "0.00000001",
    "99999999999999999999.99999999",
    "100000000000000000000",
    "1" + "0" * 40,
    "1" + "0" * 400,
    "9223372036854775807",
    "9223372036854775808",
    "-9223372036854775809",
    "0.1",
    "10.005",
]
number_json = st.one_of(
    st.sampled_from(ODD_NUMBERS),
    st.integers().map(str),
    st.decimals(min_value=-(10**30), max_value=10**30, allow_nan=False, allow_infinity=False).map(
        lambda value: format(value, "f")
    ),
)
# Decimals as strings, nearly right and not.
DECIMAL_STRINGS = [
    "1",
    "1.00",
    "0.01",
    "10.00",
    "10.01",
    "99.99",
    "100",
    "100.25",
    "5.5",
    "0.005",
    "1.000000001",
    "-1",
    "0",
    "0.00",
    " 1",
    "1 ",
    "+1",
    "1,5",
    "1e3",
    "1E3",
    "NaN",
    "sNaN",
    "Infinity",
    "-inf",
    "0x10",
    "١٢٣",
    "1_000",
    ".5",
    "5.",
    "99999999999999999999.99999999",
    "100000000000000000000",
    "1" + "0" * 41,
    "0." + "0" * 40 + "1",
]
GOOD_DECIMALS = ["1", "1.00", "0.01", "10.00", "10.01", "9.99", "100"]
decimal_string_json = st.sampled_from(DECIMAL_STRINGS).map(string_json)

scalar_json = st.one_of(
    st.sampled_from(["null", "true", "false"]),
    number_json,
    decimal_string_json,
    text.map(string_json),
    text.map(lambda value: string_json(value, ascii_only=False)),
    st.sampled_from(SURROGATE_ESCAPES).map(lambda escape: f'"{escape}"'),
)


def json_array(items) -> str:
    return "[" + ",".join(items) + "]"


def json_object(pairs) -> str:
    return "{" + ",".join(f"{key}:{value}" for key, value in pairs) + "}"


junk_json = st.recursive(
    scalar_json,
    lambda inner: st.one_of(
        st.lists(inner, max_size=4).map(json_array),
        st.lists(st.tuples(text.map(string_json), inner), max_size=4).map(json_object),
    ),
    max_leaves=8,
)

# Text that is not JSON at all, or is JSON only to a lenient reader.
MALFORMED = [
    "",
    " ",
    "{",
    "}",
    "{]",
    '{"symbol": "QTX-USD",}',
    "{'symbol': 'QTX-USD'}",
    '{"symbol": "QTX-USD"} trailing',
    '{"symbol" "QTX-USD"}',
    '{"a": 01}',
    '{"a": .5}',
    '{"a": +1}',
    '{"a": 0x10}',
    '{"a": "\\x41"}',
    '{"a": "\\u12"}',
    '{"a": undefined}',
    "[" * 100_000,
    '{"a":' * 10_000,
    "null",
    "[]",
    "0",
    '"text"',
    "\x00",
    "\ufeff{}",
]
malformed_json = st.one_of(
    st.sampled_from(MALFORMED),
    st.text(max_size=40),
    junk_json.map(lambda body: body[: max(0, len(body) - 1)]),
)


# --- Bodies ------------------------------------------------------------------------------------


def object_json(names, plausible: dict) -> st.SearchStrategy[str]:
    """A JSON object over the real field `names` (plausible values or junk), with now and
    then a field of no such name, or one of them twice."""
    name_json = (
        st.one_of(st.sampled_from(names).map(string_json), text.map(string_json)) if names else text.map(string_json)
    )

    def value_of(name_text):
        name = json.loads(name_text)
        good = plausible.get(name)
        return st.one_of(good, junk_json) if good is not None else junk_json

    pair = name_json.flatmap(lambda name: value_of(name).map(lambda value: (name, value)))
    return st.lists(pair, max_size=len(names) + 2).map(json_object)


def well_formed_json(required, optional, plausible: dict) -> st.SearchStrategy[str]:
    """An object that may well be valid: every required field, some optional ones, each with a
    plausible value (the plausible values themselves are sometimes wrong)."""
    return st.fixed_dictionaries(
        {name: plausible[name] for name in required}, optional={name: plausible[name] for name in optional}
    ).map(lambda fields: json_object((string_json(name), value) for name, value in fields.items()))


def often(strategy, others, times=4):
    """`strategy` `times` times as often as each of `others` (one_of would count it once: it
    drops a strategy it already has)."""
    return st.sampled_from([strategy] * times + list(others)).flatmap(lambda chosen: chosen)


def encoded(body: str) -> st.SearchStrategy[bytes]:
    """Mostly UTF-8; now and then bytes that are not: latin-1, UTF-16, a BOM, lone surrogates, junk."""
    return often(
        st.just(body.encode("utf-8", "surrogatepass")),
        [
            st.just(body.encode("utf-16", "surrogatepass")),
            st.just(b"\xef\xbb\xbf" + body.encode("utf-8", "surrogatepass")),
            st.just(body.encode("latin-1", "replace")),
            st.binary(max_size=40),
            st.just(b"\xff\xfe\xc0\x80" + body.encode("utf-8", "surrogatepass")),
        ],
        times=12,
    )


CONTENT_TYPES = [
    "text/plain",
    "application/x-www-form-urlencoded",
    "multipart/form-data",
    "multipart/form-data; boundary=x",
    "application/xml",
    "",
    "application/json; charset=latin-1",
    "application/json; charset=utf-16",
    "application/json; charset=nonsense",
    "application/json;;;",
    "application/json; boundary",
    "application/jsonx",
    "application/*",
    "*/*",
    "application/vnd.api+json",
    "appl\x00ication/json",
    "application/json; charset=\u00e9",
]
content_type = often(
    st.sampled_from(["application/json", "application/json; charset=utf-8"]), [st.sampled_from(CONTENT_TYPES)]
)


# --- The database's fingerprint ------------------------------------------------------------------


def fingerprint() -> dict:
    """Counts and sums of every table a request can write: equal before and after a request,
    nothing was written (last_used_at of an API key aside: using a key is no change)."""

    def sums(queryset, *fields):
        return tuple(queryset.aggregate(Count("pk"), *(Sum(name) for name in fields), Max("pk")).values())

    return {
        "users": sums(User.objects.all()),
        "active staff": sums(User.objects.filter(is_active=True, is_staff=True)),
        "keys": sums(ApiKey.objects.filter(revoked=False)),
        "revoked keys": sums(ApiKey.objects.filter(revoked=True)),
        "balances": sums(Balance.objects.all(), "available", "held"),
        "ledger": sums(LedgerEntry.objects.all(), "available_delta", "held_delta"),
        "orders": sums(Order.objects.all(), "quantity", "filled_quantity", "price"),
        "orders by status": sorted(Order.objects.values_list("status").annotate(Count("pk"))),
        "fills": sums(Fill.objects.all(), "quantity", "fee"),
        "trades": sums(Trade.objects.all(), "quantity"),
        "book": sums(BookLevel.objects.all(), "quantity"),
        "candles": sums(Candle.objects.all(), "volume"),
        "markets": sums(Market.objects.all(), "book_seq"),
        "market status": sorted(Market.objects.values_list("symbol", "status")),
        "outstanding tokens": sums(OutstandingToken.objects.all()),
        "blacklisted tokens": sums(BlacklistedToken.objects.all()),
    }


class Fingerprints:
    """The fingerprint before each request is the one after the request before it (nothing
    else writes meanwhile), so each request reads it once."""

    def __init__(self):
        self.last = fingerprint()

    def next(self) -> tuple[dict, dict]:
        """(before, after) of the request just made."""
        before, self.last = self.last, fingerprint()
        return before, self.last


# --- The log --------------------------------------------------------------------------------------


class LogWatch(logging.Handler):
    """Keeps every record at ERROR or above, and every record that carries a traceback."""

    def __init__(self):
        super().__init__(level=logging.DEBUG)
        self.records = []

    def emit(self, record):
        if record.levelno >= logging.ERROR or record.exc_info or record.exc_text or record.stack_info:
            self.records.append(record)

    def __enter__(self):
        logging.getLogger().addHandler(self)
        return self

    def __exit__(self, *exc):
        logging.getLogger().removeHandler(self)

    def take(self) -> list[str]:
        """What was logged since the last call, one line a record (with its traceback's last line)."""
        found = [
            f"{record.levelname} {record.name}: {record.getMessage()[:300]}"
            + (f" [{record.exc_info[0].__name__}: {record.exc_info[1]}]" if record.exc_info else "")
            for record in self.records
        ]
        self.records.clear()
        return found


def check_error_shape(body) -> None:
    """`{"error": {"code", "message", "field"}}`: code and message non-empty text, field text or null."""
    assert isinstance(body, dict) and set(body) == {"error"}, body
    error = body["error"]
    assert isinstance(error, dict) and set(error) == {"code", "message", "field"}, error
    assert isinstance(error["code"], str) and error["code"], error
    assert isinstance(error["message"], str) and error["message"].strip(), error
    assert error["field"] is None or isinstance(error["field"], str), error
