"""What every API door shares: strict input, one error shape, pagination.

The REST API (docs/API.md) is a thin door onto the services. This module holds the
pieces that make it strict and uniform, so the apps' `api.py` files hold only their views:

- `StrictJSONParser` reads numbers as Decimal (never float) and keeps NaN, Infinity and
  exponents recognisable, so the field that receives one can refuse it by name;
- strict fields and `StrictSerializer`: wrong types, unknown fields and malformed decimals
  are refused with a sentence that names the field;
- `exception_handler`: every error, from a service or from DRF, becomes
  `{"error": {"code", "message", "field"}}` with the status docs/API.md ("Errors") gives;
- `ApiPagination`, keyset pages over ids.

The throttles and the rate-limit headers are in quantumtrades/core/throttles.py.
"""

import json
import logging
import math
import re
from collections.abc import Mapping
from decimal import Decimal, InvalidOperation

from django.core.exceptions import PermissionDenied as DjangoPermissionDenied
from django.core.exceptions import RequestDataTooBig
from django.http import Http404, JsonResponse
from django.urls import Resolver404, resolve
from django.views.decorators.csrf import csrf_exempt
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiExample, OpenApiParameter, OpenApiResponse, extend_schema_field
from rest_framework import exceptions, serializers, status
from rest_framework.pagination import Cursor, CursorPagination
from rest_framework.parsers import JSONParser
from rest_framework.response import Response
from rest_framework.settings import api_settings

from quantumtrades.core import unavailable
from quantumtrades.core.errors import ErrorCode, InvalidInput, ServiceError, error_body
from quantumtrades.core.money import MONEY_DECIMAL_PLACES, MONEY_MAX, decimal_places

log = logging.getLogger(__name__)

# A request body larger than this is refused (413): no API body needs more than a few hundred bytes.
MAX_BODY_BYTES = 64 * 1024
# Longest text accepted where a decimal is expected ("99999999999999999999.99999999" is 29).
MAX_DECIMAL_TEXT = 40
# A decimal as JSON carries it: digits, an optional point with digits after it. No sign
# other than a leading minus, no exponent, no spaces.
DECIMAL_TEXT = re.compile(r"-?[0-9]+(\.[0-9]+)?")
BEARER = 'Bearer realm="api"'


# --- Parsing -----------------------------------------------------------------------------


class ExponentNumber:
    """A JSON number written with an exponent (1e3): kept so a field can refuse it by name."""

    def __init__(self, text):
        self.text = text


class NonFiniteNumber:
    """NaN, Infinity or -Infinity in a JSON body (Python's json accepts them; JSON does not)."""

    def __init__(self, text):
        self.text = text


def _parse_float(text):
    return ExponentNumber(text) if "e" in text or "E" in text else Decimal(text)


def _no_duplicate_keys(pairs):
    seen = {}
    for key, value in pairs:
        if key in seen:
            raise exceptions.ParseError(f"The field {key[:64]!r} appears twice in the body.")
        seen[key] = value
    return seen


def loads_strict(text: str):
    """JSON as the API reads it: decimals exact, exponents and NaN kept to be refused by
    name, a key twice refused (ParseError). Also what /ws order entry reads."""
    return json.loads(
        text, parse_float=_parse_float, parse_constant=NonFiniteNumber, object_pairs_hook=_no_duplicate_keys
    )


class PayloadTooLarge(exceptions.APIException):
    status_code = status.HTTP_413_REQUEST_ENTITY_TOO_LARGE
    default_detail = f"The request body is larger than {MAX_BODY_BYTES} bytes."
    error_code = ErrorCode.PAYLOAD_TOO_LARGE


class StrictJSONParser(JSONParser):
    """JSON bodies with decimals kept exact: numbers become Decimal, never float.

    Plain JSON numbers ("quantity": 1.5) are accepted as the decimals they spell;
    exponents, NaN and Infinity survive parsing as markers that every field refuses,
    so the error names the field instead of the whole body.
    """

    def parse(self, stream, media_type=None, parser_context=None):
        raw = stream.read(MAX_BODY_BYTES + 1) if stream is not None else b""
        if len(raw) > MAX_BODY_BYTES:
            raise PayloadTooLarge()
        try:
            return loads_strict(raw.decode("utf-8"))
        except UnicodeDecodeError:
            raise exceptions.ParseError("The request body is not UTF-8 text.") from None
        except (ValueError, RecursionError) as exc:
            raise exceptions.ParseError(f"The request body is not valid JSON: {exc}.") from None


# --- Strict fields -------------------------------------------------------------------------
# Messages read after the field's name ("quantity is required."); the exception handler
# puts the name in front.

STRICT_MESSAGES = {
    "required": "is required.",
    "null": "may not be null.",
    "blank": "may not be blank.",
    "invalid": "has the wrong type.",
    "max_length": "must be at most {max_length} characters long.",
    "min_length": "must be at least {min_length} characters long.",
}


class StrictCharField(serializers.CharField):
    """Text only: a number or a boolean where text is expected is refused, not converted."""

    default_error_messages = {
        **STRICT_MESSAGES,
        "invalid": "must be a string.",
        "not_printable": "must be printable text.",
    }

    def __init__(self, *, printable=True, **kwargs):
        kwargs.setdefault("trim_whitespace", False)
        self.printable = printable
        super().__init__(**kwargs)

    def to_internal_value(self, data):
        if not isinstance(data, str):
            self.fail("invalid")
        if self.printable and not data.isprintable():
            self.fail("not_printable")
        return super().to_internal_value(data)


class StrictChoiceField(serializers.ChoiceField):
    """One of the listed strings, spelt exactly."""

    default_error_messages = {**STRICT_MESSAGES, "invalid_choice": "must be one of: {choices}."}

    def to_internal_value(self, data):
        if not isinstance(data, str) or data not in self.choice_strings_to_values:
            self.fail("invalid_choice", choices=", ".join(str(choice) for choice in self.choices))
        return self.choice_strings_to_values[data]


class StrictBooleanField(serializers.BooleanField):
    """JSON true or false; "true", 1 and "yes" are refused."""

    default_error_messages = {**STRICT_MESSAGES, "invalid": "must be true or false."}

    def to_internal_value(self, data):
        if not isinstance(data, bool):
            self.fail("invalid")
        return data


@extend_schema_field(
    {
        "type": "string",
        "pattern": r"^[0-9]{1,20}(\.[0-9]{1,8})?$",
        "example": "100.25",
        "description": "A decimal written as a string, at most 8 decimal places, no exponent.",
    }
)
class DecimalInputField(serializers.Field):
    """An amount (price, quantity, balance change) exactly as the client wrote it.

    Accepts a decimal string ("100.25") or a plain JSON number (100.25, read as a Decimal
    by StrictJSONParser). Refuses booleans, lists, objects, NaN, Infinity, exponents,
    more than 8 decimal places, amounts past MONEY_MAX and anything not positive (see
    SignedDecimalInputField for amounts that may be negative). Never rounds.
    """

    default_error_messages = {
        **STRICT_MESSAGES,
        "invalid": 'must be a decimal number written as a string, such as "100.25".',
        "exponent": 'must be written without an exponent, such as "1000" rather than "1e3".',
        "not_finite": "must be a finite number (NaN and Infinity are not amounts).",
        "too_long": f"is longer than {MAX_DECIMAL_TEXT} characters.",
        "not_positive": "must be positive.",
        "zero": "must not be zero.",
        "too_large": "is too large.",
        "too_precise": f"has more than {MONEY_DECIMAL_PLACES} decimal places.",
    }

    signed = False

    def to_internal_value(self, data):
        if isinstance(data, NonFiniteNumber):
            self.fail("not_finite")
        if isinstance(data, ExponentNumber):
            self.fail("exponent")
        if isinstance(data, bool) or not isinstance(data, str | int | Decimal):
            self.fail("invalid")
        if isinstance(data, str):
            if len(data) > MAX_DECIMAL_TEXT:
                self.fail("too_long")
            if not DECIMAL_TEXT.fullmatch(data):
                self._fail_on_text(data)
        elif isinstance(data, int) and abs(data) > MONEY_MAX:
            self.fail("too_large")
        try:
            value = Decimal(data)
        except (InvalidOperation, ValueError):
            self.fail("invalid")
        if not value.is_finite():
            self.fail("not_finite")
        if value == 0 and self.signed:
            self.fail("zero")
        if value <= 0 and not self.signed:
            self.fail("not_positive")
        if abs(value) > MONEY_MAX:
            self.fail("too_large")
        if decimal_places(value) > MONEY_DECIMAL_PLACES:
            self.fail("too_precise")
        return value

    def _fail_on_text(self, text):
        try:
            value = Decimal(text.strip())
        except InvalidOperation:
            self.fail("invalid")
        if not value.is_finite():
            self.fail("not_finite")
        if "e" in text.lower():
            self.fail("exponent")
        self.fail("invalid")

    def to_representation(self, value):
        return format(value, "f")


@extend_schema_field(
    {
        "type": "string",
        "pattern": r"^-?[0-9]{1,20}(\.[0-9]{1,8})?$",
        "example": "-250.50",
        "description": "A non-zero decimal written as a string, at most 8 decimal places, no exponent.",
    }
)
class SignedDecimalInputField(DecimalInputField):
    """A DecimalInputField that takes negative amounts too (never zero)."""

    signed = True


@extend_schema_field(OpenApiTypes.INT)
class QueryIntegerField(serializers.IntegerField):
    """A whole number in a query string: digits only, within bounds."""

    default_error_messages = {
        **STRICT_MESSAGES,
        "invalid": "must be a whole number.",
        "max_value": "must be at most {max_value}.",
        "min_value": "must be at least {min_value}.",
    }

    def to_internal_value(self, data):
        # 19 digits reach the largest bigint (2**63 - 1); the bounds refuse what is past it.
        if not isinstance(data, str) or not re.fullmatch(r"[0-9]{1,19}", data):
            self.fail("invalid")
        return int(data)


class InputSerializer(serializers.Serializer):
    """A serializer of request input, whose fields are built once per class.

    DRF deep-copies every declared field for each serializer it makes, so that a field may
    keep state per request. Input fields here keep none: they validate and convert, and read
    neither the serializer's context nor `partial`. So every request shares one bound copy,
    made for a serializer of the class with no data and no context. The deep copies were
    four fifths of parsing an order's body (266 against 59 us per body, 3 % of an order's
    CPU through daphne; docs/BENCHMARKS.md).
    """

    @property
    def fields(self):
        cls = type(self)
        fields = cls.__dict__.get("_shared_fields")
        if fields is None:
            # Two threads may both build it; either copy serves.
            fields = cls._shared_fields = super(InputSerializer, cls()).fields
        return fields


class StrictSerializer(InputSerializer):
    """An input serializer that refuses fields it does not declare."""

    default_error_messages = {
        "invalid": "The request body must be a JSON object, not {datatype}.",
        "null": "The request body must be a JSON object, not null.",
    }

    @classmethod
    def parse_body(cls, request) -> dict:
        """The request's body, checked: the validated data, or a ValidationError (400)."""
        if request.data is None:
            raise serializers.ValidationError(cls.default_error_messages["null"], code="null")
        serializer = cls(data=request.data)
        serializer.is_valid(raise_exception=True)
        return serializer.validated_data

    def to_internal_value(self, data):
        if isinstance(data, Mapping):
            unknown = [key for key in data if key not in self.fields]
            if unknown:
                allowed = ", ".join(self.fields) or "none"
                raise serializers.ValidationError(
                    {unknown[0]: [f"is not a field of this request (allowed: {allowed})."]}, code="unknown_field"
                )
        return super().to_internal_value(data)


class QuerySerializer(InputSerializer):
    """Query parameters: declared ones are checked strictly, others are ignored."""

    @classmethod
    def parse(cls, request) -> dict:
        serializer = cls(data=request.query_params.dict())
        serializer.is_valid(raise_exception=True)
        return serializer.validated_data


# --- The error shape -----------------------------------------------------------------------


class ErrorBodySerializer(serializers.Serializer):
    code = serializers.CharField(help_text="A stable machine code, e.g. INVALID, INSUFFICIENT_FUNDS, NOT_FOUND.")
    message = serializers.CharField(help_text="A sentence for people, naming the field when there is one.")
    field = serializers.CharField(allow_null=True, help_text="The input field at fault, or null.")


class ErrorSerializer(serializers.Serializer):
    error = ErrorBodySerializer()


ERROR_DESCRIPTIONS = {
    400: "Bad input: malformed JSON, unknown field, wrong type, bad enum, rule broken, insufficient funds.",
    401: "No valid access token (missing, malformed, expired, wrong type or revoked).",
    403: "Authenticated, but not allowed.",
    404: "No such resource (someone else's order is missing too).",
    409: "The state does not allow it: order no longer open, market halted, name taken.",
    413: "The request body is too large.",
    415: "The body is not application/json.",
    429: "Throttled or locked out: retry after the Retry-After header's seconds.",
}


def error_responses(*codes) -> dict:
    """The documented error responses of an operation, all in the one error shape."""
    return {code: OpenApiResponse(ErrorSerializer, description=ERROR_DESCRIPTIONS[code]) for code in codes}


CODES = [
    (exceptions.ParseError, ErrorCode.PARSE_ERROR),
    (exceptions.NotAuthenticated, ErrorCode.NOT_AUTHENTICATED),
    (exceptions.AuthenticationFailed, ErrorCode.TOKEN_INVALID),
    (exceptions.PermissionDenied, ErrorCode.PERMISSION_DENIED),
    (exceptions.NotFound, ErrorCode.NOT_FOUND),
    (exceptions.MethodNotAllowed, ErrorCode.METHOD_NOT_ALLOWED),
    (exceptions.NotAcceptable, ErrorCode.NOT_ACCEPTABLE),
    (exceptions.UnsupportedMediaType, ErrorCode.UNSUPPORTED_MEDIA_TYPE),
    (exceptions.Throttled, ErrorCode.THROTTLED),
]


def _first_error(detail, prefix=None):
    """(field, message) of the first error in a DRF ValidationError's detail."""
    if isinstance(detail, dict):
        key, value = next(iter(detail.items()))
        field = None if key == api_settings.NON_FIELD_ERRORS_KEY else str(key)
        if prefix and field:
            field = f"{prefix}.{field}"
        return _first_error(value, field or prefix)
    if isinstance(detail, list) and detail:
        return _first_error(detail[0], prefix)
    return prefix, str(detail)


def _named(field, message):
    if not field or message.startswith(field):
        return message
    return f"{field} {message}" if message[:1].islower() else f"{field}: {message}"


def _token_message(exc) -> str:
    """simplejwt packs the reason ("Token is expired") into a dict; say it in one sentence."""
    detail = exc.detail
    if isinstance(detail, dict):
        messages = detail.get("messages") or []
        reason = messages[0].get("message") if messages and isinstance(messages[0], dict) else None
        reason = reason or detail.get("detail") or "Token is invalid"
    else:
        reason = str(detail)
    return f"The access token was refused: {str(reason).rstrip('.')}."


def input_error(exc) -> tuple[int, dict]:
    """(status, {"code", "message", "field"}) of a service's error or a serializer's
    ValidationError: what the REST API answers, and /ws order entry too."""
    if isinstance(exc, ServiceError):
        # The engine's sentences usually name the field; when one does not, say it first.
        message = exc.message if not exc.field or exc.field in exc.message else _named(exc.field, exc.message)
        return exc.status, error_body(exc.code, message, exc.field)["error"]
    field, message = _first_error(exc.detail)
    return 400, error_body(ErrorCode.INVALID, _named(field, message), field)["error"]


def exception_handler(exc, context):
    """Turn any exception raised in an API view into the one error shape.

    Service errors keep their code, message and field; DRF's own errors get a stable
    code; a lost database is 503 SERVICE_UNAVAILABLE (quantumtrades.core.unavailable);
    anything unexpected is logged and answered 500 in the same shape.
    """
    headers = {}
    if isinstance(exc, Http404):
        exc = exceptions.NotFound()
    elif isinstance(exc, DjangoPermissionDenied):
        exc = exceptions.PermissionDenied()
    elif isinstance(exc, RequestDataTooBig):
        # Django's own limit, met by whatever reads the body first (DRF's parsers do).
        exc = PayloadTooLarge()

    if isinstance(exc, ServiceError | exceptions.ValidationError):
        status_code, error = input_error(exc)
        body = {"error": error}
    elif isinstance(exc, exceptions.APIException):
        status_code = exc.status_code
        # Every APIException names its code (error_code) or is one of CODES; any other
        # would have a code docs/API.md does not list, so it gets the generic one.
        fallback = ErrorCode.INVALID if status_code < 500 else ErrorCode.INTERNAL_ERROR
        code = getattr(exc, "error_code", None) or next((name for cls, name in CODES if isinstance(exc, cls)), fallback)
        if isinstance(exc, exceptions.AuthenticationFailed) and code == ErrorCode.TOKEN_INVALID:
            message = _token_message(exc)
        elif isinstance(exc, exceptions.NotAuthenticated):
            message = (
                "Authentication credentials were not provided: send 'Authorization: Bearer <access token>' "
                "or 'Authorization: Api-Key <key>'."
            )
        else:
            message = str(exc.detail) if not isinstance(exc.detail, dict | list) else _first_error(exc.detail)[1]
        body = error_body(code, message, getattr(exc, "field", None))
        wait = getattr(exc, "wait", None)
        if wait is not None:
            headers["Retry-After"] = str(max(1, math.ceil(wait)))
            if isinstance(exc, exceptions.Throttled):
                body["error"]["message"] = f"Too many requests: retry in {headers['Retry-After']} seconds."
    elif unavailable.is_unavailable(exc):
        # The database went away under this request (restart, failover, killed
        # connection): its transaction was rolled back, so "try again" is the truth.
        unavailable.recover(exc)
        status_code, body = 503, unavailable.error_body()
        headers["Retry-After"] = str(unavailable.RETRY_AFTER_SECONDS)
    else:
        log.exception("Unexpected error in %s", context.get("view").__class__.__name__)
        status_code, body = (
            500,
            error_body(ErrorCode.INTERNAL_ERROR, "Something went wrong on our side; nothing was changed."),
        )
    if status_code == 401:
        headers["WWW-Authenticate"] = getattr(exc, "auth_header", None) or BEARER
    # Imported here: REST_FRAMEWORK names this module, and rest_framework.views reads
    # REST_FRAMEWORK while it is imported.
    from rest_framework.views import set_rollback

    set_rollback()
    return Response(body, status=status_code, headers=headers)


# Exempt like every DRF view: API clients carry tokens, not cookies, and this view
# changes nothing; without it a stray POST would get CSRF's HTML page instead of JSON.
@csrf_exempt
def api_not_found(request, *args, **kwargs):
    """The last route under /api/: an unknown path answers 404 in the error shape, not HTML."""
    message = f"There is no API endpoint at {request.path[:200]}."
    if request.path.endswith("/"):
        try:
            if resolve(request.path.rstrip("/")).func is not api_not_found:
                message += " API paths have no trailing slash."
        except Resolver404:
            pass
    return JsonResponse(error_body(ErrorCode.NOT_FOUND, message), status=404)


# --- Pagination ------------------------------------------------------------------------------


class PageQuery(QuerySerializer):
    cursor = serializers.CharField(required=False, max_length=200)
    page_size = QueryIntegerField(required=False, min_value=1, max_value=200)


# The largest id a row can have (a bigint), and a cursor that DRF could not decode.
MAX_ROW_ID = 2**63 - 1
BAD_CURSOR = Cursor(offset=0, reverse=False, position="")


class ApiPagination(CursorPagination):
    """Keyset pages of a list, newest first by id: `{next, previous, results}`.

    A page is a range of an index (`id < the last one seen`, on the (user, -id) indexes),
    never an OFFSET and never a COUNT, so page 20,000 of a million rows costs what page 1
    does. `next` and `previous` are links carrying an opaque `cursor`. `cursor` and
    `page_size` are checked strictly: a bad one is a 400 naming the parameter.
    """

    page_size = 50
    max_page_size = 200
    page_size_query_param = "page_size"
    ordering = "-id"

    def paginate_queryset(self, queryset, request, view=None):
        query = PageQuery.parse(request)
        self.requested_size = query.get("page_size", self.page_size)
        return super().paginate_queryset(queryset, request, view)

    def get_page_size(self, request):
        return self.requested_size

    def decode_cursor(self, request):
        try:
            cursor = super().decode_cursor(request)
        except exceptions.NotFound:
            cursor = BAD_CURSOR
        # DRF checks the offset and the direction but hands the position (an id) to the
        # query as it came: one made by hand ("p=abc") was a 500.
        position = cursor.position if cursor is not None else None
        if position is not None and not (re.fullmatch(r"[0-9]{1,19}", position) and int(position) <= MAX_ROW_ID):
            raise InvalidInput("cursor is not one that a next or previous link gave.", field="cursor")
        return cursor

    def get_schema_operation_parameters(self, view):
        return [
            {
                "name": "cursor",
                "required": False,
                "in": "query",
                "description": "Where the page starts: copy it from a response's next or previous link.",
                "schema": {"type": "string", "minLength": 1, "maxLength": 200},
            },
            {
                "name": "page_size",
                "required": False,
                "in": "query",
                "description": f"Results per page (default {self.page_size}, at most {self.max_page_size}).",
                "schema": {"type": "integer", "minimum": 1, "maximum": self.max_page_size},
            },
        ]


def query_parameter(name, description, *, schema=None, enum=None, required=False, example=None):
    """An OpenAPI query parameter for extend_schema (`schema`: a raw schema dict, default string)."""
    return OpenApiParameter(
        name,
        schema or OpenApiTypes.STR,
        OpenApiParameter.QUERY,
        required=required,
        description=description,
        enum=list(enum) if enum is not None else None,
        examples=[OpenApiExample(str(example), value=example)] if example is not None else None,
    )


def symbol_path_parameter(schema=None):
    """The market symbol in a path, e.g. /api/markets/QTX-USD (`schema`: its raw schema, default string)."""
    return OpenApiParameter(
        "symbol",
        schema or OpenApiTypes.STR,
        OpenApiParameter.PATH,
        description="The market, e.g. QTX-USD.",
        examples=[OpenApiExample("QTX-USD", value="QTX-USD")],
    )
