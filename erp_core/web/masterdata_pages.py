"""Master data: customers and suppliers (create, edit, deactivate; payment terms, tax id), products
(SKU, name, unit, price, tax, reorder level) and each customer's price list.

Forms are validated with the API's own schemas; every problem is shown at once, beside its field,
with what was typed kept (and escaped) in the form. Bank details are not edited here: they have
their own approval flow in the services.
"""

from __future__ import annotations

from flask import redirect, render_template, request, url_for
from flask_babel import gettext as _
from flask_babel import lazy_gettext as _l
from sqlalchemy import func, select

from ..api import schemas as S
from ..errors import ErpError, ValidationFailed
from ..models import Partner, Product, ReorderRule, TaxRate, Warehouse
from ..services import masterdata, stock
from ..services.common import get_or_404
from .framework import PAGE_SIZE, error_message, page, parse_form
from .listing import all_rows, csv_response, page_of
from .listing import read as listing_of

PARTNER_TEXT = ("code", "name", "email", "address", "tax_id", "phone", "payment_terms_days")
PRODUCT_TEXT = ("sku", "name", "unit", "sale_price", "tax_code", "reorder_warehouse_id", "reorder_min",
                "reorder_quantity")
MAX_INPUT = 2000  # what is kept of a typed value to show it again (the schemas refuse long ones anyway)


class ProductForm(S.ProductIn):
    """A new product as the form sends it: the product and, optionally, its reorder level."""
    reorder_warehouse_id: S.Id | None = None
    reorder_min: S.Count | None = None
    reorder_quantity: S.Quantity | None = None


class ProductEditForm(S.ProductPatch):
    reorder_warehouse_id: S.Id | None = None
    reorder_min: S.Count | None = None
    reorder_quantity: S.Quantity | None = None


def field_errors(exc: ErpError) -> dict[str, str]:
    """field -> its first problem, for marking the fields of a refused form."""
    errors = exc.extra.get("errors") or [{"field": exc.field or "", "problem": exc.detail}]
    out: dict[str, str] = {}
    for e in errors:
        out.setdefault(str(e["field"]).split(".")[0], str(e["problem"]))
    return out


def _text(form, names) -> dict:
    return {k: form.get(k, "").strip()[:MAX_INPUT] for k in names}


def _or_none(raw: dict, *names) -> dict:
    return {k: raw[k] or None for k in names}


# ---- customers and suppliers ------------------------------------------------------------------

def _partner_raw(form) -> dict:
    raw = _text(form, PARTNER_TEXT)
    raw["is_customer"] = form.get("is_customer") == "on"
    raw["is_supplier"] = form.get("is_supplier") == "on"
    return raw


def _partner_fields(raw: dict, sensitive: bool) -> dict:
    """The form as the schema's input. tax id and phone are masked for roles that may not read them:
    for those a blank field keeps the stored value and a typed one replaces it."""
    data = {"name": raw["name"], "is_customer": raw["is_customer"], "is_supplier": raw["is_supplier"],
            **_or_none(raw, "email", "address"), "payment_terms_days": raw["payment_terms_days"] or "30"}
    for key in ("tax_id", "phone"):
        if sensitive or raw[key]:
            data[key] = raw[key] or None
    return data


def _partner_page(ctx, raw: dict, partner=None, error=None, errors=None, status: int = 200):
    return render_template("partner_form.html", form=raw, partner=partner, error=error, errors=errors or {},
                           sensitive=ctx.may("partners.sensitive")), status


@page("/app/partners/new", "partners.write", _l("add customers and suppliers"))
def partner_new(ctx):
    kind = request.args.get("kind", "customer")
    raw = dict.fromkeys(PARTNER_TEXT, "") | {"payment_terms_days": "30", "is_customer": kind != "supplier",
                                             "is_supplier": kind == "supplier"}
    return _partner_page(ctx, raw)


@page("/app/partners/new", "partners.write", _l("add customers and suppliers"), method="POST",
      endpoint="partner_create", back="web.partner_new")
def partner_create(ctx):
    raw = _partner_raw(request.form)
    try:
        body = parse_form(S.PartnerIn, {"code": raw["code"], **_partner_fields(raw, True)})
        with ctx.s.begin_nested():
            p = masterdata.create_partner(ctx.s, body.model_dump(exclude_unset=True))
    except ErpError as exc:
        return _partner_page(ctx, raw, None, error_message(exc), field_errors(exc), exc.status)
    ctx.flash(_("%(code)s — %(name)s saved.", code=p.code, name=p.name))
    return redirect(url_for("web.partners_list", q=p.code, status="all"), 303)


@page("/app/partners/<int:partner_id>/edit", "partners.write", _l("change customers and suppliers"))
def partner_edit(ctx, partner_id):
    p = get_or_404(ctx.s, Partner, partner_id, "partner")
    view = masterdata.partner_view(p, ctx.may("partners.sensitive"))
    raw = {k: "" if view.get(k) is None else str(view[k]) for k in PARTNER_TEXT}
    raw |= {"is_customer": p.is_customer, "is_supplier": p.is_supplier}
    if not ctx.may("partners.sensitive"):
        raw["tax_id"] = raw["phone"] = ""
    return _partner_page(ctx, raw, view)


@page("/app/partners/<int:partner_id>/edit", "partners.write", _l("change customers and suppliers"),
      method="POST", endpoint="partner_update", back="web.partner_edit")
def partner_update(ctx, partner_id):
    p = get_or_404(ctx.s, Partner, partner_id, "partner")
    raw = _partner_raw(request.form) | {"code": p.code}
    try:
        body = parse_form(S.PartnerPatch, _partner_fields(raw, ctx.may("partners.sensitive")))
        with ctx.s.begin_nested():
            masterdata.update_partner(ctx.s, partner_id, body.model_dump(exclude_unset=True))
    except ErpError as exc:
        view = masterdata.partner_view(p, ctx.may("partners.sensitive"))
        return _partner_page(ctx, raw, view, error_message(exc), field_errors(exc), exc.status)
    ctx.flash(_("%(code)s — %(name)s saved.", code=p.code, name=p.name))
    return redirect(url_for("web.partners_list", q=p.code, status="all"), 303)


@page("/app/partners/<int:partner_id>/active", "partners.write", _l("change customers and suppliers"),
      method="POST", back="web.partners_list")
def partner_active(ctx, partner_id):
    active = request.form.get("active") == "1"
    p = masterdata.update_partner(ctx.s, partner_id, {"active": active})
    ctx.flash(_("%(code)s is active again.", code=p.code) if active
              else _("%(code)s is deactivated: it is no longer offered on new orders.", code=p.code))
    if request.form.get("return_to") == "edit":
        return redirect(url_for("web.partner_edit", partner_id=p.id), 303)
    return redirect(url_for("web.partners_list", q=p.code, status="all"), 303)


# ---- a customer's price list ------------------------------------------------------------------

def _prices_page(ctx, partner, raw: dict, error=None, errors=None, status: int = 200):
    items = masterdata.customer_prices(ctx.s, partner.id)
    names = dict(ctx.s.execute(select(Product.id, Product.name)
                               .where(Product.id.in_([i["product_id"] for i in items]))).all())
    return render_template("prices.html", partner=partner, items=items, names=names, form=raw, error=error,
                           errors=errors or {}), status


@page("/app/partners/<int:partner_id>/prices", "partners.read", _l("see customers and suppliers"))
def partner_prices(ctx, partner_id):
    partner = get_or_404(ctx.s, Partner, partner_id, "partner")
    return _prices_page(ctx, partner, {"sku": "", "unit_price": "", "min_quantity": ""})


@page("/app/partners/<int:partner_id>/prices", "sales.write", _l("set customer prices"), method="POST",
      endpoint="partner_price_set", back="web.partner_prices")
def partner_price_set(ctx, partner_id):
    partner = get_or_404(ctx.s, Partner, partner_id, "partner")
    raw = _text(request.form, ("sku", "unit_price", "min_quantity"))
    try:
        product_id = _product_by_sku(ctx.s, raw["sku"])
        body = parse_form(S.PriceIn, {"product_id": product_id, "unit_price": raw["unit_price"],
                                      "min_quantity": raw["min_quantity"] or "0"})
        with ctx.s.begin_nested():
            masterdata.set_customer_price(ctx.s, partner.id, body.product_id, body.unit_price, body.min_quantity)
    except ErpError as exc:
        return _prices_page(ctx, partner, raw, error_message(exc), field_errors(exc), exc.status)
    ctx.flash(_("Price of %(sku)s for %(code)s saved.", sku=ctx.s.get(Product, body.product_id).sku, code=partner.code))
    return redirect(url_for("web.partner_prices", partner_id=partner.id), 303)


def _product_by_sku(s, sku: str) -> int:
    if not sku:
        raise ValidationFailed(_("no product is given"), field="sku", fix=_("Type the product's SKU."))
    found = s.scalar(select(Product.id).where(func.lower(Product.sku) == sku.lower(), Product.active.is_(True)))
    if found is None:
        raise ValidationFailed(_("there is no active product with SKU “%(sku)s”", sku=sku[:64]), field="sku",
                               fix=_("Type the SKU as the product list shows it."))
    return found


# ---- products ---------------------------------------------------------------------------------

PRODUCT_COLUMNS = {"sku": Product.sku, "name": Product.name, "unit": Product.unit, "price": Product.sale_price,
                   "tax": Product.tax_code}


def _reorder_rules(s, product_ids) -> dict:
    rules: dict = {}
    for r, code in s.execute(select(ReorderRule, Warehouse.code).join(Warehouse, Warehouse.id == ReorderRule.warehouse_id)
                             .where(ReorderRule.product_id.in_(product_ids)).order_by(Warehouse.code)):
        rules.setdefault(r.product_id, []).append((code, r.min_quantity, r.reorder_quantity))
    return rules


@page("/app/products", "products.read", _l("see products"))
def products_list(ctx):
    s = ctx.s
    listing = listing_of(PRODUCT_COLUMNS, "sku")
    q = request.args.get("q", "").strip()[:100]
    status = request.args.get("status", "active")
    status = status if status in ("active", "inactive", "all") else "active"
    stmt = select(Product)
    if q:
        stmt = stmt.where(masterdata.matching(Product, q))
    if status != "all":
        stmt = stmt.where(Product.active.is_(status == "active"))
    if listing.csv:
        rows = [p for (p,) in all_rows(s, stmt, PRODUCT_COLUMNS, listing, Product.id)]
        rules = _reorder_rules(s, [p.id for p in rows])
        return csv_response("products", [_("SKU"), _("Name"), _("Unit"), _("Sale price"), _("Tax"),
                                         _("Reorder level"), _("active")],
                            ([p.sku, p.name, p.unit, p.sale_price, p.tax_code,
                              "; ".join(f"{c}: {low} / {qty}" for c, low, qty in rules.get(p.id, [])), p.active]
                             for p in rows))
    total, rows = page_of(s, stmt, PRODUCT_COLUMNS, listing, Product.id)
    rows = [p for (p,) in rows]
    return render_template("products.html", rows=rows, rules=_reorder_rules(s, [p.id for p in rows]), total=total,
                           listing=listing, offset=listing.offset, page_size=PAGE_SIZE, q=q, status=status)


def _product_page(ctx, raw: dict, product=None, error=None, errors=None, status: int = 200):
    s = ctx.s
    taxes = s.execute(select(TaxRate.code, TaxRate.name, TaxRate.rate_percent)
                      .order_by(TaxRate.rate_percent.desc())).all()
    warehouses = s.execute(select(Warehouse.id, Warehouse.code, Warehouse.name).order_by(Warehouse.code)).all()
    if not raw.get("reorder_warehouse_id") and warehouses:
        raw["reorder_warehouse_id"] = str(warehouses[0].id)
    return render_template("product_form.html", form=raw, product=product, taxes=taxes, warehouses=warehouses,
                           error=error, errors=errors or {}), status


def _product_fields(raw: dict) -> dict:
    """The form as the schema's input; the reorder level only when one of its figures is typed."""
    data = {"name": raw["name"], "unit": raw["unit"] or "pcs", "sale_price": raw["sale_price"],
            "tax_code": raw["tax_code"]}
    if raw["reorder_min"] or raw["reorder_quantity"]:
        data |= {"reorder_warehouse_id": raw["reorder_warehouse_id"] or None,
                 "reorder_min": raw["reorder_min"] or None, "reorder_quantity": raw["reorder_quantity"] or None}
    return data


def _save_reorder(s, product_id: int, body) -> None:
    fields = {"reorder_warehouse_id": body.reorder_warehouse_id, "reorder_min": body.reorder_min,
              "reorder_quantity": body.reorder_quantity}
    if all(v is None for v in fields.values()):
        return
    missing = [k for k, v in fields.items() if v is None]
    if missing:
        errors = [{"field": k, "problem": _("needed with the reorder level")} for k in missing]
        raise ValidationFailed(_("the reorder level needs a warehouse, a minimum and a quantity to order"),
                               field=missing[0], fix=_("Fill all three, or clear both figures."), errors=errors)
    stock.set_reorder_rule(s, product_id, body.reorder_warehouse_id, body.reorder_min, body.reorder_quantity)


def _plain(quantity) -> str:
    """A stored quantity as typed: 5, 2.5 (not 5.000)."""
    text = format(quantity, "f")
    return text.rstrip("0").rstrip(".") if "." in text else text


def _split(body) -> dict:
    return body.model_dump(exclude_unset=True, exclude={"reorder_warehouse_id", "reorder_min", "reorder_quantity"})


@page("/app/products/new", "products.write", _l("add products"))
def product_new(ctx):
    return _product_page(ctx, dict.fromkeys(PRODUCT_TEXT, "") | {"unit": "pcs", "tax_code": "VAT13"})


@page("/app/products/new", "products.write", _l("add products"), method="POST", endpoint="product_create",
      back="web.product_new")
def product_create(ctx):
    raw = _text(request.form, PRODUCT_TEXT)
    try:
        body = parse_form(ProductForm, {"sku": raw["sku"], **_product_fields(raw)})
        with ctx.s.begin_nested():
            p = masterdata.create_product(ctx.s, _split(body))
            _save_reorder(ctx.s, p.id, body)
    except ErpError as exc:
        return _product_page(ctx, raw, None, error_message(exc), field_errors(exc), exc.status)
    ctx.flash(_("Product %(sku)s saved.", sku=p.sku))
    return redirect(url_for("web.products_list", q=p.sku, status="all"), 303)


@page("/app/products/<int:product_id>/edit", "products.write", _l("change products"))
def product_edit(ctx, product_id):
    p = get_or_404(ctx.s, Product, product_id, "product")
    raw = {"sku": p.sku, "name": p.name, "unit": p.unit, "sale_price": str(p.sale_price), "tax_code": p.tax_code,
           "reorder_warehouse_id": "", "reorder_min": "", "reorder_quantity": ""}
    rule = ctx.s.scalar(select(ReorderRule).where(ReorderRule.product_id == p.id).order_by(ReorderRule.warehouse_id))
    if rule is not None:
        raw |= {"reorder_warehouse_id": str(rule.warehouse_id), "reorder_min": _plain(rule.min_quantity),
                "reorder_quantity": _plain(rule.reorder_quantity)}
    return _product_page(ctx, raw, p)


@page("/app/products/<int:product_id>/edit", "products.write", _l("change products"), method="POST",
      endpoint="product_update", back="web.product_edit")
def product_update(ctx, product_id):
    p = get_or_404(ctx.s, Product, product_id, "product")
    raw = _text(request.form, PRODUCT_TEXT) | {"sku": p.sku}
    try:
        body = parse_form(ProductEditForm, _product_fields(raw))
        with ctx.s.begin_nested():
            masterdata.update_product(ctx.s, p.id, _split(body))
            _save_reorder(ctx.s, p.id, body)
    except ErpError as exc:
        return _product_page(ctx, raw, p, error_message(exc), field_errors(exc), exc.status)
    ctx.flash(_("Product %(sku)s saved.", sku=p.sku))
    return redirect(url_for("web.products_list", q=p.sku, status="all"), 303)


@page("/app/products/<int:product_id>/active", "products.write", _l("change products"), method="POST",
      back="web.products_list")
def product_active(ctx, product_id):
    active = request.form.get("active") == "1"
    p = masterdata.update_product(ctx.s, product_id, {"active": active})
    ctx.flash(_("Product %(sku)s is active again.", sku=p.sku) if active
              else _("Product %(sku)s is deactivated: it is no longer offered on new orders.", sku=p.sku))
    return redirect(url_for("web.products_list", q=p.sku, status="all"), 303)
