"""Invoices, bills, payments, accounts, journal entries, reports."""

import datetime as dt

from sqlalchemy import select

from ..models import Account, Invoice, JournalEntry, JournalLine
from ..services import billing, ledger, reports
from ..services.common import full, get_or_404
from . import schemas as S
from .framework import operation, paginate


@operation("/invoices", summary="List customer invoices and supplier bills", tag="finance",
           perm="finance.read", query=S.InvoiceQuery, response=S.Page[S.InvoiceOut])
def list_invoices(ctx):
    q = ctx.query
    stmt = select(Invoice).options(*full(Invoice)).order_by(Invoice.id.desc())
    for col in ("kind", "state", "partner_id"):
        if getattr(q, col):
            stmt = stmt.where(getattr(Invoice, col) == getattr(q, col))
    return paginate(ctx, stmt)


@operation("/invoices/<int:invoice_id>", summary="Get an invoice or bill", tag="finance",
           perm="finance.read", response=S.InvoiceOut)
def get_invoice(ctx, invoice_id):
    return get_or_404(ctx.s, Invoice, invoice_id, "invoice", options=full(Invoice))


@operation("/invoices/<int:invoice_id>/payments", "POST", summary="Register a payment on an invoice or bill",
           tag="finance", perm="finance.write", body=S.PaymentIn, response=S.PaymentOut, status=201)
def pay_invoice(ctx, invoice_id):
    b = ctx.body
    return billing.register_payment(ctx.s, invoice_id, b.amount, b.paid_on, b.method)


@operation("/accounts", summary="The chart of accounts", tag="finance", perm="finance.read",
           response=S.Page[S.AccountOut])
def list_accounts(ctx):
    rows = ctx.s.scalars(select(Account).order_by(Account.code)).all()
    return {"items": rows, "total": len(rows), "limit": len(rows), "offset": 0}


@operation("/journal-entries", summary="List journal entries", tag="finance", perm="finance.read",
           query=S.JournalQuery, response=S.Page[S.JournalEntryOut])
def list_entries(ctx):
    q = ctx.query
    stmt = select(JournalEntry).options(*full(JournalEntry)).order_by(JournalEntry.id.desc())
    if q.source:
        stmt = stmt.where(JournalEntry.source.startswith(q.source, autoescape=True))
    if q.account:
        on_account = select(JournalLine.entry_id).where(JournalLine.account_code == q.account)
        stmt = stmt.where(JournalEntry.id.in_(on_account))
    if q.date_from:
        stmt = stmt.where(JournalEntry.date >= q.date_from)
    if q.date_to:
        stmt = stmt.where(JournalEntry.date <= q.date_to)
    return paginate(ctx, stmt)


@operation("/journal-entries", "POST", summary="Post a manual journal entry", tag="finance",
           perm="finance.write", body=S.JournalEntryIn, response=S.JournalEntryOut, status=201,
           location="/journal-entries/{id}")
def post_entry(ctx):
    b = ctx.body
    return ledger.manual_entry(ctx.s, b.memo, [l.model_dump() for l in b.lines], b.date)


@operation("/journal-entries/<int:entry_id>", summary="Get a journal entry", tag="finance",
           perm="finance.read", response=S.JournalEntryOut)
def get_entry(ctx, entry_id):
    return get_or_404(ctx.s, JournalEntry, entry_id, "journal entry", options=full(JournalEntry))


@operation("/journal-entries/<int:entry_id>/reverse", "POST", summary="Reverse a posted entry",
           tag="finance", perm="finance.write", body=S.ReverseIn, response=S.JournalEntryOut, status=201,
           location="/journal-entries/{id}")
def reverse_entry(ctx, entry_id):
    return ledger.reverse(ctx.s, entry_id, ctx.body.memo, ctx.body.date)


# ---- reports ----------------------------------------------------------------------------------

@operation("/reports/trial-balance", summary="Trial balance", tag="reports", perm="reports.read",
           query=S.TrialBalanceQuery)
def trial_balance(ctx):
    return reports.trial_balance(ctx.s, ctx.query.as_of, ctx.query.date_from)


@operation("/reports/profit-and-loss", summary="Profit and loss", tag="reports", perm="reports.read",
           query=S.PeriodQuery)
def profit_and_loss(ctx):
    return reports.profit_and_loss(ctx.s, ctx.query.date_from, ctx.query.date_to)


@operation("/reports/balance-sheet", summary="Balance sheet", tag="reports", perm="reports.read",
           query=S.AsOfQuery)
def balance_sheet(ctx):
    return reports.balance_sheet(ctx.s, ctx.query.as_of)


@operation("/reports/stock-valuation", summary="Stock valuation by warehouse", tag="reports",
           perm="reports.read")
def stock_valuation(ctx):
    return reports.stock_valuation(ctx.s)


@operation("/reports/aging", summary="Receivables or payables aging", tag="reports", perm="reports.read",
           query=S.AgingQuery)
def aging(ctx):
    return reports.aging(ctx.s, ctx.query.kind, ctx.query.as_of or dt.date.today())


@operation("/reports/low-stock", summary="Products below their reorder point", tag="reports",
           perm="reports.read")
def low_stock_report(ctx):
    return reports.low_stock(ctx.s)
