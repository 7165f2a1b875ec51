"""One definition of money for the whole platform.

Every amount (balances, ledger deltas, prices, quantities, fees) is a Decimal stored in a
`MoneyField`, so precision is decided here and nowhere else. Eight decimal places match
the satoshi and keep every value representable in SQLite's embedded default as well.
"""

from decimal import ROUND_CEILING, ROUND_FLOOR, Decimal, InvalidOperation

from django.db import models

from quantumtrades.core.errors import InvalidInput

MONEY_MAX_DIGITS = 28
MONEY_DECIMAL_PLACES = 8
MONEY_QUANTUM = Decimal(1).scaleb(-MONEY_DECIMAL_PLACES)
# The largest amount any single field may hold; inputs past it are rejected, not rounded.
MONEY_MAX = Decimal(10) ** (MONEY_MAX_DIGITS - MONEY_DECIMAL_PLACES) - MONEY_QUANTUM
ZERO = Decimal(0)


class MoneyField(models.DecimalField):
    def __init__(self, *args, **kwargs):
        kwargs.setdefault("max_digits", MONEY_MAX_DIGITS)
        kwargs.setdefault("decimal_places", MONEY_DECIMAL_PLACES)
        super().__init__(*args, **kwargs)


class RateField(models.DecimalField):
    """A fee rate such as 0.0010 (10 basis points)."""

    def __init__(self, *args, **kwargs):
        kwargs.setdefault("max_digits", 7)
        kwargs.setdefault("decimal_places", 6)
        super().__init__(*args, **kwargs)


def money_floor(value: Decimal) -> Decimal:
    return value.quantize(MONEY_QUANTUM, rounding=ROUND_FLOOR)


def money_ceil(value: Decimal) -> Decimal:
    return value.quantize(MONEY_QUANTUM, rounding=ROUND_CEILING)


def decimal_places(value: Decimal) -> int:
    """How many digits a Decimal carries after the point (0 for integers)."""
    exponent = value.normalize().as_tuple().exponent
    return max(0, -exponent) if isinstance(exponent, int) else 0


def money(value: Decimal) -> Decimal:
    """`value` at the platform's precision (exact for every amount the rules allow)."""
    return value.quantize(MONEY_QUANTUM)


def money_text(value: Decimal | None) -> str | None:
    """A Decimal as JSON carries it: a plain string, never an exponent ("0.00000000", not "0E-8")."""
    return None if value is None else format(value, "f")


def money_checked(value, field: str, *, signed: bool = False) -> Decimal:
    """`value` as an amount a MoneyField can store, or InvalidInput naming `field`: a
    finite decimal, positive (or, `signed`, non-zero), at most MONEY_DECIMAL_PLACES places
    and at most MONEY_MAX. Never rounds."""
    if isinstance(value, bool) or not isinstance(value, Decimal | int | str):
        raise InvalidInput(f"{field} must be a decimal number written as a string.", field=field)
    try:
        amount = value if isinstance(value, Decimal) else Decimal(value)
    except (InvalidOperation, ValueError):
        raise InvalidInput(f"{field} must be a decimal number.", field=field) from None
    if not amount.is_finite():
        raise InvalidInput(f"{field} must be a finite number.", field=field)
    if amount == 0 or (amount < 0 and not signed):
        raise InvalidInput(f"{field} must {'not be zero' if signed else 'be positive'}.", field=field)
    if abs(amount) > MONEY_MAX:
        raise InvalidInput(f"{field} is too large: at most {MONEY_MAX}.", field=field)
    if decimal_places(amount) > MONEY_DECIMAL_PLACES:
        raise InvalidInput(f"{field} has more than {MONEY_DECIMAL_PLACES} decimal places.", field=field)
    return amount
