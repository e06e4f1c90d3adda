"""Finance: invoices and supplier bills with the payment form; trial balance, profit and loss,
balance sheet."""

from __future__ import annotations

import datetime as dt

from flask import redirect, render_template, request, url_for
from flask_babel import gettext as _
from flask_babel import lazy_gettext as _l
from sqlalchemy import func, or_, select

from ..api import schemas as S
from ..domain.money import COMPANY_CURRENCY
from ..models import Invoice, Partner, PurchaseOrder, SalesOrder
from ..services import billing, masterdata, reports, returns
from ..services.common import full, get_or_404
from .framework import PAGE_SIZE, page, parse_form
from .listing import all_rows, csv_response, in_range, page_of
from .listing import read as listing_of
from .terms import term
from .i18n import money

INVOICE_STATES = ("open", "partial", "paid")
PAYMENT_METHODS = ("bank", "cash", "card")


INVOICE_COLUMNS = {"number": Invoice.number, "kind": Invoice.kind, "partner": Partner.name,
                   "issued": Invoice.issue_date, "due": Invoice.due_date, "total": Invoice.gross_total,
                   "paid": Invoice.amount_paid, "outstanding": Invoice.gross_total - Invoice.amount_paid - Invoice.credited,
                   "state": Invoice.state}


@page("/app/invoices", "finance.read", _l("see invoices and bills"))
def invoices_list(ctx):
    """Invoices and bills the filters choose (kind, state, partner code, issue dates, text), sorted
    by a column; with format=csv all of them as a CSV file."""
    s = ctx.s
    listing = listing_of(INVOICE_COLUMNS, "-issued")
    kind = request.args.get("kind", "")
    kind = kind if kind in ("customer", "supplier") else ""
    state = request.args.get("state", "")
    state = state if state in INVOICE_STATES + ("unpaid",) else ""
    q = request.args.get("q", "").strip()[:100]
    partner = request.args.get("partner", "").strip()[:32]
    stmt = select(Invoice, Partner.code, Partner.name).join(Partner, Partner.id == Invoice.partner_id)
    if kind:
        stmt = stmt.where(Invoice.kind == kind)
    if state == "unpaid":
        stmt = stmt.where(Invoice.state.in_(("open", "partial")))
    elif state:
        stmt = stmt.where(Invoice.state == state)
    if partner:
        stmt = stmt.where(func.lower(Partner.code) == partner.lower())
    if q:
        stmt = stmt.where(or_(func.lower(Invoice.number).contains(q.lower(), autoescape=True),
                              masterdata.matching(Partner, q)))
    stmt = stmt.where(*in_range(Invoice.issue_date, listing))
    if listing.csv:
        rows = all_rows(s, stmt, INVOICE_COLUMNS, listing, Invoice.id)
        return csv_response("invoices", [_("Number"), _("Kind"), _("Partner code"), _("Partner"), _("Issued"),
                                         _("Due"), _("Total"), _("Paid"), _("Outstanding"), _("State")],
                            ([i.number, _("invoice") if i.kind == "customer" else _("bill"), code, name,
                              i.issue_date, i.due_date, i.gross_total, i.amount_paid, i.outstanding,
                              term(i.state)] for i, code, name in rows))
    total, rows = page_of(s, stmt, INVOICE_COLUMNS, listing, Invoice.id)
    return render_template("invoices.html", rows=rows, kind=kind, state=state, q=q, partner=partner, total=total,
                           listing=listing, offset=listing.offset, page_size=PAGE_SIZE, states=INVOICE_STATES,
                           methods=PAYMENT_METHODS, today=dt.date.today())


@page("/app/invoices/<int:invoice_id>", "finance.read", _l("see invoices and bills"))
def invoice_page(ctx, invoice_id):
    s = ctx.s
    inv = get_or_404(s, Invoice, invoice_id, "invoice", options=full(Invoice))
    partner = s.get(Partner, inv.partner_id)
    order = s.get(SalesOrder, inv.sales_order_id) if inv.sales_order_id else s.get(PurchaseOrder, inv.purchase_order_id)
    return render_template("invoice.html", inv=inv, partner=partner, order=order, methods=PAYMENT_METHODS,
                           company=COMPANY_CURRENCY, paid_currency=billing.paid_in_currency(s, inv),
                           open_currency=billing.outstanding(s, inv),
                           notes=returns.list_notes(s, None, 50, 0, invoice_id=inv.id)[0],
                           today=dt.date.today())


def _payment_return(invoice_id: int) -> str:
    if request.form.get("return_to") == "list":
        return url_for("web.invoices_list", state="unpaid")
    return url_for("web.invoice_page", invoice_id=invoice_id)


@page("/app/invoices/<int:invoice_id>/payments", "finance.write", _l("register payments"), method="POST",
      back=_payment_return)
def invoice_pay(ctx, invoice_id):
    body = parse_form(S.PaymentIn, {"amount": request.form.get("amount", "").strip().replace(",", ""),
                                    "paid_on": request.form.get("paid_on", "").strip() or None,
                                    "method": request.form.get("method", "").strip() or "bank"})
    pay = billing.register_payment(ctx.s, invoice_id, body.amount, body.paid_on, body.method)
    inv = ctx.s.get(Invoice, invoice_id)
    left = billing.company_outstanding(ctx.s, inv)
    if inv.state == "paid":
        ctx.flash(_("Payment %(number)s of %(amount)s registered on %(invoice)s; it is paid in full.",
                    number=pay.number, amount=money(pay.amount), invoice=inv.number))
    else:
        ctx.flash(_("Payment %(number)s of %(amount)s registered on %(invoice)s; %(left)s is still outstanding.",
                    number=pay.number, amount=money(pay.amount), invoice=inv.number, left=money(left)))
    return redirect(_payment_return(invoice_id), 303)


# ---- reports ----------------------------------------------------------------------------------

def _date_arg(name: str, errors: list) -> dt.date | None:
    value = request.args.get(name, "").strip()
    if not value:
        return None
    try:
        return dt.date.fromisoformat(value)
    except ValueError:
        errors.append({"text": _("'%(value)s' is not a date", value=value), "fix": _("Enter the date as YYYY-MM-DD.")})
        return None


@page("/app/reports/trial-balance", "reports.read", _l("read financial reports"))
def trial_balance(ctx):
    errors = []
    as_of = _date_arg("as_of", errors)
    return render_template("trial_balance.html", report=reports.trial_balance(ctx.s, as_of), as_of=as_of,
                           errors=errors)


@page("/app/reports/profit-and-loss", "reports.read", _l("read financial reports"))
def profit_and_loss(ctx):
    errors = []
    date_from, date_to = _date_arg("date_from", errors), _date_arg("date_to", errors)
    return render_template("profit_and_loss.html", report=reports.profit_and_loss(ctx.s, date_from, date_to),
                           date_from=date_from, date_to=date_to, errors=errors)


@page("/app/reports/balance-sheet", "reports.read", _l("read financial reports"))
def balance_sheet(ctx):
    errors = []
    as_of = _date_arg("as_of", errors)
    return render_template("balance_sheet.html", report=reports.balance_sheet(ctx.s, as_of), as_of=as_of,
                           errors=errors)
