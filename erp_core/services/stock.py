"""Stock moves (append-only ledger) with the on-hand cache kept in the same transaction, and lots.

Every move carries a lot. A receipt puts its goods in a new lot; an outgoing move (delivery, transfer
out, negative adjustment) takes them from the lots the warehouse holds, oldest first (domain.lots.fifo),
split into one move per lot when it spans several. What a lot holds in a warehouse is computed from its
moves (stock_moves.lot_id is indexed).

Lock order (one rule for every service that changes stock: receipt, delivery, transfer, stocktake,
cancellation, and the stock-cache rebuild of stockcache.py, which locks the same tables in the same
order):

1. the document's own row (order, stocktake) FOR UPDATE, when there is one (a return: its invoice's row,
   its order's, then its own, see services.returns);
2. the rows of every product the operation touches, all at once, sorted by id (lock_products:
   FOR NO KEY UPDATE, so order lines referencing the product can still be written);
3. the stock_levels rows, by (warehouse, product), through the conditional UPDATEs of move();
4. then the rows inserted: lots, stock moves, the journal entry (numbering rows: LOT before JE).

A product's average cost and stock value are read only after step 2 (lock_products reloads them), so
no operation books cost at an average that a receipt in flight is about to change, and since every
writer of a product's stock_levels rows holds its product row, two operations on the same product
queue on step 2 instead of deadlocking in step 3. A deadlock or serialization failure that still
happens is retried by the unit of work (erp_core.db.retrying).

Stock value. products.stock_value is the value of everything on hand of a product (what the
Inventory account holds for it): receipts add what they booked, goods found add their value at average
cost, goods leaving take their value at average cost, and the last units out take what is left
(domain.costing.value_out), so the moving-average rounding residue is booked, not left behind."""

from __future__ import annotations

from decimal import Decimal

from sqlalchemy import case, func, insert, or_, select, update
from sqlalchemy.orm import Session, undefer_group

from ..domain import costing, journal, lots
from ..domain.money import ZERO, D, round_qty
from ..errors import Conflict, InsufficientStock, NotFound, ValidationFailed
from ..invariants import from_thousandths, thousandths
from ..models import Lot, Product, ReorderRule, StockLevel, StockMove, Warehouse
from ..models.base import ADDED_LATER_IN_1_1
from . import ledger
from .common import known, next_number


def lock_products(s: Session, product_ids) -> dict[int, Product]:
    """Step 2 of the lock order: the products' rows locked in id order and read afresh (average cost,
    stock value), by id. NotFound for an id that is not a product."""
    ids = sorted(set(product_ids))
    stmt = (select(Product).where(Product.id.in_(ids)).order_by(Product.id).with_for_update(key_share=True)
            .options(undefer_group(ADDED_LATER_IN_1_1)).execution_options(populate_existing=True))
    found = {p.id: p for p in s.scalars(stmt)}
    for missing in (i for i in ids if i not in found):
        raise NotFound(f"product {missing} does not exist.", fix="Use the id of an existing product.")
    return found


def take_value(s: Session, product: Product, qty: Decimal) -> Decimal:
    """The value of `qty` leaving the company's stock (before its move): at average cost, the last units
    taking what is left. Lowers the product's stock value; the product must be locked (lock_products)."""
    value = costing.value_out(D(qty), on_hand(s, product.id), product.avg_cost, product.stock_value)
    product.stock_value = product.stock_value - value
    return value


def _add_on_hand(s: Session, product_id: int, warehouse_id: int, qty: Decimal) -> None:
    done = s.execute(update(StockLevel)
                     .where(StockLevel.product_id == product_id, StockLevel.warehouse_id == warehouse_id)
                     .values(quantity=StockLevel.quantity + qty)).rowcount
    if not done:
        s.execute(insert(StockLevel).values(product_id=product_id, warehouse_id=warehouse_id, quantity=qty))


def _take_on_hand(s: Session, product: Product, warehouse_id: int, qty: Decimal) -> None:
    """Decrease on-hand only if enough is there: one conditional UPDATE, so two requests racing
    for the last unit cannot both win (the row lock or the write lock serialises them)."""
    done = s.execute(update(StockLevel)
                     .where(StockLevel.product_id == product.id, StockLevel.warehouse_id == warehouse_id,
                            StockLevel.quantity >= qty)
                     .values(quantity=StockLevel.quantity - qty)).rowcount
    if not done:
        available = on_hand(s, product.id, warehouse_id)
        raise InsufficientStock(
            f"only {available} {product.unit} of {product.sku} on hand in warehouse {warehouse_id}, "
            f"{qty} needed.",
            fix="Receive or transfer stock into this warehouse first, or reduce the quantity.",
            sku=product.sku, warehouse_id=warehouse_id, available=str(available), requested=str(qty))


def on_hand(s: Session, product_id: int, warehouse_id: int | None = None) -> Decimal:
    stmt = select(func.coalesce(func.sum(StockLevel.quantity), 0)).where(StockLevel.product_id == product_id)
    if warehouse_id is not None:
        stmt = stmt.where(StockLevel.warehouse_id == warehouse_id)
    return round_qty(D(str(s.scalar(stmt))))


def new_lot(s: Session, product_id: int, reference: str) -> Lot:
    """A new lot of a product (numbered LOT000001, ...), received now."""
    lot = Lot(product_id=product_id, number=next_number(s, "LOT"), reference=reference[:64])
    s.add(lot)
    s.flush()
    return lot


def lot_balances(s: Session, product_id: int, warehouse_id: int) -> list[lots.LotBalance]:
    """The lots of a product that hold something in a warehouse, oldest first."""
    qty = thousandths(StockMove.quantity)
    held = func.sum(case((StockMove.to_warehouse_id == warehouse_id, qty), else_=0)
                    - case((StockMove.from_warehouse_id == warehouse_id, qty), else_=0))
    stmt = (select(Lot.id, held.label("held"))
            .join(StockMove, StockMove.lot_id == Lot.id)
            .where(Lot.product_id == product_id,
                   or_(StockMove.to_warehouse_id == warehouse_id, StockMove.from_warehouse_id == warehouse_id))
            .group_by(Lot.id, Lot.received_at)
            .having(held > 0)
            .order_by(Lot.received_at, Lot.id))
    return [lots.LotBalance(r.id, from_thousandths(r.held)) for r in s.execute(stmt)]


def _fifo(s: Session, product: Product, warehouse_id: int, qty: Decimal) -> list[tuple[int, Decimal]]:
    try:
        return lots.fifo(lot_balances(s, product.id, warehouse_id), qty)
    except lots.NotEnoughInLots as exc:
        raise Conflict(f"the lots of {product.sku} in warehouse {warehouse_id} do not cover its on-hand stock "
                       f"({exc}).", fix="Run 'erpctl erp check' and correct the stock ledger.") from None


def move(s: Session, product: Product, qty, *, kind: str, reference: str,
         from_wh: int | None = None, to_wh: int | None = None, unit_cost=None,
         lot_id: int | None = None) -> list[StockMove]:
    """Move a quantity: out of from_wh (taken from its lots oldest first, unless lot_id names the lot)
    and/or into to_wh (in lot_id, or in the lots it was taken from). One move per lot."""
    qty = round_qty(D(qty))
    if qty <= 0:
        raise ValidationFailed("quantity must be greater than zero", field="quantity",
                               fix="Send a positive quantity.")
    if from_wh is not None:
        _take_on_hand(s, product, from_wh, qty)
        parts = [(lot_id, qty)] if lot_id is not None else _fifo(s, product, from_wh, qty)
    elif lot_id is not None:
        parts = [(lot_id, qty)]
    else:
        raise ValueError("goods coming in need their lot")
    if to_wh is not None:
        _add_on_hand(s, product.id, to_wh, qty)
    moves = [StockMove(product_id=product.id, from_warehouse_id=from_wh, to_warehouse_id=to_wh, quantity=part,
                       unit_cost=product.avg_cost if unit_cost is None else unit_cost, kind=kind,
                       reference=reference, lot_id=lot) for lot, part in parts]
    s.add_all(moves)
    return moves


def receive(s: Session, product: Product, qty, unit_cost, warehouse_id: int, reference: str,
            lot_id: int, value: Decimal | None = None) -> StockMove:
    """Stock in from a supplier into a lot, worth `value` (default qty x unit_cost); updates the
    product's moving-average cost and stock value. The product must be locked (lock_products)."""
    total = on_hand(s, product.id)
    product.avg_cost = costing.moving_average(total, product.avg_cost, D(qty), D(unit_cost))
    product.stock_value = product.stock_value + (costing.cost_of(D(qty), D(unit_cost)) if value is None else value)
    return move(s, product, qty, kind="receipt", reference=reference, to_wh=warehouse_id, unit_cost=unit_cost,
                lot_id=lot_id)[0]


def transfer(s: Session, product_id: int, qty, from_wh: int, to_wh: int, reference: str = "") -> list[StockMove]:
    """Move stock between warehouses, lots and all (one move per lot taken)."""
    if from_wh == to_wh:
        raise ValidationFailed("a transfer needs two different warehouses", field="to_warehouse_id",
                               fix="Pick a destination other than the source.")
    known(s, Product, product_id, "product_id", "product")
    known(s, Warehouse, from_wh, "from_warehouse_id", "warehouse")
    known(s, Warehouse, to_wh, "to_warehouse_id", "warehouse")
    product = lock_products(s, [product_id])[product_id]
    moves = move(s, product, qty, kind="transfer", reference=reference or "transfer", from_wh=from_wh, to_wh=to_wh)
    s.flush()
    return moves


def adjust(s: Session, product: Product, warehouse_id: int, delta: Decimal, reference: str) -> Decimal:
    """Post a count difference as an adjustment move; returns its value (signed): goods found at average
    cost, into a new lot; goods missing taken from the oldest lots at their value (take_value). The
    product must be locked (lock_products)."""
    if delta == 0:
        return ZERO
    if delta > 0:
        lot = new_lot(s, product.id, reference)
        move(s, product, delta, kind="adjustment", reference=reference, to_wh=warehouse_id, lot_id=lot.id)
        value = costing.cost_of(delta, product.avg_cost)
        product.stock_value = product.stock_value + value
        return value
    value = take_value(s, product, -delta)
    move(s, product, -delta, kind="adjustment", reference=reference, from_wh=warehouse_id)
    return -value


def set_reorder_rule(s: Session, product_id: int, warehouse_id: int, min_quantity, reorder_quantity) -> ReorderRule:
    known(s, Product, product_id, "product_id", "product")
    known(s, Warehouse, warehouse_id, "warehouse_id", "warehouse")
    rule = s.scalar(select(ReorderRule).where(ReorderRule.product_id == product_id,
                                              ReorderRule.warehouse_id == warehouse_id))
    if rule is None:
        rule = ReorderRule(product_id=product_id, warehouse_id=warehouse_id)
        s.add(rule)
    rule.min_quantity, rule.reorder_quantity = D(min_quantity), D(reorder_quantity)
    s.flush()
    return rule


def post_adjustment_entry(s: Session, value_delta: Decimal, reference: str, date=None) -> None:
    if value_delta:
        ledger.post(s, reference, f"Stock count difference {reference}", journal.stock_adjustment(value_delta), date)
