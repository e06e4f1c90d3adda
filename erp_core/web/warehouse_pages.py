"""Warehouses (list, create, edit: administrators), reorder levels per product and warehouse (list,
set), stock transfers between warehouses (create, list) and stocktakes (start by counting a warehouse,
post the differences or cancel): the services the REST API uses, with the forms validated by the
API's own schemas. Where a form picks a warehouse, the default one (the first created) is pre-selected.
"""

from __future__ import annotations

from flask import redirect, render_template, request, url_for
from flask_babel import gettext as _
from flask_babel import lazy_gettext as _l
from sqlalchemy import func, select

from ..api import schemas as S
from ..errors import ErpError
from ..models import Product, ReorderRule, StockLevel, StockMove, Stocktake, Warehouse
from ..services import masterdata, stock, stocktakes
from ..services.common import get_or_404
from .framework import PAGE_SIZE, error_message, form_id, int_arg, page, parse_form
from .masterdata_pages import _product_by_sku, _text, field_errors

WAREHOUSE_TEXT = ("code", "name", "address")
RULE_TEXT = ("sku", "warehouse_id", "min_quantity", "reorder_quantity")
TRANSFER_TEXT = ("sku", "quantity", "from_warehouse_id", "to_warehouse_id", "reference")
COUNT_LIMIT = 500  # products listed on one count sheet


def warehouses(s):
    """Every warehouse, the default (the first created) first."""
    return s.execute(select(Warehouse.id, Warehouse.code, Warehouse.name).order_by(Warehouse.id)).all()


def default_warehouse(s) -> int | None:
    return s.scalar(select(func.min(Warehouse.id)))


# ---- warehouses -------------------------------------------------------------------------------

@page("/app/warehouses", "stock.read", _l("see stock"))
def warehouses_list(ctx):
    s = ctx.s
    rows = s.scalars(select(Warehouse).order_by(Warehouse.code)).all()
    products = dict(s.execute(select(StockLevel.warehouse_id, func.count()).where(StockLevel.quantity != 0)
                              .group_by(StockLevel.warehouse_id)).all())
    return render_template("warehouses.html", rows=rows, products=products, default_id=default_warehouse(s))


def _warehouse_page(raw: dict, warehouse=None, error=None, errors=None, status: int = 200):
    return render_template("warehouse_form.html", form=raw, warehouse=warehouse, error=error,
                           errors=errors or {}), status


@page("/app/warehouses/new", "system.write", _l("add warehouses"))
def warehouse_new(ctx):
    return _warehouse_page(dict.fromkeys(WAREHOUSE_TEXT, ""))


@page("/app/warehouses/new", "system.write", _l("add warehouses"), method="POST", endpoint="warehouse_create",
      back="web.warehouse_new")
def warehouse_create(ctx):
    raw = _text(request.form, WAREHOUSE_TEXT)
    try:
        body = parse_form(S.WarehouseIn, {"code": raw["code"], "name": raw["name"], "address": raw["address"] or None})
        with ctx.s.begin_nested():
            w = masterdata.create_warehouse(ctx.s, body.model_dump())
    except ErpError as exc:
        return _warehouse_page(raw, None, error_message(exc), field_errors(exc), exc.status)
    ctx.flash(_("Warehouse %(code)s saved.", code=w.code))
    return redirect(url_for("web.warehouses_list"), 303)


@page("/app/warehouses/<int:warehouse_id>/edit", "system.write", _l("change warehouses"))
def warehouse_edit(ctx, warehouse_id):
    w = get_or_404(ctx.s, Warehouse, warehouse_id, "warehouse")
    return _warehouse_page({"code": w.code, "name": w.name, "address": w.address or ""}, w)


@page("/app/warehouses/<int:warehouse_id>/edit", "system.write", _l("change warehouses"), method="POST",
      endpoint="warehouse_update", back="web.warehouse_edit")
def warehouse_update(ctx, warehouse_id):
    w = get_or_404(ctx.s, Warehouse, warehouse_id, "warehouse")
    raw = _text(request.form, WAREHOUSE_TEXT) | {"code": w.code}
    try:
        body = parse_form(S.WarehousePatch, {"name": raw["name"], "address": raw["address"] or None})
        with ctx.s.begin_nested():
            masterdata.update_warehouse(ctx.s, w.id, body.model_dump(exclude_unset=True))
    except ErpError as exc:
        return _warehouse_page(raw, w, error_message(exc), field_errors(exc), exc.status)
    ctx.flash(_("Warehouse %(code)s saved.", code=w.code))
    return redirect(url_for("web.warehouses_list"), 303)


# ---- reorder rules ----------------------------------------------------------------------------

def _rules_page(ctx, raw: dict, error=None, errors=None, status: int = 200):
    s = ctx.s
    offset = int_arg("offset", 0) or 0
    total = s.scalar(select(func.count()).select_from(ReorderRule))
    rows = s.execute(select(ReorderRule, Product.sku, Product.name, Warehouse.code)
                     .join(Product, Product.id == ReorderRule.product_id)
                     .join(Warehouse, Warehouse.id == ReorderRule.warehouse_id)
                     .order_by(Product.sku, Warehouse.code).limit(PAGE_SIZE).offset(offset)).all()
    whs = warehouses(s)
    if not raw.get("warehouse_id") and whs:
        raw["warehouse_id"] = str(whs[0].id)
    return render_template("reorder_rules.html", rows=rows, total=total, offset=offset, page_size=PAGE_SIZE,
                           warehouses=whs, form=raw, error=error, errors=errors or {}), status


@page("/app/stock/reorder-rules", "stock.read", _l("see stock"))
def reorder_rules(ctx):
    return _rules_page(ctx, dict.fromkeys(RULE_TEXT, ""))


@page("/app/stock/reorder-rules", "stock.write", _l("set reorder levels"), method="POST", endpoint="reorder_rule_set",
      back="web.reorder_rules")
def reorder_rule_set(ctx):
    raw = _text(request.form, RULE_TEXT)
    try:
        product_id = _product_by_sku(ctx.s, raw["sku"])
        body = parse_form(S.ReorderRuleIn, {"product_id": product_id, "warehouse_id": form_id(raw["warehouse_id"]),
                                            "min_quantity": raw["min_quantity"],
                                            "reorder_quantity": raw["reorder_quantity"]})
        with ctx.s.begin_nested():
            stock.set_reorder_rule(ctx.s, body.product_id, body.warehouse_id, body.min_quantity, body.reorder_quantity)
    except ErpError as exc:
        return _rules_page(ctx, raw, error_message(exc), field_errors(exc), exc.status)
    code = ctx.s.get(Warehouse, body.warehouse_id).code
    ctx.flash(_("Reorder level of %(sku)s in %(code)s saved.", sku=ctx.s.get(Product, body.product_id).sku, code=code))
    return redirect(url_for("web.reorder_rules"), 303)


# ---- transfers --------------------------------------------------------------------------------

@page("/app/stock/transfers", "stock.read", _l("see stock"))
def transfers_list(ctx):
    s = ctx.s
    offset = int_arg("offset", 0) or 0
    warehouse_id = int_arg("warehouse_id")
    cond = StockMove.kind == "transfer"
    if warehouse_id:
        cond = cond & ((StockMove.from_warehouse_id == warehouse_id) | (StockMove.to_warehouse_id == warehouse_id))
    total = s.scalar(select(func.count()).select_from(StockMove).where(cond))
    rows = s.execute(select(StockMove, Product.sku, Product.name).join(Product, Product.id == StockMove.product_id)
                     .where(cond).order_by(StockMove.id.desc()).limit(PAGE_SIZE).offset(offset)).all()
    codes = dict(s.execute(select(Warehouse.id, Warehouse.code)).all())
    return render_template("transfers.html", rows=rows, codes=codes, total=total, offset=offset,
                           page_size=PAGE_SIZE, warehouse_id=warehouse_id, warehouses=warehouses(s))


def _transfer_page(ctx, raw: dict, error=None, errors=None, status: int = 200):
    whs = warehouses(ctx.s)
    if not raw.get("from_warehouse_id") and whs:
        raw["from_warehouse_id"] = str(whs[0].id)
    if not raw.get("to_warehouse_id") and len(whs) > 1:
        raw["to_warehouse_id"] = str(next(w.id for w in whs if str(w.id) != raw["from_warehouse_id"]))
    return render_template("transfer_form.html", form=raw, warehouses=whs, error=error,
                           errors=errors or {}), status


@page("/app/stock/transfers/new", "stock.write", _l("transfer stock"))
def transfer_new(ctx):
    raw = dict.fromkeys(TRANSFER_TEXT, "")
    product_id = int_arg("product_id")
    product = ctx.s.get(Product, product_id) if product_id else None
    if product is not None:
        raw["sku"] = product.sku
    return _transfer_page(ctx, raw)


@page("/app/stock/transfers/new", "stock.write", _l("transfer stock"), method="POST", endpoint="transfer_create",
      back="web.transfer_new")
def transfer_create(ctx):
    raw = _text(request.form, TRANSFER_TEXT)
    try:
        product_id = _product_by_sku(ctx.s, raw["sku"])
        body = parse_form(S.TransferIn, {"product_id": product_id, "quantity": raw["quantity"],
                                         "from_warehouse_id": form_id(raw["from_warehouse_id"]),
                                         "to_warehouse_id": form_id(raw["to_warehouse_id"]),
                                         "reference": raw["reference"]})
        with ctx.s.begin_nested():
            stock.transfer(ctx.s, body.product_id, body.quantity, body.from_warehouse_id, body.to_warehouse_id,
                           body.reference)
    except ErpError as exc:
        return _transfer_page(ctx, raw, error_message(exc), field_errors(exc), exc.status)
    codes = dict(ctx.s.execute(select(Warehouse.id, Warehouse.code)).all())
    ctx.flash(_("%(qty)s × %(sku)s moved from %(src)s to %(dst)s.", qty=raw["quantity"], sku=raw["sku"],
                src=codes[body.from_warehouse_id], dst=codes[body.to_warehouse_id]))
    return redirect(url_for("web.transfers_list"), 303)


# ---- stocktakes -------------------------------------------------------------------------------

@page("/app/stocktakes", "stock.read", _l("see stock"))
def stocktakes_list(ctx):
    s = ctx.s
    offset = int_arg("offset", 0) or 0
    total = s.scalar(select(func.count()).select_from(Stocktake))
    rows = s.scalars(select(Stocktake).order_by(Stocktake.id.desc()).limit(PAGE_SIZE).offset(offset)).all()
    codes = dict(s.execute(select(Warehouse.id, Warehouse.code)).all())
    return render_template("stocktakes.html", rows=rows, codes=codes, total=total, offset=offset,
                           page_size=PAGE_SIZE, warehouses=warehouses(s), default_id=default_warehouse(s))


def _count_sheet(s, warehouse_id: int):
    """The active products with what the warehouse holds of each (products it holds first)."""
    held = func.coalesce(StockLevel.quantity, 0)
    return s.execute(select(Product.id, Product.sku, Product.name, Product.unit, held.label("on_hand"))
                     .outerjoin(StockLevel, (StockLevel.product_id == Product.id)
                                & (StockLevel.warehouse_id == warehouse_id))
                     .where(Product.active.is_(True)).order_by((held == 0), Product.sku).limit(COUNT_LIMIT)).all()


def _count_page(ctx, warehouse, raw: dict, error=None, errors=None, status: int = 200):
    return render_template("stocktake_count.html", warehouse=warehouse, products=_count_sheet(ctx.s, warehouse.id),
                           form=raw, error=error, errors=errors or {}, limit=COUNT_LIMIT), status


@page("/app/stocktakes/new", "stock.write", _l("count stock"))
def stocktake_new(ctx):
    warehouse_id = int_arg("warehouse_id") or default_warehouse(ctx.s)
    warehouse = get_or_404(ctx.s, Warehouse, warehouse_id or 0, "warehouse")
    return _count_page(ctx, warehouse, {})


@page("/app/stocktakes/new", "stock.write", _l("count stock"), method="POST", endpoint="stocktake_create",
      back="web.stocktakes_list")
def stocktake_create(ctx):
    warehouse = get_or_404(ctx.s, Warehouse, int_arg("warehouse_id", 0, request.form) or 0, "warehouse")
    raw = {k: v.strip()[:64] for k, v in request.form.items() if k.startswith("count-")}
    typed = [(k, v) for k, v in raw.items() if v]
    counts = [{"product_id": form_id(k.removeprefix("count-")), "counted_quantity": v} for k, v in typed]
    try:
        body = parse_form(S.StocktakeIn, {"warehouse_id": warehouse.id, "counts": counts})
        with ctx.s.begin_nested():
            st = stocktakes.create(ctx.s, body.warehouse_id, [c.model_dump() for c in body.counts])
    except ErpError as exc:
        return _count_page(ctx, warehouse, raw, error_message(exc), _count_errors(exc, typed), exc.status)
    ctx.flash(_("Stocktake %(number)s saved as a draft: check the differences, then post it.", number=st.number))
    return redirect(url_for("web.stocktake_view", stocktake_id=st.id), 303)


def _count_errors(exc: ErpError, typed: list) -> dict:
    """counts.<i>.<field> -> the count field of the i-th typed product."""
    out: dict = {}
    for e in exc.extra.get("errors") or [{"field": exc.field or "", "problem": exc.detail}]:
        parts = str(e["field"]).split(".")
        if parts[0] == "counts" and len(parts) > 1 and parts[1].isdigit() and int(parts[1]) < len(typed):
            out.setdefault(typed[int(parts[1])][0], str(e["problem"]))
        else:
            out.setdefault(parts[0], str(e["problem"]))
    return out


@page("/app/stocktakes/<int:stocktake_id>", "stock.read", _l("see stock"))
def stocktake_view(ctx, stocktake_id):
    s = ctx.s
    st = get_or_404(s, Stocktake, stocktake_id, "stocktake")
    ids = [line.product_id for line in st.lines]
    products = {p.id: p for p in s.scalars(select(Product).where(Product.id.in_(ids)))}
    lines = []
    for line in st.lines:
        expected = line.expected_quantity if st.state == "posted" \
            else stock.on_hand(s, line.product_id, st.warehouse_id)
        lines.append({"product": products[line.product_id], "counted": line.counted_quantity, "expected": expected,
                      "difference": line.counted_quantity - expected})
    return render_template("stocktake.html", st=st, lines=lines, warehouse=s.get(Warehouse, st.warehouse_id))


@page("/app/stocktakes/<int:stocktake_id>/post", "stock.write", _l("post stocktakes"), method="POST",
      back="web.stocktake_view")
def stocktake_post(ctx, stocktake_id):
    st = stocktakes.post(ctx.s, stocktake_id)
    ctx.flash(_("Stocktake %(number)s posted: the differences are booked.", number=st.number))
    return redirect(url_for("web.stocktake_view", stocktake_id=st.id), 303)


@page("/app/stocktakes/<int:stocktake_id>/cancel", "stock.write", _l("post stocktakes"), method="POST",
      back="web.stocktake_view")
def stocktake_cancel(ctx, stocktake_id):
    st = stocktakes.cancel(ctx.s, stocktake_id)
    ctx.flash(_("Stocktake %(number)s cancelled.", number=st.number))
    return redirect(url_for("web.stocktake_view", stocktake_id=st.id), 303)
