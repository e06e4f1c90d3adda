"""Returns: the return form of an invoiced sales order (billed purchase order), and the return page with its
credit (debit) note."""

from __future__ import annotations

from types import SimpleNamespace

from flask import redirect, render_template, request, url_for
from flask_babel import gettext as _
from flask_babel import lazy_gettext as _l
from sqlalchemy import select

from ..api.returns import ReturnIn
from ..domain.money import COMPANY_CURRENCY, ZERO
from ..errors import ValidationFailed
from ..models import Invoice, Partner, Product, Warehouse
from ..services import masterdata, purchasing, returns, sales
from .framework import form_id, page, parse_form
from .i18n import money
from .pdf_pages import company, party, render_pdf

KINDS = {"sales": ("customer", sales.get, "web.sales_order"), "purchases": ("supplier", purchasing.get, "web.purchases_order")}


def _returnable(s, kind: str, order) -> list[dict]:
    taken = returns.returned_quantities(s, kind, order.id)
    products = {p.id: p for p in s.scalars(select(Product).where(Product.id.in_([l.product_id for l in order.lines])))}
    return [{"line": l, "product": products[l.product_id], "returned": taken.get(l.id, ZERO),
             "left": l.quantity - taken.get(l.id, ZERO)} for l in order.lines]


def _form(ctx, key: str, order_id: int):
    kind, load, _back = KINDS[key]
    order = load(ctx.s, order_id)
    warehouses = ctx.s.execute(select(Warehouse.id, Warehouse.code).order_by(Warehouse.code)).all()
    return render_template("return_form.html", key=key, kind=kind, order=order, rows=_returnable(ctx.s, kind, order),
                           warehouses=warehouses, may_post=ctx.may("finance.write"))


def _submit(ctx, key: str, order_id: int):
    """Create the return from the quantities typed (blank or 0: not returned) and, for a user who may post
    notes, post it at once."""
    kind, load, _back = KINDS[key]
    order = load(ctx.s, order_id)
    lines = [{"order_line_id": l.id, "quantity": request.form.get(f"qty-{l.id}", "").strip()} for l in order.lines]
    lines = [l for l in lines if l["quantity"] not in ("", "0")]
    if not lines:
        raise ValidationFailed(_("Type the quantity returned on at least one line."), field="lines",
                               fix=_("Blank lines are not returned."))
    data = {"lines": lines, "warehouse_id": form_id(request.form.get("warehouse_id", "")) or None,
            "reason": request.form.get("reason", "").strip() or None}
    body = parse_form(ReturnIn, data)
    ret = returns.create(ctx.s, kind, order.id, body.model_dump())
    if ctx.may("finance.write"):
        returns.post(ctx.s, ret.id)
        note = returns.note_of(ctx.s, ret)
        ctx.flash(_("Return %(number)s posted; note %(note)s issued: total %(total)s.", number=ret.number,
                    note=note.number, total=money(note.gross_total)))
    else:
        ctx.flash(_("Return %(number)s saved as a draft; a finance user posts it.", number=ret.number))
    return redirect(url_for("web.return_page", return_id=ret.id), 303)


def _register(key: str) -> None:
    """The return form of one kind of order: GET shows it, POST creates (and posts) the return."""
    def form(ctx, order_id):
        return _form(ctx, key, order_id)

    def submit(ctx, order_id):
        return _submit(ctx, key, order_id)

    form.__name__, submit.__name__ = f"{key}_return_form", f"{key}_return_submit"
    page(f"/app/{key}/<int:order_id>/return", "stock.write", _l("return goods"))(form)
    page(f"/app/{key}/<int:order_id>/return", "stock.write", _l("return goods"), method="POST",
         back=f"web.{key}_return_form")(submit)


for _key in KINDS:
    _register(_key)


@page("/app/returns/<int:return_id>", "stock.read", _l("see returns"))
def return_page(ctx, return_id):
    s = ctx.s
    ret = returns.get(s, return_id)
    note = returns.note_of(s, ret)
    key = "sales" if ret.kind == "customer" else "purchases"
    order = KINDS[key][1](s, ret.sales_order_id or ret.purchase_order_id)
    products = {p.id: p for p in s.scalars(select(Product).where(Product.id.in_([l.product_id for l in ret.lines])))}
    return render_template("return.html", ret=ret, note=note, order=order, key=key, products=products,
                           partner=s.get(Partner, ret.partner_id), warehouse=s.get(Warehouse, ret.warehouse_id),
                           invoice=s.get(Invoice, note.invoice_id) if note else None, company=COMPANY_CURRENCY,
                           may_post=ret.state == "draft" and ctx.may("finance.write"))


@page("/app/returns/<int:return_id>/post", "finance.write", _l("post returns"), method="POST",
      endpoint="return_post", back="web.return_page")
def return_post(ctx, return_id):
    ret = returns.post(ctx.s, return_id)
    note = returns.note_of(ctx.s, ret)
    ctx.flash(_("Return %(number)s posted; note %(note)s issued: total %(total)s.", number=ret.number,
                note=note.number, total=money(note.gross_total)))
    return redirect(url_for("web.return_page", return_id=ret.id), 303)


@page("/app/returns/<int:return_id>/note.pdf", "finance.read", _l("see invoices and bills"))
def note_pdf(ctx, return_id):
    """The credit (debit) note as the invoice prints, titled as such and naming the invoice it reverses."""
    s = ctx.s
    ret = returns.get(s, return_id)
    note = returns.note_of(s, ret)
    if note is None:
        raise ValidationFailed(_("Return %(number)s has no note yet.", number=ret.number), field="return_id",
                               fix=_("Post the return first."))
    key = "sales" if ret.kind == "customer" else "purchases"
    order = KINDS[key][1](s, ret.sales_order_id or ret.purchase_order_id)
    by_id = {l.id: l for l in order.lines}
    products = {p.id: p for p in s.scalars(select(Product).where(Product.id.in_([l.product_id for l in ret.lines])))}
    lines = [(SimpleNamespace(quantity=l.quantity, unit_price_currency=by_id[l.order_line_id].unit_price_currency,
                              discount_percent=by_id[l.order_line_id].discount_percent,
                              tax_rate_percent=by_id[l.order_line_id].tax_rate_percent,
                              net_amount_currency=l.net_amount_currency, tax_amount_currency=l.tax_amount_currency),
              products[l.product_id]) for l in ret.lines]
    other = party(masterdata.partner_view(s.get(Partner, ret.partner_id), ctx.may("partners.sensitive")))
    seller, buyer = (company(), other) if ret.kind == "customer" else (other, company())
    title = _("Credit note") if note.kind == "credit" else _("Debit note")
    return render_pdf(f"{note.number}.pdf", doc="invoice", title=title, number=note.number, date=note.issue_date,
                      order=order, seller=seller, buyer=buyer, lines=lines, totals=note, gross_company=note.gross_total,
                      reverses=s.get(Invoice, note.invoice_id).number)
