"""Reports: read-only views over the ledger, invoices and stock, as plain dicts with Decimal amounts.

Ledger sums are taken in SQL as whole cents (see erp_core.invariants.cents), so a report is exact on
SQLite as on PostgreSQL, and a balance sheet balances to the cent.
"""

from __future__ import annotations

import datetime as dt
from decimal import Decimal

from sqlalchemy import and_, case, func, literal, select
from sqlalchemy.orm import Session

from ..domain.journal import PAYABLE, RECEIVABLE
from ..domain.money import ZERO, round_cost, round_money, round_qty
from ..errors import ValidationFailed
from . import periods
from ..invariants import cents, from_cents
from ..models import (Account, CreditNote, Invoice, JournalEntry, JournalLine, Partner, Payment, Product, ReorderRule,
                      StockLevel, Warehouse)

NOTE_KIND = {"customer": "credit", "supplier": "debit"}  # the notes that lower what an invoice kind leaves open
AGING_BUCKETS = ("current", "days_1_30", "days_31_60", "days_61_90", "over_90")
RETAINED_EARNINGS = "Retained earnings (profit to date)"


def _account_sums(s: Session, date_from: dt.date | None = None, date_to: dt.date | None = None,
                  types: tuple[str, ...] | None = None) -> list[dict]:
    """Debits and credits per account over journal entries dated in [date_from, date_to],
    for accounts with at least one line there, ordered by account code (whole months from the
    period balances, see services.periods)."""
    sums = periods.account_cents(s, date_from, date_to)
    stmt = select(Account.code, Account.name, Account.type).where(Account.code.in_(list(sums))).order_by(Account.code)
    if types is not None:
        stmt = stmt.where(Account.type.in_(types))
    return [{"code": r.code, "name": r.name, "type": r.type,
             "debit": from_cents(sums[r.code][0]), "credit": from_cents(sums[r.code][1])} for r in s.execute(stmt)]


def _total(rows: list[dict], key: str = "amount") -> Decimal:
    return sum((r[key] for r in rows), ZERO)


def _lines(sums: list[dict], account_type: str) -> list[dict]:
    """Report lines of one account type, signed so that the account's normal side is positive."""
    debit_normal = account_type in ("asset", "expense")
    return [{"code": a["code"], "name": a["name"],
             "amount": a["debit"] - a["credit"] if debit_normal else a["credit"] - a["debit"]}
            for a in sums if a["type"] == account_type]


def trial_balance(s: Session, as_of: dt.date | None = None, date_from: dt.date | None = None) -> dict:
    """Every account with entries up to as_of (all time if None; from date_from if given, e.g. one
    month's movements): its debits, credits and balance (debit - credit). The totals' debit equals
    their credit in a sound ledger."""
    rows = [{**a, "balance": a["debit"] - a["credit"]} for a in _account_sums(s, date_from, as_of)]
    debit, credit = _total(rows, "debit"), _total(rows, "credit")
    return {"as_of": as_of, "date_from": date_from, "rows": rows,
            "totals": {"debit": debit, "credit": credit, "balance": debit - credit}}


def profit_and_loss(s: Session, date_from: dt.date | None = None, date_to: dt.date | None = None) -> dict:
    """Income (credit - debit) and expense (debit - credit) accounts over a period, and the net profit."""
    sums = _account_sums(s, date_from, date_to, types=("income", "expense"))
    income, expense = _lines(sums, "income"), _lines(sums, "expense")
    total_income, total_expense = _total(income), _total(expense)
    return {"date_from": date_from, "date_to": date_to, "income": income, "expense": expense,
            "total_income": total_income, "total_expense": total_expense,
            "net_profit": total_income - total_expense}


def balance_sheet(s: Session, as_of: dt.date | None = None) -> dict:
    """Assets, liabilities and equity at as_of. The profit to date (no period is closed into equity)
    is shown as a retained earnings line of equity, so assets = liabilities + equity."""
    sums = _account_sums(s, date_to=as_of)
    assets, liabilities, equity = _lines(sums, "asset"), _lines(sums, "liability"), _lines(sums, "equity")
    profit = _total(_lines(sums, "income")) - _total(_lines(sums, "expense"))
    equity.append({"code": None, "name": RETAINED_EARNINGS, "amount": profit})
    total_assets, total_liabilities, total_equity = _total(assets), _total(liabilities), _total(equity)
    return {"as_of": as_of, "assets": assets, "liabilities": liabilities, "equity": equity,
            "total_assets": total_assets, "total_liabilities": total_liabilities, "total_equity": total_equity,
            "balanced": total_assets == total_liabilities + total_equity}


def general_ledger(s: Session, account_code: str, date_from: dt.date | None = None,
                   date_to: dt.date | None = None, limit: int = 5000) -> dict:
    """One account's journal lines dated in [date_from, date_to], oldest first, with the opening
    balance (everything before date_from), the running balance after each line and the closing
    balance; balances are debit - credit, as in the trial balance, so the closing balance equals the
    trial balance's row at date_to. At most `limit` lines are listed (`truncated` says so); the
    totals and the closing balance always cover the whole range."""
    account = s.get(Account, account_code)
    if account is None:
        raise ValidationFailed(f"there is no account {account_code!r}", field="account",
                               fix="Pick an account from the chart of accounts.")
    if date_from is not None and date_to is not None and date_from > date_to:
        raise ValidationFailed("the range starts after it ends", field="date_from",
                               fix="Give a start date on or before the end date.")
    before = periods.account_cents(s, None, date_from - dt.timedelta(days=1)) if date_from else {}
    opening = from_cents(before.get(account_code, [0, 0])[0]) - from_cents(before.get(account_code, [0, 0])[1])
    within = periods.account_cents(s, date_from, date_to).get(account_code, [0, 0])
    debit, credit = from_cents(within[0]), from_cents(within[1])
    stmt = (select(JournalEntry.id.label("entry_id"), JournalEntry.number, JournalEntry.date, JournalEntry.memo,
                   JournalEntry.source, JournalLine.debit, JournalLine.credit, Partner.code.label("partner_code"),
                   JournalLine.partner_id)
            .join(JournalEntry, JournalEntry.id == JournalLine.entry_id)
            .outerjoin(Partner, Partner.id == JournalLine.partner_id)
            .where(JournalLine.account_code == account_code)
            .order_by(JournalEntry.date, JournalEntry.id, JournalLine.id).limit(limit + 1))
    if date_from is not None:
        stmt = stmt.where(JournalEntry.date >= date_from)
    if date_to is not None:
        stmt = stmt.where(JournalEntry.date <= date_to)
    rows, balance = [], opening
    for r in s.execute(stmt).all()[:limit]:
        line_debit, line_credit = round_money(r.debit), round_money(r.credit)
        balance += line_debit - line_credit
        rows.append({"entry_id": r.entry_id, "number": r.number, "date": r.date, "memo": r.memo, "source": r.source,
                     "partner_code": r.partner_code, "partner_id": r.partner_id, "debit": line_debit,
                     "credit": line_credit, "balance": balance})
    return {"account": {"code": account.code, "name": account.name, "type": account.type},
            "date_from": date_from, "date_to": date_to, "opening": opening, "lines": rows,
            "truncated": len(rows) == limit and s.scalar(select(func.count()).select_from(stmt.subquery())) > limit,
            "totals": {"debit": debit, "credit": credit}, "closing": opening + debit - credit}


def stock_valuation(s: Session) -> dict:
    """What the stock on hand is worth: each product with a nonzero quantity in each warehouse,
    valued at the product's average cost, with totals per warehouse and overall."""
    stmt = (select(Warehouse.id.label("warehouse_id"), Warehouse.code.label("warehouse_code"),
                   Warehouse.name.label("warehouse_name"), Product.id.label("product_id"), Product.sku,
                   Product.name, StockLevel.quantity, Product.avg_cost)
            .join(Product, Product.id == StockLevel.product_id)
            .join(Warehouse, Warehouse.id == StockLevel.warehouse_id)
            .where(StockLevel.quantity != 0)
            .order_by(Warehouse.code, Product.sku))
    warehouses: dict[int, dict] = {}
    for r in s.execute(stmt):
        wh = warehouses.setdefault(r.warehouse_id, {"warehouse_id": r.warehouse_id, "code": r.warehouse_code,
                                                    "name": r.warehouse_name, "lines": [], "total_value": ZERO})
        quantity, unit_cost = round_qty(r.quantity), round_cost(r.avg_cost)
        value = round_money(quantity * unit_cost)
        wh["lines"].append({"product_id": r.product_id, "sku": r.sku, "name": r.name,
                            "quantity": quantity, "unit_cost": unit_cost, "value": value})
        wh["total_value"] += value
    listed = list(warehouses.values())
    return {"warehouses": listed, "total_value": _total(listed, "total_value")}


def aging_bucket(days_overdue: int) -> str:
    """The aging bucket of an invoice that is days_overdue past its due date (<= 0: not yet due)."""
    if days_overdue <= 0:
        return "current"
    if days_overdue <= 30:
        return "days_1_30"
    if days_overdue <= 60:
        return "days_31_60"
    return "days_61_90" if days_overdue <= 90 else "over_90"


def aging(s: Session, kind: str, as_of: dt.date | None = None) -> dict:
    """What customers owe us (kind 'customer') or we owe suppliers ('supplier'): the outstanding
    amount of each open or partly paid invoice, by partner, bucketed by days past due at as_of
    (today if None)."""
    if kind not in ("customer", "supplier"):
        raise ValidationFailed(f"unknown aging kind {kind!r}", field="kind", fix="Use 'customer' or 'supplier'.")
    as_of = as_of or dt.date.today()
    stmt = (select(Partner.id.label("partner_id"), Partner.code, Partner.name, Invoice.id.label("invoice_id"),
                   Invoice.number, Invoice.issue_date,
                   Invoice.due_date, Invoice.gross_total, (Invoice.amount_paid + Invoice.credited).label("amount_paid"))
            .join(Partner, Partner.id == Invoice.partner_id)
            .where(Invoice.kind == kind, Invoice.state.in_(("open", "partial")))
            .order_by(Partner.code, Invoice.due_date, Invoice.number))
    notes = (select(Partner.id.label("partner_id"), Partner.code, Partner.name,
                    CreditNote.invoice_id, CreditNote.number, CreditNote.issue_date,
                    CreditNote.issue_date.label("due_date"), literal(0).label("gross_total"),
                    (CreditNote.gross_total - CreditNote.applied).label("amount_paid"))
             .join(Partner, Partner.id == CreditNote.partner_id)
             .where(CreditNote.kind == NOTE_KIND[kind], CreditNote.gross_total > CreditNote.applied)
             .order_by(Partner.code, CreditNote.number))
    partners: dict[int, dict] = {}
    # a note not (wholly) applied to its invoice is the partner's balance the other way: a negative row
    for r in sorted([*s.execute(stmt), *s.execute(notes)], key=lambda r: r.code):
        partner = partners.setdefault(r.partner_id, {"partner_id": r.partner_id, "code": r.code, "name": r.name,
                                                     "invoices": [], "buckets": dict.fromkeys(AGING_BUCKETS, ZERO),
                                                     "total": ZERO})
        outstanding = round_money(r.gross_total) - round_money(r.amount_paid)
        days_overdue = (as_of - r.due_date).days
        bucket = aging_bucket(days_overdue)
        partner["invoices"].append({"invoice_id": r.invoice_id, "number": r.number, "issue_date": r.issue_date,
                                    "due_date": r.due_date,
                                    "days_overdue": max(days_overdue, 0), "bucket": bucket,
                                    "outstanding": outstanding})
        partner["buckets"][bucket] += outstanding
        partner["total"] += outstanding
    listed = list(partners.values())
    return {"kind": kind, "as_of": as_of, "partners": listed,
            "buckets": {b: sum((p["buckets"][b] for p in listed), ZERO) for b in AGING_BUCKETS},
            "total": _total(listed, "total")}


def outstanding(s: Session, kind: str, as_of: dt.date | None = None) -> dict:
    """{"total", "overdue"}: what customers owe us (kind 'customer') or we owe suppliers ('supplier') at
    as_of (today if None), and the part past its due date, summed in the database to the cent (what the
    dashboard shows; aging() lists each invoice)."""
    as_of = as_of or dt.date.today()
    rest = cents(Invoice.gross_total) - cents(Invoice.amount_paid) - cents(Invoice.credited)
    total, overdue = s.execute(select(func.sum(rest), func.sum(case((Invoice.due_date < as_of, rest), else_=0)))
                               .where(Invoice.kind == kind, Invoice.state.in_(("open", "partial")))).one()
    credit = s.scalar(select(func.sum(cents(CreditNote.gross_total) - cents(CreditNote.applied)))
                      .where(CreditNote.kind == NOTE_KIND[kind]))
    return {"total": from_cents(total) - from_cents(credit), "overdue": from_cents(overdue)}


def low_stock(s: Session) -> list[dict]:
    """Each reorder rule whose product is below its minimum in its warehouse (no stock_levels row
    means nothing on hand), with a suggested quantity to order: the rule's reorder quantity, or
    more if that would not bring the stock back up to the minimum."""
    stmt = (select(Product.id.label("product_id"), Product.sku, Product.name, Warehouse.id.label("warehouse_id"),
                   Warehouse.code.label("warehouse_code"), StockLevel.quantity, ReorderRule.min_quantity,
                   ReorderRule.reorder_quantity)
            .join(Product, Product.id == ReorderRule.product_id)
            .join(Warehouse, Warehouse.id == ReorderRule.warehouse_id)
            .outerjoin(StockLevel, and_(StockLevel.product_id == ReorderRule.product_id,
                                        StockLevel.warehouse_id == ReorderRule.warehouse_id))
            .order_by(Warehouse.code, Product.sku))
    rows = []
    for r in s.execute(stmt):
        on_hand, minimum = round_qty(r.quantity or 0), round_qty(r.min_quantity)
        if on_hand >= minimum:
            continue
        reorder = round_qty(r.reorder_quantity)
        rows.append({"product_id": r.product_id, "sku": r.sku, "name": r.name, "warehouse_id": r.warehouse_id,
                     "warehouse_code": r.warehouse_code, "on_hand": on_hand, "min_quantity": minimum,
                     "reorder_quantity": reorder, "suggested_quantity": max(reorder, minimum - on_hand)})
    return rows


def documents_of_entries(s: Session, entry_ids) -> dict[int, dict]:
    """The invoice or bill each journal entry belongs to (its own entry, or the entry of a payment of it):
    {entry id: {"invoice_id", "number"}}, for drilling down from a ledger line to its document."""
    ids = list(set(entry_ids))
    if not ids:
        return {}
    own = s.execute(select(Invoice.journal_entry_id, Invoice.id, Invoice.number)
                    .where(Invoice.journal_entry_id.in_(ids))).all()
    paid = s.execute(select(Payment.journal_entry_id, Invoice.id, Invoice.number)
                     .join(Invoice, Invoice.id == Payment.invoice_id).where(Payment.journal_entry_id.in_(ids))).all()
    notes = s.execute(select(CreditNote.journal_entry_id, CreditNote.invoice_id, CreditNote.number)
                      .where(CreditNote.journal_entry_id.in_(ids))).all()
    return {e: {"invoice_id": i, "number": n} for e, i, n in [*own, *paid, *notes]}


def partner_ledger(s: Session, partner_id: int, limit: int = 5000) -> dict:
    """One customer's or supplier's lines on the receivable and payable accounts, oldest first, with the
    running balance (debit - credit: what the customer owes is positive, what we owe a supplier negative)
    and the document (invoice, bill, or the one a payment settles) of each line. At most `limit` lines are
    listed (`truncated` says so); the balance always covers every line."""
    partner = s.get(Partner, partner_id)
    if partner is None:
        raise ValidationFailed(f"there is no partner {partner_id}", field="partner_id",
                               fix="Pick the customer or supplier from the list.")
    cond = and_(JournalLine.partner_id == partner_id, JournalLine.account_code.in_((RECEIVABLE, PAYABLE)))
    stmt = (select(JournalEntry.id.label("entry_id"), JournalEntry.number, JournalEntry.date, JournalEntry.memo,
                   JournalLine.account_code, JournalLine.debit, JournalLine.credit)
            .join(JournalEntry, JournalEntry.id == JournalLine.entry_id).where(cond)
            .order_by(JournalEntry.date, JournalEntry.id, JournalLine.id).limit(limit + 1))
    found = s.execute(stmt).all()
    docs = documents_of_entries(s, [r.entry_id for r in found[:limit]])
    rows, balance = [], ZERO
    for r in found[:limit]:
        debit, credit = round_money(r.debit), round_money(r.credit)
        balance += debit - credit
        rows.append({"entry_id": r.entry_id, "number": r.number, "date": r.date, "memo": r.memo,
                     "account": r.account_code, "debit": debit, "credit": credit, "balance": balance,
                     "document": docs.get(r.entry_id)})
    sums = s.execute(select(func.coalesce(func.sum(cents(JournalLine.debit)), 0),
                            func.coalesce(func.sum(cents(JournalLine.credit)), 0)).where(cond)).one()
    return {"partner": {"id": partner.id, "code": partner.code, "name": partner.name}, "lines": rows,
            "truncated": len(found) > limit, "totals": {"debit": from_cents(sums[0]), "credit": from_cents(sums[1])},
            "balance": from_cents(sums[0]) - from_cents(sums[1])}
