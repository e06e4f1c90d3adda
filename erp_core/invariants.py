"""Business invariants: what must hold in any healthy ERP database.

The control plane runs these after a restore, an upgrade stage and a drill; an empty list means the
books, the stock and the documents are consistent. Each check aggregates in SQL and brings back only
the rows that break its rule, so it runs on databases with millions of rows. Amounts are summed as
whole cents and quantities as thousandths: exact on SQLite (whose SUM of a NUMERIC column is a
float) and on PostgreSQL alike. Foreign keys are checked with LEFT JOINs rather than trusted, since
a restored SQLite copy may have been written with foreign keys off. The general ledger's control
accounts are reconciled with their subledgers to the cent (ledger_matches_subledgers: Inventory with
the products' stock values, receivables and payables with the open invoices and bills, goods received
not billed with the purchase orders received and not yet billed).

The checks run on every schema from release 1.0's to the current one (the control plane checks a
database before, during and after a staged upgrade): the currency and lot checks run once the release
1.1 columns exist, skip the rows whose new columns are still empty (not yet backfilled), and require
every stock move to carry a lot once the schema is contracted; so does the Inventory reconciliation
(the products' stock values, added by 0005, are current from the contract step on).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from decimal import Decimal

from sqlalchemy import (BigInteger, ForeignKeyConstraint, Table, and_, cast, func, inspect, literal, or_, select, text,
                        union_all)
from sqlalchemy.orm import Session

from .domain import journal
from .domain.money import COMPANY_CURRENCY, round_money, round_qty, to_company
from .models import (Base, CreditNote, Invoice, JournalEntry, JournalLine, Lot, Payment, Product, PurchaseOrder, PurchaseOrderLine,
                     Return, ReturnLine, SalesOrder, SalesOrderLine, StockLevel, StockMove, Warehouse)

# The migration that makes the release 1.1 columns required.
CONTRACT_1_1 = "0004"


def release_1_1_schema(s: Session) -> str:
    """'absent' (a 1.0 schema), 'expanded' (the 1.1 columns exist, maybe still empty) or 'contracted'."""
    conn = s.connection()
    if not inspect(conn).has_table("lots"):
        return "absent"
    done = conn.execute(text("SELECT 1 FROM erp_schema_migrations WHERE revision = :r"), {"r": CONTRACT_1_1})
    return "contracted" if done.scalar() else "expanded"

def has_returns(s: Session) -> bool:
    """Whether the returns and credit notes of migration 0011 exist (an expand step of release 1.1)."""
    return inspect(s.connection()).has_table("credit_notes")


def _credited(s: Session, column=CreditNote.applied):
    """(invoice_id, credited) of what credit and debit notes settled of each invoice, in cents; None before 0011."""
    if not has_returns(s):
        return None
    return (select(CreditNote.invoice_id, func.sum(cents(column)).label("credited"))
            .group_by(CreditNote.invoice_id).subquery())


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


def on_hand_against_moves():
    """SELECT of every (product, warehouse) whose on-hand quantity (stock_levels) differs from its done
    moves in minus its done moves out: product_id, warehouse_id, moved and on_hand (thousandths), levels
    (0 when there is no stock_levels row), sku and code (None when the product or warehouse is missing),
    ordered by product and warehouse. The check below reports these rows; the stock-cache repair
    (services/stockcache.py) rewrites them."""
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
    return (select(pairs, Product.sku, Warehouse.code)
            .outerjoin(Product, Product.id == pairs.c.product_id)
            .outerjoin(Warehouse, Warehouse.id == pairs.c.warehouse_id)
            .order_by(pairs.c.product_id, pairs.c.warehouse_id))


def stock_ref(row) -> str:
    """SKU@WAREHOUSE of a row of on_hand_against_moves (product#N / warehouse#N when missing)."""
    return f"{row.sku or f'product#{row.product_id}'}@{row.code or f'warehouse#{row.warehouse_id}'}"


def on_hand_matches_moves(s: Session) -> list[Violation]:
    """For every product in every warehouse, the on-hand quantity (stock_levels) equals the done
    moves into the warehouse minus the done moves out of it. A missing stock_levels row counts as
    zero on hand; a row with no moves must be zero."""

    def describe(r):
        ref = stock_ref(r)
        level = "no stock_levels row" if not r.levels else f"on hand {from_thousandths(r.on_hand)}"
        return (f"{ref} (product {r.product_id}, warehouse {r.warehouse_id}): {level}, "
                f"but done moves add up to {from_thousandths(r.moved)}", ref)

    return _violations(s, "on_hand_matches_moves", on_hand_against_moves(), describe)


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
    credited = _credited(s)
    settled = amount_paid + (func.coalesce(credited.c.credited, 0) if credited is not None else 0)
    state_ok = or_(and_(Invoice.state == "open", settled == 0),
                   and_(Invoice.state == "paid", settled == gross),
                   and_(Invoice.state == "partial", settled > 0, settled < gross))
    stmt = (select(Invoice.number, Invoice.kind, Invoice.state, net.label("net"), tax.label("tax"),
                   gross.label("gross"), amount_paid.label("amount_paid"), payments.label("payments"),
                   settled.label("settled"))
            .outerjoin(paid, paid.c.invoice_id == Invoice.id))
    if credited is not None:
        stmt = stmt.outerjoin(credited, credited.c.invoice_id == Invoice.id)
    stmt = stmt.where(or_(gross != net + tax, amount_paid != payments, ~state_ok)).order_by(Invoice.id)

    def describe(r):
        net, tax, gross = from_cents(r.net), from_cents(r.tax), from_cents(r.gross)
        amount_paid, payments = from_cents(r.amount_paid), from_cents(r.payments)
        problems = []
        if gross != net + tax:
            problems.append(f"gross_total {gross} != net + tax {net + tax}")
        if amount_paid != payments:
            problems.append(f"amount_paid {amount_paid} != sum of payments {payments}")
        credited = from_cents(r.settled) - amount_paid
        if not _state_fits(r.state, amount_paid + credited, gross):
            settled = f"amount_paid {amount_paid}" + (f" + credited {credited}" if credited else "")
            problems.append(f"state {r.state!r} does not fit {settled} of gross {gross}")
        what = "invoice" if r.kind == "customer" else "bill"
        return f"{what} {r.number}: " + "; ".join(problems), r.number

    return _violations(s, "document_totals_match_lines", stmt, describe)


def _state_fits(state: str, amount_paid: Decimal, gross: Decimal) -> bool:
    """The Python twin of `state_ok` above (amount_paid: what payments and notes settled), to say which
    rule an invoice row broke."""
    return ((state == "open" and amount_paid == 0) or (state == "paid" and amount_paid == gross)
            or (state == "partial" and 0 < amount_paid < gross))


def no_orphans(s: Session) -> list[Violation]:
    """Every foreign key of every table points at an existing row: no order line without its
    order, journal line without its entry, payment without its invoice, stock level without its
    product or warehouse, and so on. Checked with LEFT JOINs, whatever the engine enforces."""
    found = []
    absent = release_1_1_schema(s) == "absent"
    present = set(inspect(s.connection()).get_table_names())  # an earlier schema lacks later tables (MFA, ...)
    for table in Base.metadata.sorted_tables:
        if (absent and table.name == "lots") or table.name not in present:
            continue
        for fk in sorted(table.foreign_key_constraints, key=lambda fk: fk.column_keys):
            if fk.referred_table.name not in present:
                continue
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


# ---- currencies (release 1.1) --------------------------------------------------------------------

def _candidates_differ(company, doc, rate):
    """SQL: company is not doc x rate to within 0.45 of a cent. A cheap filter, exact enough on every
    engine (SQLite multiplies in floats); each candidate is then judged exactly in Python."""
    return func.abs(company * 100 - doc * rate * 100) > 0.45


def currency_amounts_convert(s: Session) -> list[Violation]:
    """Each order line's company amounts (unit price, net, tax) are its document amounts converted at
    its order's rate: round_money(doc x rate)."""
    if release_1_1_schema(s) == "absent":
        return []
    check, found = "currency_amounts_convert", []
    for what, order, line in (("sales order", SalesOrder, SalesOrderLine),
                              ("purchase order", PurchaseOrder, PurchaseOrderLine)):
        pairs = [("unit_price", line.unit_price, line.unit_price_currency),
                 ("net_amount", line.net_amount, line.net_amount_currency),
                 ("tax_amount", line.tax_amount, line.tax_amount_currency)]
        stmt = (select(order.number, order.currency, order.exchange_rate.label("rate"), line.id,
                       *(c.label(n) for n, c, _ in pairs), *(d.label(f"{n}_currency") for n, _, d in pairs))
                .join(order, order.id == line.order_id)
                .where(or_(*(_candidates_differ(c, d, order.exchange_rate) for _, c, d in pairs)))
                .order_by(line.id))
        for r in s.execute(stmt):
            m = r._mapping
            wrong = [f"{n} {m[n]} != {m[f'{n}_currency']} {r.currency} x {r.rate} = {to_company(m[f'{n}_currency'], r.rate)}"
                     for n, _, _ in pairs if to_company(m[f"{n}_currency"], r.rate) != m[n]]
            if wrong:
                found.append(Violation(check, f"{what} {r.number} line {r.id}: " + "; ".join(wrong), r.number))
                if len(found) >= MAX_REPORTED:
                    found.append(Violation(check, f"more than {MAX_REPORTED} violations of this kind; "
                                                  f"only the first {MAX_REPORTED} are listed", "truncated"))
                    return found
    return found


def currency_totals_match_lines(s: Session) -> list[Violation]:
    """Orders: totals in document currency equal the sums of their lines' document amounts, gross =
    net + tax. Invoices and bills: the currency, rate and document totals of their order; payments in
    the invoice's currency add up to its gross when it is paid, and never exceed it."""
    if release_1_1_schema(s) == "absent":
        return []
    check, found = "currency_totals_match_lines", []
    for what, order, line in (("sales order", SalesOrder, SalesOrderLine),
                              ("purchase order", PurchaseOrder, PurchaseOrderLine)):
        sums = (select(line.order_id, func.sum(cents(line.net_amount_currency)).label("net"),
                       func.sum(cents(line.tax_amount_currency)).label("tax"))
                .group_by(line.order_id).subquery())
        net, tax, gross = (cents(order.net_total_currency), cents(order.tax_total_currency),
                           cents(order.gross_total_currency))
        stmt = (select(order.number, order.currency, net.label("net"), tax.label("tax"), gross.label("gross"),
                       func.coalesce(sums.c.net, 0).label("line_net"), func.coalesce(sums.c.tax, 0).label("line_tax"))
                .outerjoin(sums, sums.c.order_id == order.id)
                .where(or_(net != func.coalesce(sums.c.net, 0), tax != func.coalesce(sums.c.tax, 0), gross != net + tax))
                .order_by(order.id))
        found += _violations(s, check, stmt, lambda r, what=what: (
            f"{what} {r.number}: {r.currency} totals net {from_cents(r.net)}, tax {from_cents(r.tax)}, gross "
            f"{from_cents(r.gross)}; its lines add up to net {from_cents(r.line_net)}, tax {from_cents(r.line_tax)}",
            r.number))
    for kind, order, link in (("customer", SalesOrder, Invoice.sales_order_id),
                              ("supplier", PurchaseOrder, Invoice.purchase_order_id)):
        stmt = (select(Invoice.number, Invoice.currency, order.number.label("order"))
                .join(order, order.id == link)
                .where(or_(Invoice.currency != order.currency, Invoice.exchange_rate != order.exchange_rate,
                           cents(Invoice.net_total_currency) != cents(order.net_total_currency),
                           cents(Invoice.tax_total_currency) != cents(order.tax_total_currency),
                           cents(Invoice.gross_total_currency) != cents(order.gross_total_currency)))
                .order_by(Invoice.id))
        found += _violations(s, check, stmt, lambda r: (
            f"invoice {r.number}: its currency, rate or {r.currency} totals differ from its order {r.order}'s",
            r.number))
    paid = (select(Payment.invoice_id, func.sum(cents(Payment.amount_currency)).label("paid"))
            .group_by(Payment.invoice_id).subquery())
    credited = _credited(s, CreditNote.applied_currency)
    doc_paid, gross = func.coalesce(paid.c.paid, 0), cents(Invoice.gross_total_currency)
    if credited is not None:
        doc_paid = doc_paid + func.coalesce(credited.c.credited, 0)
    stmt = (select(Invoice.number, Invoice.currency, Invoice.state, gross.label("gross"), doc_paid.label("paid"))
            .outerjoin(paid, paid.c.invoice_id == Invoice.id))
    if credited is not None:
        stmt = stmt.outerjoin(credited, credited.c.invoice_id == Invoice.id)
    stmt = stmt.where(or_(doc_paid > gross, and_(Invoice.state == "paid", doc_paid != gross))).order_by(Invoice.id)
    found += _violations(s, check, stmt, lambda r: (
        f"invoice {r.number} ({r.state}): payments and notes add up to {from_cents(r.paid)} {r.currency} of its "
        f"{from_cents(r.gross)} {r.currency}", r.number))
    return found


def company_currency_documents_agree(s: Session) -> list[Violation]:
    """A document in the company currency has rate 1 and the same amounts in both columns (orders, their
    lines, invoices, payments); a journal line in the company currency has amount_currency = debit -
    credit, and every journal line's amount_currency has the sign of its side."""
    if release_1_1_schema(s) == "absent":
        return []
    check, found, company = "company_currency_documents_agree", [], COMPANY_CURRENCY
    for what, model, pairs in (
            ("sales order", SalesOrder, ("net_total", "tax_total", "gross_total")),
            ("purchase order", PurchaseOrder, ("net_total", "tax_total", "gross_total")),
            ("invoice", Invoice, ("net_total", "tax_total", "gross_total")),
            ("payment", Payment, ("amount",))):
        differ = [cents(getattr(model, c)) != cents(getattr(model, f"{c}_currency")) for c in pairs]
        stmt = (select(model.number).where(model.currency == company, or_(model.exchange_rate != 1, *differ))
                .order_by(model.id))
        found += _violations(s, check, stmt, lambda r, what=what: (
            f"{what} {r.number} is in {company} but its rate is not 1 or its amounts differ between the "
            "company and document columns", r.number))
    for what, order, line in (("sales order", SalesOrder, SalesOrderLine),
                              ("purchase order", PurchaseOrder, PurchaseOrderLine)):
        differ = [cents(getattr(line, c)) != cents(getattr(line, f"{c}_currency"))
                  for c in ("unit_price", "net_amount", "tax_amount")]
        stmt = (select(order.number, line.id).join(order, order.id == line.order_id)
                .where(order.currency == company, or_(*differ)).order_by(line.id))
        found += _violations(s, check, stmt, lambda r, what=what: (
            f"{what} {r.number} line {r.id} is in {company} but its amounts differ between the company and "
            "document columns", r.number))
    amount = cents(JournalLine.amount_currency)
    stmt = (select(JournalEntry.number, JournalLine.id, JournalLine.currency)
            .join(JournalEntry, JournalEntry.id == JournalLine.entry_id)
            .where(or_(and_(JournalLine.currency == company,
                            amount != cents(JournalLine.debit) - cents(JournalLine.credit)),
                       and_(JournalLine.debit > 0, amount < 0), and_(JournalLine.credit > 0, amount > 0)))
            .order_by(JournalLine.id))
    found += _violations(s, check, stmt, lambda r: (
        f"journal entry {r.number} line {r.id}: amount_currency ({r.currency}) does not fit its debit or credit",
        r.number))
    return found


# ---- lots (release 1.1) -------------------------------------------------------------------------

def lots_consistent(s: Session) -> list[Violation]:
    """No lot holds a negative quantity in any warehouse (its moves in minus its moves out), every move's
    lot is of the move's product, and once the schema is contracted every move carries a lot."""
    schema = release_1_1_schema(s)
    if schema == "absent":
        return []
    check = "lots_consistent"
    qty = thousandths(StockMove.quantity)
    parts = union_all(
        select(StockMove.lot_id, StockMove.to_warehouse_id.label("warehouse_id"), qty.label("held"))
        .where(StockMove.lot_id.is_not(None), StockMove.to_warehouse_id.is_not(None)),
        select(StockMove.lot_id, StockMove.from_warehouse_id, -qty)
        .where(StockMove.lot_id.is_not(None), StockMove.from_warehouse_id.is_not(None)),
    ).subquery()
    held = func.sum(parts.c.held)
    negative = (select(parts.c.lot_id, parts.c.warehouse_id, held.label("held"), Lot.number)
                .outerjoin(Lot, Lot.id == parts.c.lot_id)
                .group_by(parts.c.lot_id, parts.c.warehouse_id, Lot.number)
                .having(held < 0).order_by(parts.c.lot_id, parts.c.warehouse_id))
    found = _violations(s, check, negative, lambda r: (
        f"lot {r.number or r.lot_id} holds {from_thousandths(r.held)} in warehouse {r.warehouse_id}: "
        "more went out of it than came in", f"lot:{r.number or r.lot_id}"))
    wrong = (select(StockMove.id, StockMove.product_id, Lot.number, Lot.product_id.label("lot_product"))
             .join(Lot, Lot.id == StockMove.lot_id).where(Lot.product_id != StockMove.product_id)
             .order_by(StockMove.id))
    found += _violations(s, check, wrong, lambda r: (
        f"stock move {r.id} of product {r.product_id} is in lot {r.number} of product {r.lot_product}",
        f"stock_moves:{r.id}"))
    if schema == "contracted":
        bare = select(StockMove.id).where(StockMove.lot_id.is_(None)).order_by(StockMove.id)
        found += _violations(s, check, bare, lambda r: (f"stock move {r.id} has no lot", f"stock_moves:{r.id}"))
    return found


def returns_consistent(s: Session) -> list[Violation]:
    """Posted returns take back no more of an order line than it holds, and each credit (debit) note's
    totals are the sums of its return's lines."""
    if not has_returns(s):
        return []
    check, found = "returns_consistent", []
    for order_line, link in ((SalesOrderLine, Return.sales_order_id), (PurchaseOrderLine, Return.purchase_order_id)):
        taken = (select(ReturnLine.order_line_id, func.sum(thousandths(ReturnLine.quantity)).label("taken"))
                 .join(Return, Return.id == ReturnLine.return_id).where(Return.state == "posted", link.is_not(None))
                 .group_by(ReturnLine.order_line_id).subquery())
        stmt = (select(order_line.id, thousandths(order_line.quantity).label("qty"), taken.c.taken)
                .join(taken, taken.c.order_line_id == order_line.id)
                .where(taken.c.taken > thousandths(order_line.quantity)).order_by(order_line.id))
        found += _violations(s, check, stmt, lambda r, t=order_line.__tablename__: (
            f"{t} {r.id}: posted returns take back {from_thousandths(r.taken)} of {from_thousandths(r.qty)}",
            f"{t}:{r.id}"))
    sums = (select(ReturnLine.return_id, func.sum(cents(ReturnLine.net_amount)).label("net"),
                   func.sum(cents(ReturnLine.tax_amount)).label("tax")).group_by(ReturnLine.return_id).subquery())
    stmt = (select(CreditNote.number, cents(CreditNote.net_total).label("net"), cents(CreditNote.tax_total).label("tax"),
                   sums.c.net.label("line_net"), sums.c.tax.label("line_tax"))
            .join(sums, sums.c.return_id == CreditNote.return_id)
            .where(or_(cents(CreditNote.net_total) != sums.c.net, cents(CreditNote.tax_total) != sums.c.tax))
            .order_by(CreditNote.id))
    return found + _violations(s, check, stmt, lambda r: (
        f"note {r.number}: net {from_cents(r.net)}, tax {from_cents(r.tax)}; its return's lines add up to net "
        f"{from_cents(r.line_net)}, tax {from_cents(r.line_tax)}", r.number))


# ---- the ledger against its subledgers ----------------------------------------------------------

def stock_value_kept(s: Session) -> bool:
    """Whether each product's stock value is kept: added by 0005, it is current once the schema is
    contracted (0004 values again what release 1.0 wrote during the upgrade)."""
    return release_1_1_schema(s) == "contracted"


def _subledgers(with_stock: bool, with_notes: bool) -> dict:
    """SQL of what each control account must hold (debit - credit, in cents), by account code:
    receivable = what is open on invoices less the customers' credit notes (applied to an invoice or
    left as the customer's credit); payable likewise with bills and debit notes."""
    customer, supplier = Invoice.kind == "customer", Invoice.kind == "supplier"
    outstanding = cents(Invoice.gross_total) - cents(Invoice.amount_paid)

    def owed(kind_is, note_kind):
        invoices = select(func.coalesce(func.sum(outstanding), 0)).where(kind_is).scalar_subquery()
        if not with_notes:
            return invoices
        notes = (select(func.coalesce(func.sum(cents(CreditNote.gross_total)), 0))
                 .where(CreditNote.kind == note_kind).scalar_subquery())
        return invoices - notes

    sums = {
        journal.RECEIVABLE: select(owed(customer, "credit")),
        journal.PAYABLE: select(-owed(supplier, "debit")),
        journal.GOODS_RECEIVED_NOT_BILLED: select(-func.sum(cents(PurchaseOrder.net_total)))
        .where(PurchaseOrder.state == "received"),
    }
    if with_stock:
        sums[journal.INVENTORY] = select(func.sum(cents(Product.stock_value)))
    return sums


def ledger_matches_subledgers(s: Session) -> list[Violation]:
    """Each control account of the general ledger equals its subledger, to the cent: Inventory (1405) =
    the stock valuation (every product's stock value); Receivable (1122) = what is outstanding on customer
    invoices; Payable (2202) = what is outstanding on supplier bills; Goods received not billed (2241) =
    the net of purchase orders received and not yet billed. And a product with nothing on hand is worth
    nothing (the moving average's rounding residue leaves with the last unit)."""
    check, with_stock = "ledger_matches_subledgers", stock_value_kept(s)
    subledgers = _subledgers(with_stock, has_returns(s))
    balance = func.sum(cents(JournalLine.debit) - cents(JournalLine.credit))
    ledger = dict(s.execute(select(JournalLine.account_code, balance).where(JournalLine.account_code.in_(subledgers))
                            .group_by(JournalLine.account_code)).all())
    names = list(subledgers)
    expected = s.execute(select(*(q.scalar_subquery().label(f"a{i}") for i, q in enumerate(subledgers.values())))
                         ).one()
    found = []
    for i, code in enumerate(names):
        booked, owed = from_cents(ledger.get(code)), from_cents(expected[i])
        if booked != owed:
            found.append(Violation(check, f"account {code} holds {booked} but {journal.CONTROL_ACCOUNTS[code]} "
                                          f"add up to {owed} (difference {booked - owed})", f"account:{code}"))
    if not with_stock:
        return found
    held = (select(StockLevel.product_id, func.sum(thousandths(StockLevel.quantity)).label("held"))
            .group_by(StockLevel.product_id).subquery())
    worth = cents(Product.stock_value)
    stmt = (select(Product.sku, worth.label("worth"), func.coalesce(held.c.held, 0).label("held"))
            .outerjoin(held, held.c.product_id == Product.id)
            .where(or_(worth < 0, and_(worth != 0, func.coalesce(held.c.held, 0) == 0)))
            .order_by(Product.id))
    return found + _violations(s, check, stmt, lambda r: (
        f"product {r.sku} is worth {from_cents(r.worth)} with {from_thousandths(r.held)} on hand", r.sku))


CHECKS = (journal_entries_balance, trial_balance_zero, on_hand_matches_moves, document_totals_match_lines,
          no_orphans, currency_amounts_convert, currency_totals_match_lines, company_currency_documents_agree,
          lots_consistent, returns_consistent, ledger_matches_subledgers)


def check_all(s: Session) -> list[Violation]:
    """Run every check; an empty list means the database is consistent."""
    return [violation for check in CHECKS for violation in check(s)]
