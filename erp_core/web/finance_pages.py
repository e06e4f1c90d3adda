"""Finance: invoices and supplier bills with the payment form; trial balance, profit and loss,
balance sheet."""

from __future__ import annotations

import datetime as dt

from flask import redirect, render_template, request, url_for
from sqlalchemy import func, or_, select

from ..api import schemas as S
from ..domain.money import COMPANY_CURRENCY
from ..models import Invoice, Partner, PurchaseOrder, SalesOrder
from ..services import billing, reports
from ..services.common import full, get_or_404
from .framework import PAGE_SIZE, int_arg, page, parse_form

INVOICE_STATES = ("open", "partial", "paid")
PAYMENT_METHODS = ("bank", "cash", "card")


@page("/app/invoices", "finance.read", "see invoices and bills")
def invoices_list(ctx):
    s = ctx.s
    kind = request.args.get("kind", "")
    kind = kind if kind in ("customer", "supplier") else ""
    state = request.args.get("state", "")
    state = state if state in INVOICE_STATES + ("unpaid",) else ""
    q = request.args.get("q", "").strip()[:100]
    offset = int_arg("offset", 0) or 0
    stmt = select(Invoice, Partner.code, Partner.name).join(Partner, Partner.id == Invoice.partner_id)
    if kind:
        stmt = stmt.where(Invoice.kind == kind)
    if state == "unpaid":
        stmt = stmt.where(Invoice.state.in_(("open", "partial")))
    elif state:
        stmt = stmt.where(Invoice.state == state)
    if q:
        stmt = stmt.where(or_(Invoice.number.contains(q, autoescape=True), Partner.name.contains(q, autoescape=True),
                              Partner.code.contains(q, autoescape=True)))
    total = s.scalar(select(func.count()).select_from(stmt.subquery()))
    rows = s.execute(stmt.order_by(Invoice.id.desc()).limit(PAGE_SIZE).offset(offset)).all()
    return render_template("invoices.html", rows=rows, kind=kind, state=state, q=q, total=total, offset=offset,
                           page_size=PAGE_SIZE, states=INVOICE_STATES, methods=PAYMENT_METHODS,
                           today=dt.date.today())


@page("/app/invoices/<int:invoice_id>", "finance.read", "see invoices and bills")
def invoice_page(ctx, invoice_id):
    s = ctx.s
    inv = get_or_404(s, Invoice, invoice_id, "invoice", options=full(Invoice))
    partner = s.get(Partner, inv.partner_id)
    order = s.get(SalesOrder, inv.sales_order_id) if inv.sales_order_id else s.get(PurchaseOrder, inv.purchase_order_id)
    return render_template("invoice.html", inv=inv, partner=partner, order=order, methods=PAYMENT_METHODS,
                           company=COMPANY_CURRENCY, paid_currency=billing.paid_in_currency(s, inv),
                           today=dt.date.today())


def _payment_return(invoice_id: int) -> str:
    if request.form.get("return_to") == "list":
        return url_for("web.invoices_list", state="unpaid")
    return url_for("web.invoice_page", invoice_id=invoice_id)


@page("/app/invoices/<int:invoice_id>/payments", "finance.write", "register payments", method="POST",
      back=_payment_return)
def invoice_pay(ctx, invoice_id):
    body = parse_form(S.PaymentIn, {"amount": request.form.get("amount", "").strip().replace(",", ""),
                                    "paid_on": request.form.get("paid_on", "").strip() or None,
                                    "method": request.form.get("method", "").strip() or "bank"})
    pay = billing.register_payment(ctx.s, invoice_id, body.amount, body.paid_on, body.method)
    inv = ctx.s.get(Invoice, invoice_id)
    left = inv.gross_total - inv.amount_paid
    ctx.flash(f"Payment {pay.number} of {pay.amount:,.2f} registered on {inv.number}; "
              + ("it is paid in full." if inv.state == "paid" else f"{left:,.2f} is still outstanding."))
    return redirect(_payment_return(invoice_id), 303)


# ---- reports ----------------------------------------------------------------------------------

def _date_arg(name: str, errors: list) -> dt.date | None:
    value = request.args.get(name, "").strip()
    if not value:
        return None
    try:
        return dt.date.fromisoformat(value)
    except ValueError:
        errors.append({"text": f"'{value}' is not a date", "fix": "Enter the date as YYYY-MM-DD."})
        return None


@page("/app/reports/trial-balance", "reports.read", "read financial reports")
def trial_balance(ctx):
    errors = []
    as_of = _date_arg("as_of", errors)
    return render_template("trial_balance.html", report=reports.trial_balance(ctx.s, as_of), as_of=as_of,
                           errors=errors)


@page("/app/reports/profit-and-loss", "reports.read", "read financial reports")
def profit_and_loss(ctx):
    errors = []
    date_from, date_to = _date_arg("date_from", errors), _date_arg("date_to", errors)
    return render_template("profit_and_loss.html", report=reports.profit_and_loss(ctx.s, date_from, date_to),
                           date_from=date_from, date_to=date_to, errors=errors)


@page("/app/reports/balance-sheet", "reports.read", "read financial reports")
def balance_sheet(ctx):
    errors = []
    as_of = _date_arg("as_of", errors)
    return render_template("balance_sheet.html", report=reports.balance_sheet(ctx.s, as_of), as_of=as_of,
                           errors=errors)
