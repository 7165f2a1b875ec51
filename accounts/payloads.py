"""What a user and a balance look like to a client, in one shape wherever they go: REST
answers and the private stream's `balance` message (docs/API.md, "Accounts")."""

from rest_framework import serializers

from quantumtrades.core.money import money_text

DATE_JOINED = serializers.DateTimeField()


def user_payload(user) -> dict:
    """UserSerializer's shape, written directly: building a serializer's fields (a deep
    copy per instance) was a sixth of the time of GET /api/auth/me."""
    return {
        "id": user.pk,
        "username": user.username,
        "email": user.email,
        "is_staff": user.is_staff,
        "date_joined": DATE_JOINED.to_representation(user.date_joined),
    }


def balance_payload(*, asset: str, available, held) -> dict:
    return {
        "asset": asset,
        "available": money_text(available),
        "held": money_text(held),
        "total": money_text(available + held),
    }
