"""REST API for accounts: registration, JWT login, refresh, logout; API keys; balances and the ledger.

Thin doors (docs/API.md): each view checks its input with a strict serializer, calls
one service or selector and renders the result. Each login is a family of simplejwt tokens
(accounts.tokens): refresh tokens rotate and work once, a used one coming back ends the
whole login, and logout ends it; an ended login's access tokens are refused within
seconds (accounts.authentication), not only when they expire.
"""

from django.conf import settings
from django.contrib.auth import authenticate, password_validation
from django.core.exceptions import ValidationError as DjangoValidationError
from django.core.validators import validate_email
from django.db import IntegrityError
from drf_spectacular.utils import OpenApiExample, OpenApiResponse, extend_schema
from rest_framework import exceptions, generics, serializers, status
from rest_framework.authentication import SessionAuthentication
from rest_framework.permissions import AllowAny, IsAdminUser, IsAuthenticated
from rest_framework.response import Response
from rest_framework.views import APIView
from rest_framework_simplejwt.settings import api_settings as jwt_settings
from rest_framework_simplejwt.tokens import RefreshToken

from accounts import keys, lockout, security, tokens
from accounts.authentication import ApiKeyAuthentication, ApiKeyScope, JWTAuthentication
from accounts.models import ApiKey, LedgerEntry, User
from accounts.payloads import balance_payload, user_payload
from accounts.selectors import asset_exists, balances_for_user, ledger_for_user, user_named
from accounts.services import balance_adjust, user_register
from accounts.usernames import username_normalise
from quantumtrades.core.api import (
    ApiPagination,
    QuerySerializer,
    SignedDecimalInputField,
    StrictCharField,
    StrictChoiceField,
    StrictSerializer,
    error_responses,
    query_parameter,
)
from quantumtrades.core.errors import Conflict, ErrorCode, InsufficientFunds, InvalidInput
from quantumtrades.core.throttles import AuthRateThrottle

# --- Errors of the auth doors ------------------------------------------------------------


class InvalidCredentials(exceptions.APIException):
    status_code = status.HTTP_401_UNAUTHORIZED
    default_detail = "Wrong username or password."
    error_code = ErrorCode.INVALID_CREDENTIALS


class OneTimeCodeRequired(exceptions.APIException):
    status_code = status.HTTP_401_UNAUTHORIZED
    default_detail = "This account has two-factor login: send the code from the authenticator app as otp."
    error_code = ErrorCode.OTP_REQUIRED
    field = "otp"


class OneTimeCodeInvalid(exceptions.APIException):
    status_code = status.HTTP_401_UNAUTHORIZED
    default_detail = "The one-time code was wrong or already used."
    error_code = ErrorCode.OTP_INVALID
    field = "otp"


class OneTimeCodeThrottled(exceptions.APIException):
    status_code = status.HTTP_429_TOO_MANY_REQUESTS
    error_code = ErrorCode.OTP_THROTTLED
    field = "otp"

    def __init__(self, seconds):
        self.wait = seconds
        super().__init__(f"Too many wrong one-time codes: try again in {seconds} seconds.")


class TwoFactorSetupRequired(exceptions.APIException):
    status_code = status.HTTP_403_FORBIDDEN
    default_detail = "Staff accounts must use two-factor login: set it up on the web (Account, Two-factor login) first."
    error_code = ErrorCode.TWO_FACTOR_REQUIRED


class LoginLocked(exceptions.APIException):
    status_code = status.HTTP_429_TOO_MANY_REQUESTS
    error_code = ErrorCode.LOGIN_LOCKED

    def __init__(self, seconds):
        self.wait = seconds
        super().__init__(f"Too many failed logins: try again in {seconds} seconds.")


# --- Serializers ---------------------------------------------------------------------------


class UserSerializer(serializers.Serializer):
    id = serializers.IntegerField()
    username = serializers.CharField()
    email = serializers.CharField(allow_blank=True)
    is_staff = serializers.BooleanField()
    date_joined = serializers.DateTimeField()


class RegisterInput(StrictSerializer):
    """A new account: a unique username, an email address and a password that passes the validators."""

    username = StrictCharField(max_length=150)
    email = StrictCharField(max_length=254)
    password = StrictCharField(max_length=128, printable=False)

    def validate_username(self, value):
        # Stored as Django stores every username (NFKC), checked as the model checks it.
        value = username_normalise(value)
        if len(value) > User._meta.get_field("username").max_length:  # NFKC may lengthen it
            raise serializers.ValidationError("must be at most 150 characters long.")
        try:
            User.username_validator(value)
        except DjangoValidationError as exc:
            if exc.code == "mixed_scripts":
                raise serializers.ValidationError(exc.message) from None
            raise serializers.ValidationError("may contain only letters, digits and @ . + - _") from None
        return value

    def validate_email(self, value):
        try:
            validate_email(value)
        except DjangoValidationError:
            raise serializers.ValidationError("must be a valid email address.") from None
        return value

    def validate(self, attrs):
        # Django's password validators, with the would-be user so similarity checks work.
        candidate = User(username=attrs["username"], email=attrs["email"])
        try:
            password_validation.validate_password(attrs["password"], user=candidate)
        except DjangoValidationError as exc:
            raise serializers.ValidationError({"password": [" ".join(exc.messages)]}) from None
        return attrs


class LoginInput(StrictSerializer):
    """Username and password, and the authenticator app's current code for an account with two-factor login."""

    username = StrictCharField(max_length=150)
    password = StrictCharField(max_length=128, printable=False)
    otp = StrictCharField(
        max_length=12, required=False, help_text="Six-digit code; required when the account has two-factor login."
    )


class TokenPairSerializer(serializers.Serializer):
    access = serializers.CharField(help_text="Access JWT: send as 'Authorization: Bearer <access>'.")
    refresh = serializers.CharField(help_text="Refresh JWT: trade it for a new pair at /api/auth/refresh.")
    expires_in = serializers.IntegerField(help_text="Seconds until the access token expires.")


class LoginSerializer(TokenPairSerializer):
    user = UserSerializer()


class RefreshInput(StrictSerializer):
    """A refresh token from login or an earlier refresh."""

    refresh = StrictCharField(max_length=4096)


class BalanceSerializer(serializers.Serializer):
    """A balance as its owner sees it (the private stream's `balance` message, without its type)."""

    asset = serializers.CharField()
    available = serializers.DecimalField(max_digits=28, decimal_places=8)
    held = serializers.DecimalField(max_digits=28, decimal_places=8)
    total = serializers.DecimalField(max_digits=28, decimal_places=8)


class UserBalanceSerializer(BalanceSerializer):
    username = serializers.CharField()


class LedgerEntrySerializer(serializers.Serializer):
    id = serializers.IntegerField()
    asset = serializers.CharField(source="asset_id")
    kind = serializers.ChoiceField(choices=LedgerEntry.Kind.choices)
    available_delta = serializers.DecimalField(max_digits=28, decimal_places=8)
    held_delta = serializers.DecimalField(max_digits=28, decimal_places=8)
    available_after = serializers.DecimalField(max_digits=28, decimal_places=8)
    held_after = serializers.DecimalField(max_digits=28, decimal_places=8)
    reference = serializers.CharField(allow_blank=True)
    reason = serializers.CharField(allow_blank=True)
    time = serializers.DateTimeField(source="created_at")


class LedgerFilter(QuerySerializer):
    asset = StrictCharField(max_length=12, required=False)
    kind = StrictChoiceField(choices=LedgerEntry.Kind.choices, required=False)


class BalanceAdjustInput(StrictSerializer):
    """An operator's adjustment, written to the ledger with its reason."""

    username = StrictCharField(max_length=150)
    asset = StrictCharField(max_length=12)
    amount = SignedDecimalInputField(help_text="Positive deposits, negative withdraws.")
    reason = StrictCharField(max_length=255)


def token_pair(refresh: RefreshToken) -> dict:
    return {
        "access": str(refresh.access_token),
        "refresh": str(refresh),
        "expires_in": int(jwt_settings.ACCESS_TOKEN_LIFETIME.total_seconds()),
    }


# --- Auth ------------------------------------------------------------------------------------


class AuthView(APIView):
    """The doors a client uses before it has an access token: no token is read here, so a
    stale one sent along cannot get in the way."""

    authentication_classes = []
    permission_classes = [AllowAny]
    throttle_classes = [AuthRateThrottle]


class RegisterView(AuthView):
    @extend_schema(
        operation_id="auth_register",
        tags=["auth"],
        summary="Create an account (and its paper-trading grant)",
        request=RegisterInput,
        examples=[
            OpenApiExample(
                "New trader",
                request_only=True,
                value={"username": "dave", "email": "dave@example.com", "password": "a-long-passphrase-2026"},
            )
        ],
        responses={201: UserSerializer, **error_responses(400, 409, 413, 415, 429)},
    )
    def post(self, request):
        data = RegisterInput.parse_body(request)
        if user_named(data["username"]) is not None:  # in any case: "Alice" is alice's
            raise Conflict("That username is taken.", field="username", code=ErrorCode.USERNAME_TAKEN)
        try:
            user = user_register(username=data["username"], email=data["email"], password=data["password"])
        except IntegrityError:  # registered by a concurrent request a moment ago
            raise Conflict("That username is taken.", field="username", code=ErrorCode.USERNAME_TAKEN) from None
        return Response(user_payload(user), status=201)


class LoginView(AuthView):
    @extend_schema(
        operation_id="auth_login",
        tags=["auth"],
        summary="Trade username and password for an access and a refresh token",
        description="Repeated failures lock the username at the client's address (and, past a higher "
        "count, the address) for a while: 429 LOGIN_LOCKED with Retry-After, on this API and the web login alike. "
        "An account with two-factor login also sends `otp`, the authenticator app's current code: without it "
        "401 OTP_REQUIRED, a wrong or reused one 401 OTP_INVALID, repeated wrong ones 429 OTP_THROTTLED.",
        request=LoginInput,
        examples=[
            OpenApiExample("Demo trader", request_only=True, value={"username": "alice", "password": "demo-pass-2026"})
        ],
        responses={200: LoginSerializer, **error_responses(400, 401, 403, 413, 415, 429)},
    )
    def post(self, request):
        data = LoginInput.parse_body(request)
        username, ip = data["username"], lockout.client_ip(request)
        seconds = lockout.locked_for(username, ip)
        if seconds:
            raise LoginLocked(seconds)
        user = authenticate(request._request, username=username, password=data["password"])
        if user is None:
            seconds = lockout.locked_for(username, ip)
            raise LoginLocked(seconds) if seconds else InvalidCredentials()
        second_factor(user, data.get("otp"))
        return Response({**token_pair(tokens.api_login_start(user=user)), "user": user_payload(user)})


def second_factor(user, code) -> None:
    """Tokens for an account with two-factor login take a code, as its web login does: the
    API is no way around it. (A refresh token carries the login it came from: refreshing
    asks for no code.)"""
    device = security.two_factor_device(user)
    if device is None:
        if settings.OTP_REQUIRED_FOR_STAFF and user.is_staff:
            raise TwoFactorSetupRequired()
        return
    if not code:
        raise OneTimeCodeRequired()
    seconds = security.two_factor_wait_seconds(device)
    if seconds:
        raise OneTimeCodeThrottled(seconds)
    if security.two_factor_verify(user=user, code=code.replace(" ", "")) is None:
        seconds = security.two_factor_wait_seconds(device)
        raise OneTimeCodeThrottled(seconds) if seconds else OneTimeCodeInvalid()


class RefreshView(AuthView):
    @extend_schema(
        operation_id="auth_refresh",
        tags=["auth"],
        summary="Trade a refresh token for a new pair of the same login (the refresh token works once)",
        description="A refresh token that was used already ends its whole login: every token of it is "
        "refused from then on (401 TOKEN_INVALID), and the client logs in again.",
        request=RefreshInput,
        responses={200: TokenPairSerializer, **error_responses(400, 401, 413, 415, 429)},
    )
    def post(self, request):
        data = RefreshInput.parse_body(request)
        return Response(token_pair(tokens.api_login_refresh(refresh=data["refresh"])))


class LogoutView(AuthView):
    @extend_schema(
        operation_id="auth_logout",
        tags=["auth"],
        summary="End the login: its refresh and access tokens are refused from then on",
        description="The refresh token itself is the credential, so a client whose access token "
        "has expired can still log out. Access tokens of the login are refused within seconds.",
        request=RefreshInput,
        responses={204: OpenApiResponse(description="Logged out."), **error_responses(400, 401, 413, 415, 429)},
    )
    def post(self, request):
        data = RefreshInput.parse_body(request)
        tokens.api_login_end(refresh=data["refresh"])
        return Response(status=204)


class MeView(APIView):
    @extend_schema(
        operation_id="auth_me",
        tags=["auth"],
        summary="Who am I",
        responses={200: UserSerializer, **error_responses(401, 429)},
    )
    def get(self, request):
        return Response(user_payload(request.user))


# --- API keys ---------------------------------------------------------------------------------


class ApiKeyInput(StrictSerializer):
    """A new key: a name to tell it apart, its scopes and, optionally, where it may be used from."""

    name = StrictCharField(max_length=keys.NAME_MAX, help_text="Your name for the key, e.g. 'market maker'.")
    scopes = serializers.ListField(
        child=StrictChoiceField(choices=ApiKey.Scope.choices),
        required=False,
        default=["read"],
        help_text='["read"] (default) or ["read", "trade"].',
    )
    allowed_ips = serializers.ListField(
        child=StrictCharField(max_length=64),
        required=False,
        default=list,
        max_length=keys.MAX_ALLOWED_IPS,
        help_text="CIDR networks (or single addresses) the key may be used from; empty: anywhere.",
    )


class ApiKeySerializer(serializers.Serializer):
    id = serializers.IntegerField()
    name = serializers.CharField()
    prefix = serializers.CharField(help_text="The key's first characters, to tell keys apart; not a secret.")
    scopes = serializers.ListField(child=serializers.ChoiceField(choices=ApiKey.Scope.choices))
    allowed_ips = serializers.ListField(child=serializers.CharField())
    created_at = serializers.DateTimeField()
    last_used_at = serializers.DateTimeField(allow_null=True, help_text="To the minute; null if never used.")


class NewApiKeySerializer(ApiKeySerializer):
    key = serializers.CharField(
        help_text="The key: shown in this answer only, stored hashed. Send it as 'Authorization: Api-Key <key>'."
    )


class ApiKeysDoor(APIView):
    # The web session too, so the account page's scripts could call these (CSRF enforced);
    # API keys are read only to refuse them with 403 rather than 401.
    authentication_classes = [JWTAuthentication, ApiKeyAuthentication, SessionAuthentication]
    permission_classes = [IsAuthenticated, ApiKeyScope]
    people_only = True


class ApiKeysView(ApiKeysDoor):
    @extend_schema(
        operation_id="keys_list",
        tags=["keys"],
        summary="My API keys (never their secrets), newest first",
        responses={200: ApiKeySerializer(many=True), **error_responses(401, 403, 429)},
    )
    def get(self, request):
        return Response([keys.api_key_data(key) for key in keys.api_keys_for_user(request.user)])

    @extend_schema(
        operation_id="keys_create",
        tags=["keys"],
        summary="Make an API key (the answer is the only time its secret is shown)",
        request=ApiKeyInput,
        examples=[
            OpenApiExample(
                "A trading bot's key, usable from one network",
                request_only=True,
                value={"name": "market maker", "scopes": ["read", "trade"], "allowed_ips": ["203.0.113.0/24"]},
            )
        ],
        responses={201: NewApiKeySerializer, **error_responses(400, 401, 403, 413, 415, 429)},
    )
    def post(self, request):
        data = ApiKeyInput.parse_body(request)
        key, secret = keys.api_key_create(
            user=request.user, name=data["name"], scopes=data["scopes"], allowed_ips=data["allowed_ips"]
        )
        return Response(keys.api_key_data(key, secret), status=201)


class ApiKeyView(ApiKeysDoor):
    @extend_schema(
        operation_id="keys_revoke",
        tags=["keys"],
        summary="Revoke one of my API keys: it answers 401 from then on",
        responses={204: OpenApiResponse(description="Revoked."), **error_responses(401, 403, 404, 429)},
    )
    def delete(self, request, key_id):
        keys.api_key_revoke(user=request.user, key_id=key_id)
        return Response(status=204)


# --- Balances and the ledger -----------------------------------------------------------------


class BalancesView(APIView):
    @extend_schema(
        operation_id="user_balances",
        tags=["user"],
        summary="My balances, one per asset",
        responses={200: BalanceSerializer(many=True), **error_responses(401, 429)},
    )
    def get(self, request):
        return Response(
            [
                balance_payload(asset=balance.asset_id, available=balance.available, held=balance.held)
                for balance in balances_for_user(request.user)
            ]
        )


class TransactionsView(generics.ListAPIView):
    serializer_class = LedgerEntrySerializer
    pagination_class = ApiPagination

    def get_queryset(self):
        query = LedgerFilter.parse(self.request)
        return ledger_for_user(self.request.user, asset=query.get("asset"), kind=query.get("kind"))

    @extend_schema(
        operation_id="user_transactions",
        tags=["user"],
        summary="My ledger: every change to my balances, newest first",
        parameters=[
            query_parameter(
                "asset", "Only this asset, e.g. USD.", schema={"type": "string", "minLength": 1, "maxLength": 12}
            ),
            query_parameter("kind", "Only this kind of entry.", enum=LedgerEntry.Kind.values),
        ],
        responses={200: LedgerEntrySerializer(many=True), **error_responses(400, 401, 404, 429)},
    )
    def get(self, request, *args, **kwargs):
        return super().get(request, *args, **kwargs)


class BalanceAdjustView(APIView):
    # Staff only, and never with an API key (keys read and trade; they do not move money).
    permission_classes = [IsAdminUser, ApiKeyScope]

    @extend_schema(
        operation_id="user_balance_adjust",
        tags=["user"],
        summary="Staff only: deposit (positive amount) or withdraw (negative) through the ledger",
        request=BalanceAdjustInput,
        examples=[
            OpenApiExample(
                "Deposit",
                request_only=True,
                value={"username": "alice", "asset": "USD", "amount": "500.00", "reason": "wire received"},
            ),
            OpenApiExample(
                "Withdrawal",
                request_only=True,
                value={"username": "alice", "asset": "USD", "amount": "-200.00", "reason": "payout"},
            ),
        ],
        responses={200: UserBalanceSerializer, **error_responses(400, 401, 403, 413, 415, 429)},
    )
    def put(self, request):
        data = BalanceAdjustInput.parse_body(request)
        user = user_named(data["username"])
        if user is None:
            raise InvalidInput(f"There is no user {data['username'][:150]!r}.", field="username")
        if not asset_exists(data["asset"]):
            raise InvalidInput(f"There is no asset {data['asset']!r}.", field="asset")
        try:
            balance_adjust(
                user=user, asset=data["asset"], amount=data["amount"], reason=data["reason"], created_by=request.user
            )
        except InsufficientFunds as exc:
            # The ledger names the engine's field (quantity); here the amount is at fault.
            raise InsufficientFunds(exc.message, field="amount") from None
        balance = next(b for b in balances_for_user(user) if b.asset_id == data["asset"])
        return Response(
            {
                "username": user.username,
                **balance_payload(asset=balance.asset_id, available=balance.available, held=balance.held),
            }
        )
