"""Customer invoices, supplier bills and the payments that clear them."""

from __future__ import annotations

import datetime as dt

from sqlalchemy.orm import Session

from ..domain import journal
from ..domain.money import D, round_money
from ..domain.states import INVOICE, PURCHASE_ORDER, SALES_ORDER
from ..errors import Conflict, ValidationFailed
from ..models import Invoice, Partner, Payment, PurchaseOrder, SalesOrder
from . import ledger
from .common import get_or_404, next_number, transition


def issue(s: Session, order, kind: str, date: dt.date | None = None, supplier_reference: str | None = None) -> Invoice:
    """Invoice a delivered sales order (kind 'customer') or bill a received purchase order ('supplier')."""
    date = date or dt.date.today()
    partner = s.get(Partner, order.partner_id)
    if kind == "customer":
        lines = journal.customer_invoice(partner.id, order.net_total, order.tax_total)
        series, source = "INV", f"invoice:{order.number}"
    else:
        lines = journal.supplier_bill(partner.id, order.net_total, order.tax_total)
        series, source = "BILL", f"bill:{order.number}"
    number = next_number(s, series)
    entry = ledger.post(s, source, f"{number} {partner.name}", lines, date)
    inv = Invoice(number=number, kind=kind, partner_id=partner.id,
                  sales_order_id=order.id if kind == "customer" else None,
                  purchase_order_id=order.id if kind == "supplier" else None,
                  supplier_reference=supplier_reference, issue_date=date,
                  due_date=date + dt.timedelta(days=partner.payment_terms_days),
                  net_total=order.net_total, tax_total=order.tax_total, gross_total=order.gross_total,
                  amount_paid=D("0"), state="open", journal_entry_id=entry.id if entry else None)
    s.add(inv)
    s.flush()
    return inv


def register_payment(s: Session, invoice_id: int, amount, paid_on: dt.date | None = None,
                     method: str = "bank") -> Payment:
    """Record money received (customer) or paid (supplier); a fully paid invoice marks its order paid."""
    inv = get_or_404(s, Invoice, invoice_id, "invoice", lock=True)
    amount = round_money(D(amount))
    outstanding = inv.gross_total - inv.amount_paid
    if amount <= 0:
        raise ValidationFailed("payment amount must be greater than zero", field="amount",
                               fix="Send a positive amount.")
    if inv.state == "paid":
        raise Conflict(f"invoice {inv.number} is already paid.", fix="Nothing is outstanding on it.")
    if amount > outstanding:
        raise ValidationFailed(f"payment {amount} exceeds the {outstanding} outstanding on {inv.number}",
                               field="amount", fix=f"Pay at most {outstanding}.")
    paid_on = paid_on or dt.date.today()
    builder = journal.customer_payment if inv.kind == "customer" else journal.supplier_payment
    number = next_number(s, "PAY")
    entry = ledger.post(s, f"payment:{inv.number}", f"{number} for {inv.number}",
                        builder(inv.partner_id, amount), paid_on)
    pay = Payment(number=number, invoice_id=inv.id, amount=amount, paid_on=paid_on, method=method,
                  journal_entry_id=entry.id)
    s.add(pay)
    inv.amount_paid = inv.amount_paid + amount
    transition(INVOICE, inv, "pay" if inv.amount_paid == inv.gross_total else "pay_part")
    if inv.state == "paid":
        if inv.kind == "customer":
            transition(SALES_ORDER, s.get(SalesOrder, inv.sales_order_id), "pay")
        else:
            transition(PURCHASE_ORDER, s.get(PurchaseOrder, inv.purchase_order_id), "pay")
    s.flush()
    return pay
