"""Documents as PDF files: the quotation and the delivery slip of a sales order, the invoice (or
supplier bill) with the fields a Chinese VAT invoice shows (seller and buyer with taxpayer id,
address and bank account; lines with quantity, unit price, amount, tax rate and tax; the total in
figures and in words; number and date). One Jinja template (document_pdf.html) rendered by WeasyPrint
in the user's language; the CJK font is embedded (subset) so Chinese prints anywhere. WeasyPrint loads
nothing from outside the document: its URL fetcher refuses every URL."""

from __future__ import annotations

import hashlib
import threading
from collections import OrderedDict
from dataclasses import dataclass

from flask import current_app, render_template
from flask_babel import gettext as _
from flask_babel import lazy_gettext as _l
from sqlalchemy import select

from ..domain import words
from ..domain.money import COMPANY_CURRENCY
from ..errors import InvalidTransition
from ..models import Invoice, Partner, Product, PurchaseOrder, SalesOrder, Warehouse
from ..services import masterdata, sales
from ..services.common import full, get_or_404
from . import i18n
from .framework import page
from .terms import term

SLIP_STATES = ("confirmed", "delivered", "invoiced", "paid")
CACHED_DOCUMENTS = 64  # PDFs kept by the HTML they were made from (a document asked for again is not re-laid out)
_fonts = threading.local()  # one FontConfiguration per server thread: Pango's font map is not thread-safe
_made: OrderedDict[bytes, bytes] = OrderedDict()
_made_lock = threading.Lock()


@dataclass(frozen=True)
class Party:
    """A seller or buyer as the document prints it."""
    name: str
    code: str = ""
    tax_id: str = ""
    address: str = ""
    bank_account: str = ""


def company() -> Party:
    st = current_app.config["ERP_SETTINGS"]
    return Party(st.company_name, "", st.company_tax_id, st.company_address, st.company_bank_account)


def party(view: dict) -> Party:
    address = ", ".join(x for x in (view.get("address"), view.get("phone")) if x)
    return Party(view["name"], view["code"], view.get("tax_id") or "", address, view.get("bank_account") or "")


def _refuse(url: str, *args, **kw):
    raise ValueError(f"a printed document loads nothing from outside ({url})")


def _pdf_of(html: str) -> bytes:
    """The PDF WeasyPrint makes of the HTML. The same HTML makes the same PDF, so one made lately for
    the same HTML is given again; the font configuration (fontconfig's fonts, loaded once) is kept."""
    key = hashlib.sha256(html.encode()).digest()
    with _made_lock:
        if (body := _made.get(key)) is not None:
            _made.move_to_end(key)
            return body
    from weasyprint import HTML  # imported on first use: it takes a second to load
    from weasyprint.text.fonts import FontConfiguration

    if getattr(_fonts, "config", None) is None:
        _fonts.config = FontConfiguration()
    body = HTML(string=html, url_fetcher=_refuse).write_pdf(font_config=_fonts.config)
    with _made_lock:
        _made[key] = body
        while len(_made) > CACHED_DOCUMENTS:
            _made.popitem(last=False)
    return body


def render_pdf(filename: str, **context):
    """The template rendered to PDF bytes, sent inline with the document's file name."""
    html = render_template("document_pdf.html", words_of=lambda amount: words.in_words(amount, i18n.current()),
                           company_currency=COMPANY_CURRENCY, **context)
    body = _pdf_of(html)
    return body, 200, {"Content-Type": "application/pdf",
                       "Content-Disposition": f'inline; filename="{filename}"'}


def _lines(s, order):
    products = {p.id: p for p in s.scalars(select(Product).where(Product.id.in_([l.product_id for l in order.lines])))}
    return [(l, products.get(l.product_id)) for l in order.lines]


@page("/app/invoices/<int:invoice_id>.pdf", "finance.read", _l("see invoices and bills"))
def invoice_pdf(ctx, invoice_id):
    s = ctx.s
    inv = get_or_404(s, Invoice, invoice_id, "invoice", options=full(Invoice))
    other = party(masterdata.partner_view(s.get(Partner, inv.partner_id), ctx.may("partners.sensitive")))
    model = SalesOrder if inv.sales_order_id else PurchaseOrder
    order = get_or_404(s, model, inv.sales_order_id or inv.purchase_order_id, "order", options=full(model))
    seller, buyer = (company(), other) if inv.kind == "customer" else (other, company())
    title = _("Invoice") if inv.kind == "customer" else _("Supplier bill")
    return render_pdf(f"{inv.number}.pdf", doc="invoice", title=title, number=inv.number, date=inv.issue_date,
                      due=inv.due_date, order=order, seller=seller, buyer=buyer, lines=_lines(s, order),
                      totals=inv, gross_company=inv.gross_total, reference=inv.supplier_reference)


@page("/app/sales/<int:order_id>/quotation.pdf", "sales.read", _l("see sales orders"))
def quotation_pdf(ctx, order_id):
    s = ctx.s
    order = sales.get(s, order_id)
    buyer = party(masterdata.partner_view(s.get(Partner, order.partner_id), ctx.may("partners.sensitive")))
    return render_pdf(f"{order.number}-quotation.pdf", doc="quotation", title=_("Quotation"), number=order.number,
                      date=order.order_date.date(), order=order, seller=company(), buyer=buyer,
                      lines=_lines(s, order), totals=order, gross_company=order.gross_total)


@page("/app/sales/<int:order_id>/slip.pdf", "sales.read", _l("see sales orders"))
def slip_pdf(ctx, order_id):
    s = ctx.s
    order = sales.get(s, order_id)
    if order.state not in SLIP_STATES:
        raise InvalidTransition(_("sales order %(number)s is %(state)s; a delivery slip is printed once it is "
                                  "confirmed", number=order.number, state=term(order.state)),
                                fix=_("Confirm the order first."), state=order.state)
    buyer = party(masterdata.partner_view(s.get(Partner, order.partner_id), ctx.may("partners.sensitive")))
    warehouse = s.get(Warehouse, order.warehouse_id)
    return render_pdf(f"{order.number}-delivery-slip.pdf", doc="slip", title=_("Delivery slip"), number=order.number,
                      date=order.order_date.date(), order=order, seller=company(), buyer=buyer,
                      lines=_lines(s, order), warehouse=warehouse)
