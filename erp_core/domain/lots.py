"""Lots (batches): which lots an outgoing quantity is taken from, first in first out."""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal

from .money import ZERO, D

OPENING_PREFIX = "OPEN-"


def opening_lot_number(product_id: int) -> str:
    """The lot that holds a product's stock from before lots were tracked."""
    return f"{OPENING_PREFIX}{product_id}"


@dataclass(frozen=True)
class LotBalance:
    lot_id: int
    quantity: Decimal  # what the lot still holds in the warehouse


class NotEnoughInLots(ValueError):
    pass


def fifo(balances: list[LotBalance], quantity) -> list[tuple[int, Decimal]]:
    """Split `quantity` over the lots in the order given (oldest first): [(lot_id, quantity), ...]."""
    need = D(quantity)
    if need <= 0:
        raise ValueError("quantity must be greater than zero")
    out = []
    for b in balances:
        if need <= 0:
            break
        if b.quantity <= 0:
            continue
        take = min(b.quantity, need)
        out.append((b.lot_id, take))
        need -= take
    if need > 0:
        held = sum((b.quantity for b in balances if b.quantity > 0), ZERO)
        raise NotEnoughInLots(f"lots hold {held}, {D(quantity)} needed")
    return out
