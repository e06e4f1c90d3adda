"""Reports: read-only views over the ledger, invoices and stock, as plain dicts with Decimal amounts.

Ledger sums are taken in SQL as whole cents (see erp_core.invariants.cents), so a report is exact on
SQLite as on PostgreSQL, and a balance sheet balances to the cent.
"""

from __future__ import annotations

import datetime as dt
from decimal import Decimal

from sqlalchemy import and_, func, select
from sqlalchemy.orm import Session

from ..domain.money import ZERO, round_cost, round_money, round_qty
from ..errors import ValidationFailed
from ..invariants import cents, from_cents
from ..models import Account, Invoice, JournalEntry, JournalLine, Partner, Product, ReorderRule, StockLevel, Warehouse

AGING_BUCKETS = ("current", "days_1_30", "days_31_60", "days_61_90", "over_90")
RETAINED_EARNINGS = "Retained earnings (profit to date)"


def _account_sums(s: Session, date_from: dt.date | None = None, date_to: dt.date | None = None,
                  types: tuple[str, ...] | None = None) -> list[dict]:
    """Debits and credits per account over journal entries dated in [date_from, date_to],
    for accounts with at least one line there, ordered by account code."""
    debit = func.sum(cents(JournalLine.debit)).label("debit")
    credit = func.sum(cents(JournalLine.credit)).label("credit")
    stmt = (select(Account.code, Account.name, Account.type, debit, credit)
            .join(JournalLine, JournalLine.account_code == Account.code)
            .join(JournalEntry, JournalEntry.id == JournalLine.entry_id)
            .group_by(Account.code, Account.name, Account.type)
            .order_by(Account.code))
    if date_from is not None:
        stmt = stmt.where(JournalEntry.date >= date_from)
    if date_to is not None:
        stmt = stmt.where(JournalEntry.date <= date_to)
    if types is not None:
        stmt = stmt.where(Account.type.in_(types))
    return [{"code": r.code, "name": r.name, "type": r.type,
             "debit": from_cents(r.debit), "credit": from_cents(r.credit)} for r in s.execute(stmt)]


def _total(rows: list[dict], key: str = "amount") -> Decimal:
    return sum((r[key] for r in rows), ZERO)


def _lines(sums: list[dict], account_type: str) -> list[dict]:
    """Report lines of one account type, signed so that the account's normal side is positive."""
    debit_normal = account_type in ("asset", "expense")
    return [{"code": a["code"], "name": a["name"],
             "amount": a["debit"] - a["credit"] if debit_normal else a["credit"] - a["debit"]}
            for a in sums if a["type"] == account_type]


def trial_balance(s: Session, as_of: dt.date | None = None) -> dict:
    """Every account with entries up to as_of (all time if None): its debits, credits and
    balance (debit - credit). The totals' debit equals their credit in a sound ledger."""
    rows = [{**a, "balance": a["debit"] - a["credit"]} for a in _account_sums(s, date_to=as_of)]
    debit, credit = _total(rows, "debit"), _total(rows, "credit")
    return {"as_of": as_of, "rows": rows,
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
    stmt = (select(Partner.id.label("partner_id"), Partner.code, Partner.name, Invoice.number, Invoice.issue_date,
                   Invoice.due_date, Invoice.gross_total, Invoice.amount_paid)
            .join(Partner, Partner.id == Invoice.partner_id)
            .where(Invoice.kind == kind, Invoice.state.in_(("open", "partial")))
            .order_by(Partner.code, Invoice.due_date, Invoice.number))
    partners: dict[int, dict] = {}
    for r in s.execute(stmt):
        partner = partners.setdefault(r.partner_id, {"partner_id": r.partner_id, "code": r.code, "name": r.name,
                                                     "invoices": [], "buckets": dict.fromkeys(AGING_BUCKETS, ZERO),
                                                     "total": ZERO})
        outstanding = round_money(r.gross_total) - round_money(r.amount_paid)
        days_overdue = (as_of - r.due_date).days
        bucket = aging_bucket(days_overdue)
        partner["invoices"].append({"number": r.number, "issue_date": r.issue_date, "due_date": r.due_date,
                                    "days_overdue": max(days_overdue, 0), "bucket": bucket,
                                    "outstanding": outstanding})
        partner["buckets"][bucket] += outstanding
        partner["total"] += outstanding
    listed = list(partners.values())
    return {"kind": kind, "as_of": as_of, "partners": listed,
            "buckets": {b: sum((p["buckets"][b] for p in listed), ZERO) for b in AGING_BUCKETS},
            "total": _total(listed, "total")}


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
