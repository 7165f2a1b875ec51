"""Fixtures and helpers for the REST API's tests (accounts, marketdata and orders).

Imported by each API test module (`from tests.api_support import *`), so the API tests
carry their own cast without touching the apps' conftest files: alice and bob trade
QTX-USD with funded balances, operator is staff.
"""

import copy
import uuid
from decimal import Decimal

import pytest
from django.conf import settings as django_settings
from rest_framework.test import APIClient

from accounts.models import Balance, User
from accounts.services import balance_deposit
from accounts.tokens import api_login_start
from orders.models import Order
from tests.factories import fee_account, qtx_usd_market

__all__ = [
    "CONFIGURED_HASHERS",
    "STARTING_QTX",
    "STARTING_USD",
    "access_token",
    "alice",
    "anon",
    "api_isolation",
    "as_alice",
    "as_bob",
    "as_operator",
    "assert_error",
    "balances_of",
    "bob",
    "client_for",
    "fees",
    "market",
    "operator",
    "orders_of",
]

STARTING_USD = Decimal("10000")
STARTING_QTX = Decimal("100")
# The project's hashers, Argon2 first, before the fixture below swaps in a fast one.
CONFIGURED_HASHERS = list(django_settings.PASSWORD_HASHERS)


@pytest.fixture(autouse=True)
def api_isolation(settings):
    """Each test counts throttles and login failures from zero, in its own cache key
    space (no flush: Redis may be shared), and hashes passwords fast."""
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
    caches = copy.deepcopy(settings.CACHES)
    caches["default"]["KEY_PREFIX"] = f"test-{uuid.uuid4().hex}"
    settings.CACHES = caches


@pytest.fixture
def fees(db):
    """The fee account (tests.factories.fee_account)."""
    return fee_account()


@pytest.fixture
def market(fees):
    return qtx_usd_market()


def funded_trader(username, **extra):
    """A new user with the suite's starting balances (STARTING_USD, STARTING_QTX)."""
    user = User.objects.create_user(username=username, password=f"{username}-pass-2026", **extra)
    balance_deposit(user=user, asset="USD", amount=STARTING_USD, reason="test funding")
    balance_deposit(user=user, asset="QTX", amount=STARTING_QTX, reason="test funding")
    return user


@pytest.fixture
def alice(market):
    return funded_trader("alice")


@pytest.fixture
def bob(market):
    return funded_trader("bob")


@pytest.fixture
def operator(market):
    return User.objects.create_user(username="operator", password="operator-pass-2026", is_staff=True)


def access_token(user) -> str:
    """The access token of a new API login of `user`, as `POST /api/auth/login` makes one."""
    return str(api_login_start(user=user).access_token)


def client_for(user) -> APIClient:
    """An API client that sends `user`'s access token."""
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {access_token(user)}")
    return client


@pytest.fixture
def anon():
    return APIClient()


@pytest.fixture
def as_alice(alice):
    return client_for(alice)


@pytest.fixture
def as_bob(bob):
    return client_for(bob)


@pytest.fixture
def as_operator(operator):
    return client_for(operator)


def assert_error(response, status, code=None, field=None):
    """The response is `status` in the one error shape; returns the error."""
    assert response.status_code == status, (response.status_code, response.content[:500])
    body = response.json()
    assert set(body) == {"error"}, body
    error = body["error"]
    assert set(error) == {"code", "message", "field"}, error
    assert isinstance(error["message"], str) and error["message"]
    if code is not None:
        assert error["code"] == code, error
    if field is not None:
        assert error["field"] == field, error
    return error


def balances_of(user) -> dict:
    return {b.asset_id: (b.available, b.held) for b in Balance.objects.filter(user=user)}


def orders_of(user):
    return Order.objects.filter(user=user)
