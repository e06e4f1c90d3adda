"""Stocktakes: count a warehouse, post the differences as adjustment moves and their value."""

from __future__ import annotations

import datetime as dt

from sqlalchemy.orm import Session

from ..domain.money import ZERO, D, round_qty
from ..domain.states import STOCKTAKE
from ..errors import ValidationFailed
from ..models import Product, Stocktake, StocktakeLine
from . import stock
from .common import get_or_404, next_number, step, transition
from .documents import load_warehouse


def create(s: Session, warehouse_id: int, counts: list[dict]) -> Stocktake:
    load_warehouse(s, warehouse_id)
    st = Stocktake(number=next_number(s, "ST"), warehouse_id=warehouse_id, state=STOCKTAKE.initial)
    seen = set()
    for i, c in enumerate(counts):
        if s.get(Product, c["product_id"]) is None:
            raise ValidationFailed(f"product {c['product_id']} does not exist", field=f"counts.{i}.product_id",
                                   fix="Use the id of an existing product.")
        if c["product_id"] in seen:
            raise ValidationFailed(f"product {c['product_id']} is counted twice", field=f"counts.{i}.product_id",
                                   fix="Send one count per product.")
        seen.add(c["product_id"])
        st.lines.append(StocktakeLine(product_id=c["product_id"], counted_quantity=round_qty(D(c["counted_quantity"]))))
    if not st.lines:
        raise ValidationFailed("a stocktake needs at least one count", field="counts", fix="Add a count.")
    s.add(st)
    s.flush()
    return st


def post(s: Session, stocktake_id: int, date: dt.date | None = None) -> Stocktake:
    """Compare counts with on-hand now, post adjustment moves, book the value difference."""
    st = get_or_404(s, Stocktake, stocktake_id, "stocktake", lock=True)
    transition(STOCKTAKE, st, "post")
    value_delta = ZERO
    products = stock.lock_products(s, [l.product_id for l in st.lines])  # the lock order of services.stock
    for line in sorted(st.lines, key=lambda l: l.product_id):
        product = products[line.product_id]
        expected = stock.on_hand(s, product.id, st.warehouse_id)
        line.expected_quantity = expected
        value_delta += stock.adjust(s, product, st.warehouse_id, line.counted_quantity - expected, st.number)
    stock.post_adjustment_entry(s, value_delta, f"stocktake:{st.number}", date)
    st.posted_at = dt.datetime.now(dt.timezone.utc)
    s.flush()
    return st


def cancel(s: Session, stocktake_id: int) -> Stocktake:
    return step(s, get_or_404(s, Stocktake, stocktake_id, "stocktake", lock=True), STOCKTAKE, "cancel")
