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


def value_out(quantity: Decimal, on_hand: Decimal, avg_cost: Decimal, stock_value: Decimal) -> Decimal:
    """The value of a quantity leaving stock that holds `on_hand` worth `stock_value`: at average cost,
    never more than the stock is worth, and all of it when the last units go (the rounding residue of
    the moving average leaves with them instead of staying in the books with nothing on hand)."""
    quantity, stock_value = D(quantity), D(stock_value)
    if quantity >= D(on_hand):
        return stock_value
    return min(cost_of(quantity, avg_cost), stock_value)
