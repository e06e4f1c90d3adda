"""Documents to print: the invoice (or supplier bill) as a page styled for paper (CSS @media print:
A4, no menus or buttons), which the browser prints. The PDF files of the documents are pdf_pages'."""

from __future__ import annotations

from flask import render_template
from flask_babel import lazy_gettext as _l
from sqlalchemy import select

from ..domain.money import COMPANY_CURRENCY
from ..models import Invoice, Partner, Product, PurchaseOrder, SalesOrder
from ..services import masterdata
from ..services.common import full, get_or_404
from .framework import page


@page("/app/invoices/<int:invoice_id>/print", "finance.read", _l("see invoices and bills"))
def invoice_print(ctx, invoice_id):
    s = ctx.s
    inv = get_or_404(s, Invoice, invoice_id, "invoice", options=full(Invoice))
    partner = masterdata.partner_view(s.get(Partner, inv.partner_id), ctx.may("partners.sensitive"))
    model = SalesOrder if inv.sales_order_id else PurchaseOrder
    order = get_or_404(s, model, inv.sales_order_id or inv.purchase_order_id, "order", options=full(model))
    products = {p.id: p for p in s.scalars(select(Product).where(Product.id.in_([l.product_id for l in order.lines])))}
    return render_template("invoice_print.html", inv=inv, partner=partner, order=order, lines=order.lines,
                           products=products, company=COMPANY_CURRENCY)
