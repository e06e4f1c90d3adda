"""Business invariants: what must hold in any healthy ERP database.

The control plane runs these after a restore, an upgrade stage and a drill; an empty list means the
books, the stock and the documents are consistent. Each check aggregates in SQL and brings back only
the rows that break its rule, so it runs on databases with millions of rows. Amounts are summed as
whole cents and quantities as thousandths: exact on SQLite (whose SUM of a NUMERIC column is a
float) and on PostgreSQL alike. Foreign keys are checked with LEFT JOINs rather than trusted, since
a restored SQLite copy may have been written with foreign keys off.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from decimal import Decimal

from sqlalchemy import BigInteger, ForeignKeyConstraint, Table, and_, cast, func, literal, or_, select, union_all
from sqlalchemy.orm import Session

from .domain.money import round_money, round_qty
from .models import (Base, Invoice, JournalEntry, JournalLine, Payment, Product, PurchaseOrder, PurchaseOrderLine,
                     SalesOrder, SalesOrderLine, StockLevel, StockMove, Warehouse)

# Violations listed per query at most; past that one 'truncated' violation says the list is cut.
MAX_REPORTED = 1000


@dataclass(frozen=True)
class Violation:
    """One broken rule: the check that found it, what is wrong, and the row or document it concerns."""

    check: str
    detail: str
    ref: str

    def as_dict(self) -> dict:
        return asdict(self)


# ---- exact sums in SQL ------------------------------------------------------------------------

def cents(column):
    """A money column as whole cents: SUM of it is an exact integer on every engine."""
    return cast(func.round(column * 100), BigInteger)


def from_cents(value) -> Decimal:
    """A sum of cents (int, Decimal or None) back to money."""
    return round_money(Decimal(value or 0) / 100)


def thousandths(column):
    """A quantity column as whole thousandths (quantities keep three places)."""
    return cast(func.round(column * 1000), BigInteger)


def from_thousandths(value) -> Decimal:
    return round_qty(Decimal(value or 0) / 1000)


def _violations(s: Session, check: str, stmt, describe) -> list[Violation]:
    """Run `stmt` (one row per broken rule) and turn each row into a Violation via
    describe(row) -> (detail, ref); at most MAX_REPORTED of them."""
    rows = s.execute(stmt.limit(MAX_REPORTED + 1)).all()
    found = [Violation(check, *describe(row)) for row in rows[:MAX_REPORTED]]
    if len(rows) > MAX_REPORTED:
        found.append(Violation(check, f"more than {MAX_REPORTED} violations of this kind; "
                                      f"only the first {MAX_REPORTED} are listed", "truncated"))
    return found


# ---- the checks -------------------------------------------------------------------------------

def journal_entries_balance(s: Session) -> list[Violation]:
    """Every journal entry has at least one line, and its debits equal its credits."""
    check = "journal_entries_balance"
    debit = func.sum(cents(JournalLine.debit))
    credit = func.sum(cents(JournalLine.credit))
    unbalanced = (select(JournalEntry.number, debit.label("debit"), credit.label("credit"))
                  .join(JournalLine, JournalLine.entry_id == JournalEntry.id)
                  .group_by(JournalEntry.id, JournalEntry.number)
                  .having(debit != credit)
                  .order_by(JournalEntry.id))
    empty = (select(JournalEntry.number)
             .outerjoin(JournalLine, JournalLine.entry_id == JournalEntry.id)
             .where(JournalLine.id.is_(None))
             .order_by(JournalEntry.id))
    return (
        _violations(s, check, unbalanced, lambda r: (
            f"journal entry {r.number}: debits {from_cents(r.debit)} != credits {from_cents(r.credit)}",
            r.number))
        + _violations(s, check, empty, lambda r: (f"journal entry {r.number} has no lines", r.number))
    )


def trial_balance_zero(s: Session) -> list[Violation]:
    """All debits in the ledger add up to all credits."""
    debit, credit = s.execute(select(func.sum(cents(JournalLine.debit)),
                                      func.sum(cents(JournalLine.credit)))).one()
    if from_cents(debit) == from_cents(credit):
        return []
    return [Violation("trial_balance_zero",
                      f"total debits {from_cents(debit)} != total credits {from_cents(credit)}",
                      "journal_lines")]


def on_hand_matches_moves(s: Session) -> list[Violation]:
    """For every product in every warehouse, the on-hand quantity (stock_levels) equals the done
    moves into the warehouse minus the done moves out of it. A missing stock_levels row counts as
    zero on hand; a row with no moves must be zero."""
    done = StockMove.state == "done"
    qty = thousandths(StockMove.quantity)
    none = literal(0, BigInteger)
    parts = union_all(
        select(StockMove.product_id, StockMove.to_warehouse_id.label("warehouse_id"), qty.label("moved"),
               none.label("on_hand"), none.label("levels"))
        .where(done, StockMove.to_warehouse_id.is_not(None)),
        select(StockMove.product_id, StockMove.from_warehouse_id, -qty, none, none)
        .where(done, StockMove.from_warehouse_id.is_not(None)),
        select(StockLevel.product_id, StockLevel.warehouse_id, none, thousandths(StockLevel.quantity),
               literal(1, BigInteger)),
    ).subquery()
    moved, on_hand = func.sum(parts.c.moved), func.sum(parts.c.on_hand)
    pairs = (select(parts.c.product_id, parts.c.warehouse_id, moved.label("moved"), on_hand.label("on_hand"),
                    func.sum(parts.c.levels).label("levels"))
             .group_by(parts.c.product_id, parts.c.warehouse_id)
             .having(moved != on_hand)
             .subquery())
    stmt = (select(pairs, Product.sku, Warehouse.code)
            .outerjoin(Product, Product.id == pairs.c.product_id)
            .outerjoin(Warehouse, Warehouse.id == pairs.c.warehouse_id)
            .order_by(pairs.c.product_id, pairs.c.warehouse_id))

    def describe(r):
        ref = f"{r.sku or f'product#{r.product_id}'}@{r.code or f'warehouse#{r.warehouse_id}'}"
        level = "no stock_levels row" if not r.levels else f"on hand {from_thousandths(r.on_hand)}"
        return (f"{ref} (product {r.product_id}, warehouse {r.warehouse_id}): {level}, "
                f"but done moves add up to {from_thousandths(r.moved)}", ref)

    return _violations(s, "on_hand_matches_moves", stmt, describe)


def document_totals_match_lines(s: Session) -> list[Violation]:
    """Sales and purchase orders: totals equal the sums of their lines and gross = net + tax.
    Invoices and bills: gross = net + tax, amount_paid = the sum of their payments, and the state
    follows amount_paid: 'open' when nothing is paid, 'paid' when all of gross is, else 'partial'."""
    return (_order_totals(s, "sales order", SalesOrder, SalesOrderLine)
            + _order_totals(s, "purchase order", PurchaseOrder, PurchaseOrderLine)
            + _invoice_totals(s))


def _order_totals(s: Session, what: str, order, line) -> list[Violation]:
    sums = (select(line.order_id, func.sum(cents(line.net_amount)).label("net"),
                   func.sum(cents(line.tax_amount)).label("tax"))
            .group_by(line.order_id)
            .subquery())
    net, tax, gross = cents(order.net_total), cents(order.tax_total), cents(order.gross_total)
    line_net, line_tax = func.coalesce(sums.c.net, 0), func.coalesce(sums.c.tax, 0)
    stmt = (select(order.number, net.label("net"), tax.label("tax"), gross.label("gross"),
                   line_net.label("line_net"), line_tax.label("line_tax"))
            .outerjoin(sums, sums.c.order_id == order.id)
            .where(or_(net != line_net, tax != line_tax, gross != net + tax))
            .order_by(order.id))

    def describe(r):
        net, tax, gross = from_cents(r.net), from_cents(r.tax), from_cents(r.gross)
        line_net, line_tax = from_cents(r.line_net), from_cents(r.line_tax)
        problems = []
        if net != line_net:
            problems.append(f"net_total {net} != sum of line net amounts {line_net}")
        if tax != line_tax:
            problems.append(f"tax_total {tax} != sum of line tax amounts {line_tax}")
        if gross != net + tax:
            problems.append(f"gross_total {gross} != net + tax {net + tax}")
        return f"{what} {r.number}: " + "; ".join(problems), r.number

    return _violations(s, "document_totals_match_lines", stmt, describe)


def _invoice_totals(s: Session) -> list[Violation]:
    paid = (select(Payment.invoice_id, func.sum(cents(Payment.amount)).label("paid"))
            .group_by(Payment.invoice_id)
            .subquery())
    net, tax, gross = cents(Invoice.net_total), cents(Invoice.tax_total), cents(Invoice.gross_total)
    amount_paid, payments = cents(Invoice.amount_paid), func.coalesce(paid.c.paid, 0)
    state_ok = or_(and_(Invoice.state == "open", amount_paid == 0),
                   and_(Invoice.state == "paid", amount_paid == gross),
                   and_(Invoice.state == "partial", amount_paid > 0, amount_paid < gross))
    stmt = (select(Invoice.number, Invoice.kind, Invoice.state, net.label("net"), tax.label("tax"),
                   gross.label("gross"), amount_paid.label("amount_paid"), payments.label("payments"))
            .outerjoin(paid, paid.c.invoice_id == Invoice.id)
            .where(or_(gross != net + tax, amount_paid != payments, ~state_ok))
            .order_by(Invoice.id))

    def describe(r):
        net, tax, gross = from_cents(r.net), from_cents(r.tax), from_cents(r.gross)
        amount_paid, payments = from_cents(r.amount_paid), from_cents(r.payments)
        problems = []
        if gross != net + tax:
            problems.append(f"gross_total {gross} != net + tax {net + tax}")
        if amount_paid != payments:
            problems.append(f"amount_paid {amount_paid} != sum of payments {payments}")
        if not _state_fits(r.state, amount_paid, gross):
            problems.append(f"state {r.state!r} does not fit amount_paid {amount_paid} of gross {gross}")
        what = "invoice" if r.kind == "customer" else "bill"
        return f"{what} {r.number}: " + "; ".join(problems), r.number

    return _violations(s, "document_totals_match_lines", stmt, describe)


def _state_fits(state: str, amount_paid: Decimal, gross: Decimal) -> bool:
    """The Python twin of `state_ok` above, to say which rule an invoice row broke."""
    return ((state == "open" and amount_paid == 0) or (state == "paid" and amount_paid == gross)
            or (state == "partial" and 0 < amount_paid < gross))


def no_orphans(s: Session) -> list[Violation]:
    """Every foreign key of every table points at an existing row: no order line without its
    order, journal line without its entry, payment without its invoice, stock level without its
    product or warehouse, and so on. Checked with LEFT JOINs, whatever the engine enforces."""
    found = []
    for table in Base.metadata.sorted_tables:
        for fk in sorted(table.foreign_key_constraints, key=lambda fk: fk.column_keys):
            found += _orphans(s, table, fk)
    return found


def _orphans(s: Session, table: Table, fk: ForeignKeyConstraint) -> list[Violation]:
    parent = fk.referred_table.alias("parent")
    links = [(el.parent, parent.c[el.column.name]) for el in fk.elements]
    keys = list(table.primary_key.columns)
    stmt = (select(*(c.label(f"pk{i}") for i, c in enumerate(keys)),
                   *(c.label(f"fk{i}") for i, (c, _) in enumerate(links)))
            .select_from(table)
            .outerjoin(parent, and_(*(child == ref for child, ref in links)))
            .where(*(child.is_not(None) for child, _ in links), links[0][1].is_(None))
            .order_by(*keys))

    def describe(r):
        key = "/".join(str(r._mapping[f"pk{i}"]) for i in range(len(keys)))
        pointer = ", ".join(f"{child.name}={r._mapping[f'fk{i}']}" for i, (child, _) in enumerate(links))
        return (f"{table.name} {key}: {pointer} has no {fk.referred_table.name} row", f"{table.name}:{key}")

    return _violations(s, "no_orphans", stmt, describe)


CHECKS = (journal_entries_balance, trial_balance_zero, on_hand_matches_moves, document_totals_match_lines,
          no_orphans)


def check_all(s: Session) -> list[Violation]:
    """Run every check; an empty list means the database is consistent."""
    return [violation for check in CHECKS for violation in check(s)]
