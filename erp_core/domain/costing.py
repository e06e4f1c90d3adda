"""Moving-average costing."""

from __future__ import annotations

from decimal import Decimal

from .money import ZERO, D, round_cost, round_money


def moving_average(on_hand: Decimal, avg_cost: Decimal, qty_in: Decimal, unit_cost: Decimal) -> Decimal:
    """The new average unit cost after receiving qty_in at unit_cost."""
    on_hand, avg_cost, qty_in, unit_cost = D(on_hand), D(avg_cost), D(qty_in), D(unit_cost)
    if qty_in <= 0:
        raise ValueError("received quantity must be greater than zero")
    if on_hand <= 0:
        return round_cost(unit_cost)
    return round_cost((on_hand * avg_cost + qty_in * unit_cost) / (on_hand + qty_in))


def cost_of(quantity: Decimal, unit_cost: Decimal) -> Decimal:
    """Value of a quantity at a unit cost, rounded as money."""
    if D(quantity) < 0:
        raise ValueError("quantity must not be negative")
    return round_money(D(quantity) * D(unit_cost)) if quantity else ZERO
