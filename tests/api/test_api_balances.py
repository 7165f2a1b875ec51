"""My balances and my ledger; operators adjusting a balance through PUT /api/user/balance."""

from decimal import Decimal

import pytest

from accounts.models import LedgerEntry
from accounts.services import balance_deposit
from tests.api_support import *  # noqa: F403
from tests.api_support import STARTING_QTX, STARTING_USD, assert_error, balances_of

pytestmark = pytest.mark.django_db


def adjust(client, **fields):
    body = {"username": "alice", "asset": "USD", "amount": "250.50", "reason": "wire received", **fields}
    return client.put("/api/user/balance", body, format="json")


# --- Balances and ledger -------------------------------------------------------------------------


def test_my_balances_are_listed_per_asset(as_alice):
    response = as_alice.get("/api/user/balances")

    assert response.status_code == 200
    assert response.json() == [
        {"asset": "QTX", "available": "100.00000000", "held": "0.00000000", "total": "100.00000000"},
        {"asset": "USD", "available": "10000.00000000", "held": "0.00000000", "total": "10000.00000000"},
    ]


def test_my_transactions_are_my_ledger_newest_first(as_alice, alice, bob):
    balance_deposit(user=alice, asset="USD", amount=Decimal("5"), reason="bonus")

    response = as_alice.get("/api/user/transactions")

    assert response.status_code == 200
    body = response.json()
    assert len(body["results"]) == 3  # two test deposits and the bonus; none of bob's
    assert body["next"] is None and body["previous"] is None
    newest = body["results"][0]
    assert set(newest) == {
        "id",
        "asset",
        "kind",
        "available_delta",
        "held_delta",
        "available_after",
        "held_after",
        "reference",
        "reason",
        "time",
    }
    assert (newest["kind"], newest["asset"], newest["available_delta"], newest["reason"]) == (
        "deposit",
        "USD",
        "5.00000000",
        "bonus",
    )
    assert newest["available_after"] == "10005.00000000"
    ids = [entry["id"] for entry in body["results"]]
    assert ids == sorted(ids, reverse=True)


def test_my_transactions_filter_by_asset_and_kind(as_alice):
    by_asset = as_alice.get("/api/user/transactions", {"asset": "QTX"}).json()
    by_kind = as_alice.get("/api/user/transactions", {"kind": "withdrawal"}).json()

    assert [entry["asset"] for entry in by_asset["results"]] == ["QTX"]
    assert by_kind["results"] == []


def test_an_unknown_ledger_kind_is_400(as_alice):
    assert_error(as_alice.get("/api/user/transactions", {"kind": "gift"}), 400, field="kind")


def test_balances_and_transactions_need_a_token(anon):
    assert_error(anon.get("/api/user/balances"), 401, code="NOT_AUTHENTICATED")
    assert_error(anon.get("/api/user/transactions"), 401, code="NOT_AUTHENTICATED")


# --- PUT /api/user/balance -----------------------------------------------------------------------


def test_staff_deposit_answers_the_new_balance_and_writes_the_ledger(as_operator, alice, operator):
    response = adjust(as_operator)

    assert response.status_code == 200
    assert response.json() == {
        "username": "alice",
        "asset": "USD",
        "available": "10250.50000000",
        "held": "0.00000000",
        "total": "10250.50000000",
    }
    entry = LedgerEntry.objects.filter(user=alice).latest("id")
    assert (entry.kind, entry.available_delta, entry.reason, entry.created_by) == (
        "adjustment",
        Decimal("250.5"),
        "wire received",
        operator,
    )


def test_staff_withdrawal_with_a_negative_amount(as_operator, alice):
    response = adjust(as_operator, asset="QTX", amount="-40")

    assert response.status_code == 200
    assert response.json()["available"] == f"{STARTING_QTX - 40:.8f}"


def test_a_withdrawal_past_the_balance_is_400_and_changes_nothing(as_operator, alice):
    response = adjust(as_operator, amount=f"-{STARTING_USD + 1}")

    assert_error(response, 400, code="INSUFFICIENT_FUNDS", field="amount")
    assert balances_of(alice)["USD"] == (STARTING_USD, Decimal(0))


@pytest.mark.parametrize(
    ("fields", "field"),
    [
        ({"username": "nobody"}, "username"),
        ({"asset": "DOGE"}, "asset"),
        ({"amount": "0"}, "amount"),
        ({"amount": "1e3"}, "amount"),
        ({"amount": "1.000000001"}, "amount"),
        ({"reason": ""}, "reason"),
        ({"reason": "r" * 256}, "reason"),
        ({"note": "x"}, "note"),
    ],
    ids=["unknown user", "unknown asset", "zero", "exponent", "9 decimals", "no reason", "long reason", "extra"],
)
def test_a_bad_adjustment_is_400_naming_the_field(as_operator, alice, fields, field):
    before = LedgerEntry.objects.count()

    response = adjust(as_operator, **fields)

    assert_error(response, 400, field=field)
    assert LedgerEntry.objects.count() == before


def test_adjusting_a_balance_is_403_for_traders(as_alice, alice):
    assert_error(adjust(as_alice), 403, code="PERMISSION_DENIED")
    assert balances_of(alice)["USD"] == (STARTING_USD, Decimal(0))


def test_adjusting_a_balance_is_401_without_a_token(anon, alice):
    assert_error(adjust(anon), 401, code="NOT_AUTHENTICATED")
