"""Customer invoices, supplier bills and the payments that clear them."""

from __future__ import annotations

import datetime as dt

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from ..domain import journal
from ..domain.money import CENT, COMPANY_CURRENCY, D, round_money, to_company
from ..domain.states import INVOICE, PURCHASE_ORDER, SALES_ORDER
from ..errors import Conflict, ValidationFailed
from ..invariants import cents, from_cents
from ..models import CreditNote, Invoice, Partner, Payment, PurchaseOrder, SalesOrder
from . import ledger
from .common import full, get_or_404, next_number, transition


def issue(s: Session, order, kind: str, date: dt.date | None = None, supplier_reference: str | None = None) -> Invoice:
    """Invoice a delivered sales order (kind 'customer') or bill a received purchase order ('supplier')."""
    date = date or dt.date.today()
    partner = s.get(Partner, order.partner_id)
    doc = journal.DocumentAmounts(order.currency, order.net_total_currency, order.tax_total_currency)
    if kind == "customer":
        lines = journal.customer_invoice(partner.id, order.net_total, order.tax_total, doc)
        series, source = "INV", f"invoice:{order.number}"
    else:
        lines = journal.supplier_bill(partner.id, order.net_total, order.tax_total, doc)
        series, source = "BILL", f"bill:{order.number}"
    number = next_number(s, series)
    entry = ledger.post(s, source, f"{number} {partner.name}", lines, date)
    inv = Invoice(number=number, kind=kind, partner_id=partner.id,
                  sales_order_id=order.id if kind == "customer" else None,
                  purchase_order_id=order.id if kind == "supplier" else None,
                  supplier_reference=supplier_reference, issue_date=date,
                  due_date=date + dt.timedelta(days=partner.payment_terms_days),
                  net_total=order.net_total, tax_total=order.tax_total, gross_total=order.gross_total,
                  amount_paid=D("0"), state="open", journal_entry_id=entry.id if entry else None,
                  currency=order.currency, exchange_rate=order.exchange_rate,
                  net_total_currency=order.net_total_currency, tax_total_currency=order.tax_total_currency,
                  gross_total_currency=order.gross_total_currency)
    s.add(inv)
    s.flush()
    return inv


def paid_in_currency(s: Session, inv: Invoice):
    """What the invoice's payments add up to in its own currency."""
    return from_cents(s.scalar(select(func.sum(cents(Payment.amount_currency))).where(Payment.invoice_id == inv.id)))


def credited(s: Session, inv: Invoice):
    """What the invoice's credit (or debit) notes settled of it: (company currency, its own currency)."""
    row = s.execute(select(func.sum(cents(CreditNote.applied)), func.sum(cents(CreditNote.applied_currency)))
                    .where(CreditNote.invoice_id == inv.id)).one()
    return from_cents(row[0]), from_cents(row[1])


def outstanding(s: Session, inv: Invoice):
    """What is still to pay on an invoice, in its own currency (less what its notes settled)."""
    return inv.gross_total_currency - paid_in_currency(s, inv) - credited(s, inv)[1]


def company_outstanding(s: Session, inv: Invoice):
    """What is still to pay on an invoice, in company currency (less what its notes settled)."""
    return inv.gross_total - inv.amount_paid - credited(s, inv)[0]


def settle_state(s: Session, inv: Invoice, settled_in_full: bool) -> None:
    """An invoice part or wholly settled (by a payment or a note): its state, and its order paid with it."""
    transition(INVOICE, inv, "pay" if settled_in_full else "pay_part")
    if inv.state == "paid":
        if inv.kind == "customer":
            transition(SALES_ORDER, s.get(SalesOrder, inv.sales_order_id), "pay")
        else:
            transition(PURCHASE_ORDER, s.get(PurchaseOrder, inv.purchase_order_id), "pay")


def register_payment(s: Session, invoice_id: int, amount, paid_on: dt.date | None = None,
                     method: str = "bank") -> Payment:
    """Record money received (customer) or paid (supplier) in the invoice's currency; a fully paid
    invoice marks its order paid. The payment is booked in company currency at the invoice's rate, and
    the payment that settles the invoice books exactly what is left of it in company currency."""
    inv = get_or_404(s, Invoice, invoice_id, "invoice", lock=True, options=full(Invoice))
    amount = round_money(D(amount))
    left = outstanding(s, inv)
    foreign = inv.currency != COMPANY_CURRENCY
    unit = f" {inv.currency}" if foreign else ""
    if amount <= 0:
        raise ValidationFailed("payment amount must be greater than zero", field="amount",
                               fix="Send a positive amount.")
    if inv.state == "paid":
        raise Conflict(f"invoice {inv.number} is already paid.", fix="Nothing is outstanding on it.")
    if amount > left:
        raise ValidationFailed(f"payment {amount}{unit} exceeds the {left}{unit} outstanding on {inv.number}",
                               field="amount", fix=f"Pay at most {left}{unit}.")
    company_left = company_outstanding(s, inv)
    if amount == left:
        company = company_left
    else:
        company = min(to_company(amount, inv.exchange_rate), company_left - CENT)
        if company <= 0:
            raise ValidationFailed(f"payment {amount}{unit} is worth less than a cent in {COMPANY_CURRENCY}",
                                   field="amount", fix="Pay a larger amount, or what is outstanding.")
    paid_on = paid_on or dt.date.today()
    builder = journal.customer_payment if inv.kind == "customer" else journal.supplier_payment
    number = next_number(s, "PAY")
    entry = ledger.post(s, f"payment:{inv.number}", f"{number} for {inv.number}",
                        builder(inv.partner_id, company, inv.currency, amount), paid_on)
    pay = Payment(number=number, invoice_id=inv.id, amount=company, paid_on=paid_on, method=method,
                  journal_entry_id=entry.id, currency=inv.currency, exchange_rate=inv.exchange_rate,
                  amount_currency=amount)
    s.add(pay)
    inv.amount_paid = inv.amount_paid + company
    settle_state(s, inv, amount == left)
    s.flush()
    return pay
