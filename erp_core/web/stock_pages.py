"""Stock: on-hand by product and warehouse, the move ledger of a product; and the partner list."""

from __future__ import annotations

from decimal import Decimal

from flask import render_template, request
from sqlalchemy import and_, func, or_, select

from ..models import Partner, Product, ReorderRule, StockLevel, StockMove, Warehouse
from ..services import masterdata, reports, stock
from ..services.common import get_or_404
from .framework import PAGE_SIZE, int_arg, page

LEDGER_PAGE = 100


def _warehouses(s):
    return s.execute(select(Warehouse.id, Warehouse.code, Warehouse.name).order_by(Warehouse.code)).all()


@page("/app/stock", "stock.read", "see stock")
def stock_list(ctx):
    s = ctx.s
    q = request.args.get("q", "").strip()[:100]
    warehouse_id = int_arg("warehouse_id")
    offset = int_arg("offset", 0) or 0
    stmt = (select(Product.id.label("product_id"), Product.sku, Product.name, Product.unit,
                   Warehouse.id.label("warehouse_id"), Warehouse.code.label("warehouse_code"), StockLevel.quantity,
                   ReorderRule.min_quantity)
            .join(Product, Product.id == StockLevel.product_id)
            .join(Warehouse, Warehouse.id == StockLevel.warehouse_id)
            .outerjoin(ReorderRule, and_(ReorderRule.product_id == StockLevel.product_id,
                                         ReorderRule.warehouse_id == StockLevel.warehouse_id)))
    if q:
        stmt = stmt.where(or_(Product.sku.contains(q, autoescape=True), Product.name.contains(q, autoescape=True)))
    if warehouse_id:
        stmt = stmt.where(StockLevel.warehouse_id == warehouse_id)
    total = s.scalar(select(func.count()).select_from(stmt.subquery()))
    rows = s.execute(stmt.order_by(Product.sku, Warehouse.code).limit(PAGE_SIZE).offset(offset)).all()
    low = [r for r in reports.low_stock(s) if not warehouse_id or r["warehouse_id"] == warehouse_id]
    return render_template("stock.html", rows=rows, total=total, offset=offset, page_size=PAGE_SIZE, q=q,
                           warehouse_id=warehouse_id, warehouses=_warehouses(s), low=low)


def _delta(move, warehouse_id: int | None) -> Decimal:
    """How a move changes the quantity on hand (in one warehouse, or in all of them)."""
    if warehouse_id is None:
        return (move.quantity if move.to_warehouse_id else 0) - (move.quantity if move.from_warehouse_id else 0)
    return (move.quantity if move.to_warehouse_id == warehouse_id else 0) \
        - (move.quantity if move.from_warehouse_id == warehouse_id else 0)


@page("/app/stock/products/<int:product_id>", "stock.read", "see stock")
def stock_ledger(ctx, product_id):
    s = ctx.s
    product = get_or_404(s, Product, product_id, "product")
    warehouse_id = int_arg("warehouse_id")
    offset = int_arg("offset", 0) or 0
    cond = StockMove.product_id == product.id
    if warehouse_id:
        cond = and_(cond, or_(StockMove.from_warehouse_id == warehouse_id, StockMove.to_warehouse_id == warehouse_id))
    total = s.scalar(select(func.count()).where(cond))
    moves = s.scalars(select(StockMove).where(cond).order_by(StockMove.id.desc())
                      .limit(LEDGER_PAGE).offset(offset)).all()
    # the balance after each move, walking back from what is on hand now
    balance = stock.on_hand(s, product.id, warehouse_id)
    if moves:
        for newer in s.scalars(select(StockMove).where(cond, StockMove.id > moves[0].id)):
            balance -= _delta(newer, warehouse_id)
    rows = []
    for m in moves:
        delta = _delta(m, warehouse_id)
        rows.append({"move": m, "delta": delta, "balance": balance})
        balance -= delta
    levels = s.execute(select(Warehouse.code, StockLevel.quantity)
                       .join(Warehouse, Warehouse.id == StockLevel.warehouse_id)
                       .where(StockLevel.product_id == product.id).order_by(Warehouse.code)).all()
    codes = dict(s.execute(select(Warehouse.id, Warehouse.code)).all())
    return render_template("stock_ledger.html", product=product, rows=rows, total=total, offset=offset,
                           page_size=LEDGER_PAGE, warehouse_id=warehouse_id, warehouses=_warehouses(s),
                           codes=codes, levels=levels)


@page("/app/partners", "partners.read", "see customers and suppliers")
def partners_list(ctx):
    s = ctx.s
    kind = request.args.get("kind", "")
    q = request.args.get("q", "").strip()[:100]
    offset = int_arg("offset", 0) or 0
    stmt = select(Partner)
    if kind in ("customer", "supplier"):
        stmt = stmt.where(Partner.is_customer if kind == "customer" else Partner.is_supplier)
    else:
        kind = ""
    if q:
        stmt = stmt.where(or_(Partner.name.contains(q, autoescape=True), Partner.code.contains(q, autoescape=True)))
    total = s.scalar(select(func.count()).select_from(stmt.subquery()))
    see = ctx.may("partners.sensitive")
    rows = [masterdata.partner_view(p, see)
            for p in s.scalars(stmt.order_by(Partner.code).limit(PAGE_SIZE).offset(offset))]
    return render_template("partners.html", rows=rows, total=total, offset=offset, page_size=PAGE_SIZE,
                           kind=kind, q=q, sensitive=see)
