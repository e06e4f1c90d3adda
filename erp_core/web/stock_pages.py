"""Stock: on-hand by product and warehouse, the move ledger of a product; and the partner list."""

from __future__ import annotations

from decimal import Decimal

from flask import render_template, request
from flask_babel import gettext as _
from flask_babel import lazy_gettext as _l
from sqlalchemy import and_, func, or_, select

from ..models import Partner, Product, ReorderRule, StockLevel, StockMove, Warehouse
from ..services import masterdata, reports, stock
from ..services.common import get_or_404
from .framework import PAGE_SIZE, int_arg, page
from .listing import all_rows, csv_response, page_of
from .listing import read as listing_of

LEDGER_PAGE = 100


def _warehouses(s):
    return s.execute(select(Warehouse.id, Warehouse.code, Warehouse.name).order_by(Warehouse.code)).all()


@page("/app/stock", "stock.read", _l("see stock"))
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
        stmt = stmt.where(masterdata.matching(Product, q))
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


@page("/app/stock/products/<int:product_id>", "stock.read", _l("see stock"))
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


PARTNER_COLUMNS = {"code": Partner.code, "name": Partner.name, "email": Partner.email,
                   "terms": Partner.payment_terms_days}


@page("/app/partners", "partners.read", _l("see customers and suppliers"))
def partners_list(ctx):
    """Customers and suppliers by kind, status and text, sorted by a column; format=csv exports them
    (the sensitive fields masked as on the page for roles that may not read them)."""
    s = ctx.s
    listing = listing_of(PARTNER_COLUMNS, "code")
    kind = request.args.get("kind", "")
    status = request.args.get("status", "active")
    status = status if status in ("active", "inactive", "all") else "active"
    q = request.args.get("q", "").strip()[:100]
    stmt = select(Partner)
    if kind in ("customer", "supplier"):
        stmt = stmt.where(Partner.is_customer if kind == "customer" else Partner.is_supplier)
    else:
        kind = ""
    if status != "all":
        stmt = stmt.where(Partner.active.is_(status == "active"))
    if q:
        stmt = stmt.where(masterdata.matching(Partner, q))
    see = ctx.may("partners.sensitive")
    if listing.csv:
        rows = [masterdata.partner_view(p, see) for (p,) in all_rows(s, stmt, PARTNER_COLUMNS, listing, Partner.id)]
        return csv_response("partners", [_("Code"), _("Name"), _("customer"), _("supplier"), _("Email"), _("Phone"),
                                         _("Tax id"), _("Address"), _("Terms"), _("active")],
                            ([p["code"], p["name"], p["is_customer"], p["is_supplier"], p["email"], p["phone"],
                              p["tax_id"], p["address"], p["payment_terms_days"], p["active"]] for p in rows))
    total, rows = page_of(s, stmt, PARTNER_COLUMNS, listing, Partner.id)
    return render_template("partners.html", rows=[masterdata.partner_view(p, see) for (p,) in rows], total=total,
                           listing=listing, offset=listing.offset, page_size=PAGE_SIZE, kind=kind, status=status,
                           q=q, sensitive=see)
