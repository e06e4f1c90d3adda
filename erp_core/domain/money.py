"""Money and quantities. Money is rounded here and nowhere else."""

from __future__ import annotations

from decimal import ROUND_HALF_UP, Decimal, InvalidOperation

CENT = Decimal("0.01")
COST_PLACES = Decimal("0.0001")
QTY_PLACES = Decimal("0.001")
ZERO = Decimal("0")


def D(value) -> Decimal:
    """A Decimal from an int, str or Decimal (floats are refused: they are not exact)."""
    if isinstance(value, Decimal):
        return value
    if isinstance(value, float):
        raise TypeError("floats are not exact; pass a str or Decimal")
    try:
        return Decimal(value)
    except (InvalidOperation, TypeError) as exc:
        raise ValueError(f"not a number: {value!r}") from exc


def round_money(value) -> Decimal:
    """The one rounding rule for money: to the cent, half away from zero."""
    return D(value).quantize(CENT, rounding=ROUND_HALF_UP)


def round_cost(value) -> Decimal:
    """Unit costs keep four places (moving averages)."""
    return D(value).quantize(COST_PLACES, rounding=ROUND_HALF_UP)


def round_qty(value) -> Decimal:
    return D(value).quantize(QTY_PLACES, rounding=ROUND_HALF_UP)
