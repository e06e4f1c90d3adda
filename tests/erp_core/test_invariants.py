"""erp_core.invariants: a consistent database passes every check, and each kind of damage a restore
or a bad upgrade can do is reported with the document or row it concerns. Runs on SQLite and, when
it is reachable, on PostgreSQL."""

from __future__ import annotations

import datetime as dt
import os
import uuid
from decimal import Decimal

import pytest
from sqlalchemy import create_engine, event, text
from sqlalchemy.engine import make_url
from sqlalchemy.exc import OperationalError

from erp_core import crypto, invariants
from erp_core import db as erp_db
from erp_core.domain import journal
from erp_core.domain.pricing import LineInput, line_amounts
from erp_core.invariants import Violation
from erp_core.models import (Base, Invoice, JournalEntry, JournalLine, Lot, Partner, Payment, Product, PurchaseOrder,
                             PurchaseOrderLine, SalesOrder, SalesOrderLine, StockLevel, StockMove, Warehouse)

PG_URL = os.environ.get("ERPCTL_PG_URL", "postgresql://postgres@127.0.0.1:5432/postgres")
REFERENCE_TABLES = {"accounts", "roles", "tax_rates", "erp_schema_migrations"}
DAY = dt.date(2024, 3, 1)


# ---- databases --------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def pg_url():
    """A uniquely named, migrated PostgreSQL database for this module, dropped afterwards."""
    admin = create_engine(erp_db.normalise_url(PG_URL), isolation_level="AUTOCOMMIT",
                          connect_args={"connect_timeout": 5})
    name = f"erp_test_invariants_{uuid.uuid4().hex[:12]}"
    try:
        with admin.connect() as c:
            c.exec_driver_sql(f'CREATE DATABASE "{name}"')
    except OperationalError as exc:
        admin.dispose()
        reason = f"PostgreSQL is not reachable at {PG_URL} (set ERPCTL_PG_URL): {exc.orig}"
        if os.environ.get("ERPCTL_REQUIRE_INTEGRATION") == "1":
            pytest.fail(reason)
        pytest.skip(reason)
    url = make_url(erp_db.normalise_url(PG_URL)).set(database=name).render_as_string(hide_password=False)
    try:
        erp_db.migrate(url)
        yield url
    finally:
        with admin.connect() as c:
            c.exec_driver_sql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        admin.dispose()


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def database(request, tmp_path):
    """A migrated database with only the reference data: a fresh SQLite file per test, or the
    module's PostgreSQL database, emptied after each test."""
    crypto.configure("test-key")
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path / 'erp.sqlite3'}"
        erp_db.migrate(url)
    else:
        url = request.getfixturevalue("pg_url")
    database = erp_db.Database(url)
    yield database
    if request.param == "postgres":
        tables = ", ".join(t.name for t in Base.metadata.sorted_tables if t.name not in REFERENCE_TABLES)
        with database.engine.begin() as c:
            c.exec_driver_sql(f"TRUNCATE {tables} RESTART IDENTITY CASCADE")
    database.dispose()


def run_sql(database, sql: str) -> None:
    with database.session() as s:
        s.execute(text(sql))


def run_sql_without_foreign_keys(database, sql: str) -> None:
    """Run one statement with foreign keys unenforced, as in a copy restored with them off."""
    if erp_db.is_sqlite(database.engine):
        with database.engine.connect() as conn:
            sqlite = conn.connection.driver_connection  # autocommit: PRAGMA works outside a transaction
            sqlite.execute("PRAGMA foreign_keys=OFF")
            try:
                sqlite.execute(sql)
            finally:
                sqlite.execute("PRAGMA foreign_keys=ON")
        return
    with database.session() as s:
        s.execute(text("SET LOCAL session_replication_role = replica"))
        s.execute(text(sql))


def check(database, fn=invariants.check_all) -> list[Violation]:
    with database.session(write=False) as s:
        return fn(s)


# ---- a small consistent business ----------------------------------------------------------------

def post(s, number: str, lines: list[journal.Line]) -> JournalEntry:
    entry = JournalEntry(number=number, date=DAY, memo=number, source="test")
    entry.lines = [JournalLine(account_code=l.account, partner_id=l.partner_id, debit=l.debit, credit=l.credit)
                   for l in lines]
    s.add(entry)
    s.flush()
    return entry


def with_lines(order, *lines: tuple[Product, str, str]):
    """Give an order priced lines (product, quantity, unit price at 13 % VAT) and matching totals."""
    line_class = SalesOrderLine if isinstance(order, SalesOrder) else PurchaseOrderLine
    for product, qty, price in lines:
        amounts = line_amounts(LineInput(Decimal(qty), Decimal(price), tax_rate_percent=Decimal("13")))
        order.lines.append(line_class(product_id=product.id, quantity=Decimal(qty), unit_price=Decimal(price),
                                      tax_rate_percent=Decimal("13"), net_amount=amounts.net,
                                      tax_amount=amounts.tax))
    order.net_total = sum(l.net_amount for l in order.lines)
    order.tax_total = sum(l.tax_amount for l in order.lines)
    order.gross_total = order.net_total + order.tax_total
    return order


def seed(database) -> None:
    """Stock received, transferred and delivered; an order, a purchase order, an invoice paid in
    part and an open bill, each with its journal entries. Every invariant holds."""
    with database.session() as s:
        customer = Partner(code="C1", name="Customer", is_customer=True)
        supplier = Partner(code="S1", name="Supplier", is_supplier=True)
        main, east = Warehouse(code="MAIN", name="Main"), Warehouse(code="EAST", name="East")
        a = Product(sku="A-1", name="Widget", sale_price=Decimal("10.00"), tax_code="VAT13",
                    avg_cost=Decimal("2.5"), stock_value=Decimal("21.25"))  # 8.5 on hand
        b = Product(sku="B-1", name="Gadget", sale_price=Decimal("3.33"), tax_code="VAT13",
                    avg_cost=Decimal("2.5"), stock_value=Decimal("12.50"))  # 5 on hand
        s.add_all([customer, supplier, main, east, a, b])
        s.flush()
        lots = {p.id: Lot(product_id=p.id, number=f"LOT-{p.sku}") for p in (a, b)}
        s.add_all(lots.values())
        s.flush()
        for product, qty, src, dst, kind in [(a, "10", None, main, "receipt"), (b, "5", None, main, "receipt"),
                                             (a, "4", main, east, "transfer"), (a, "1.5", main, None, "delivery")]:
            s.add(StockMove(product_id=product.id, quantity=Decimal(qty), unit_cost=Decimal("2.5"), kind=kind,
                            from_warehouse_id=src and src.id, to_warehouse_id=dst and dst.id,
                            lot_id=lots[product.id].id))
        s.add_all([StockLevel(product_id=a.id, warehouse_id=main.id, quantity=Decimal("4.5")),
                   StockLevel(product_id=a.id, warehouse_id=east.id, quantity=Decimal("4")),
                   StockLevel(product_id=b.id, warehouse_id=main.id, quantity=Decimal("5"))])

        order = with_lines(SalesOrder(number="SO-1", partner_id=customer.id, warehouse_id=main.id, state="invoiced"),
                           (a, "1.5", "10.00"), (b, "3", "3.33"))
        purchase = with_lines(PurchaseOrder(number="PO-1", partner_id=supplier.id, warehouse_id=main.id,
                                            state="billed"), (a, "10", "2.50"), (b, "5", "2.50"))
        s.add_all([order, purchase])
        s.flush()
        invoiced = post(s, "JE-1", journal.customer_invoice(customer.id, order.net_total, order.tax_total))
        paid = post(s, "JE-2", journal.customer_payment(customer.id, Decimal("10.00")))
        billed = post(s, "JE-3", journal.supplier_bill(supplier.id, purchase.net_total, purchase.tax_total))
        post(s, "JE-4", journal.goods_received(purchase.net_total))
        post(s, "JE-5", journal.goods_delivered(Decimal("3.75")))  # 1.5 of A at 2.50
        invoice = Invoice(number="INV-1", kind="customer", partner_id=customer.id, sales_order_id=order.id,
                          issue_date=DAY, due_date=DAY, net_total=order.net_total, tax_total=order.tax_total,
                          gross_total=order.gross_total, amount_paid=Decimal("10.00"), state="partial",
                          journal_entry_id=invoiced.id)
        bill = Invoice(number="BILL-1", kind="supplier", partner_id=supplier.id, purchase_order_id=purchase.id,
                       issue_date=DAY, due_date=DAY, net_total=purchase.net_total, tax_total=purchase.tax_total,
                       gross_total=purchase.gross_total, amount_paid=Decimal("0"), state="open",
                       journal_entry_id=billed.id)
        s.add_all([invoice, bill])
        s.flush()
        s.add(Payment(number="PAY-1", invoice_id=invoice.id, amount=Decimal("10.00"), paid_on=DAY,
                      journal_entry_id=paid.id))


# Ledger totals of seed(): JE-1 (SO-1: net 24.99, tax 3.25), JE-2 (10.00), JE-3 (PO-1: net 37.50, tax 4.88),
# JE-4 (PO-1 received: 37.50), JE-5 (cost of goods: 3.75).
SEEDED_DEBITS = Decimal("28.24") + Decimal("10.00") + Decimal("42.38") + Decimal("37.50") + Decimal("3.75")


# ---- the checks ---------------------------------------------------------------------------------

def test_a_consistent_database_passes_every_check(database):
    seed(database)
    assert check(database) == []


def test_an_empty_database_passes_every_check(database):
    assert check(database) == []


def test_sums_are_exact_where_floats_are_not(database):
    """0.10 + 0.20 is not 0.30 in floating point, which is what SQLite's SUM adds in."""
    with database.session() as s:
        post(s, "JE-1", [journal.Line("1002", debit=Decimal("0.10")), journal.Line("6711", debit=Decimal("0.20")),
                         journal.Line("6001", credit=Decimal("0.30"))])

    assert check(database) == []


def test_an_unbalanced_entry_is_reported_with_its_number(database):
    seed(database)
    with database.session() as s:
        entry_id = s.execute(JournalEntry.__table__.insert().values(
            number="JE-BAD", date=DAY, memo="typed in by hand", source="manual", created_by="mallory",
            created_at=dt.datetime(2024, 3, 1, tzinfo=dt.timezone.utc))).inserted_primary_key[0]
    run_sql(database, f"INSERT INTO journal_lines (entry_id, account_code, debit, credit, currency, amount_currency) "
                      f"VALUES ({entry_id}, '1002', 100, 0, 'CNY', 100), ({entry_id}, '6001', 0, 90, 'CNY', -90)")

    assert check(database, invariants.journal_entries_balance) == [
        Violation("journal_entries_balance", "journal entry JE-BAD: debits 100.00 != credits 90.00", "JE-BAD")]
    assert check(database, invariants.trial_balance_zero) == [
        Violation("trial_balance_zero",
                  f"total debits {SEEDED_DEBITS + 100} != total credits {SEEDED_DEBITS + 90}", "journal_lines")]
    assert {v.check for v in check(database)} == {"journal_entries_balance", "trial_balance_zero"}


def test_an_entry_without_lines_is_reported(database):
    seed(database)
    with database.session() as s:
        s.add(JournalEntry(number="JE-EMPTY", date=DAY, memo="", source="manual"))

    assert check(database) == [Violation("journal_entries_balance", "journal entry JE-EMPTY has no lines",
                                         "JE-EMPTY")]


def test_a_tampered_stock_level_is_reported(database):
    seed(database)
    run_sql(database, "UPDATE stock_levels SET quantity = 7 WHERE product_id = 1 AND warehouse_id = 1")

    assert check(database) == [Violation(
        "on_hand_matches_moves",
        "A-1@MAIN (product 1, warehouse 1): on hand 7.000, but done moves add up to 4.500", "A-1@MAIN")]


def test_a_missing_stock_level_row_and_a_level_without_moves_are_reported(database):
    seed(database)
    run_sql(database, "DELETE FROM stock_levels WHERE product_id = 2 AND warehouse_id = 1")
    run_sql(database, "INSERT INTO stock_levels (product_id, warehouse_id, quantity) VALUES (2, 2, 1.25)")

    assert check(database) == [
        Violation("on_hand_matches_moves",
                  "B-1@MAIN (product 2, warehouse 1): no stock_levels row, but done moves add up to 5.000",
                  "B-1@MAIN"),
        Violation("on_hand_matches_moves",
                  "B-1@EAST (product 2, warehouse 2): on hand 1.250, but done moves add up to 0.000",
                  "B-1@EAST"),
    ]


def test_order_totals_that_differ_from_their_lines_are_reported(database):
    seed(database)
    run_sql(database, "UPDATE sales_orders SET net_total = net_total + 1 WHERE number = 'SO-1'")
    run_sql(database, "UPDATE purchase_order_lines SET tax_amount = tax_amount - 0.01 WHERE id = 1")

    # the company columns no longer agree with the document-currency ones either
    assert {v.check for v in check(database)} == {"document_totals_match_lines", "currency_amounts_convert",
                                                  "company_currency_documents_agree"}
    assert check(database, invariants.document_totals_match_lines) == [
        Violation("document_totals_match_lines",
                  "sales order SO-1: net_total 25.99 != sum of line net amounts 24.99; "
                  "gross_total 28.24 != net + tax 29.24", "SO-1"),
        Violation("document_totals_match_lines",
                  "purchase order PO-1: tax_total 4.88 != sum of line tax amounts 4.87", "PO-1"),
    ]


def test_invoices_whose_payments_or_state_do_not_add_up_are_reported(database):
    seed(database)
    run_sql(database, "UPDATE invoices SET amount_paid = gross_total, state = 'paid' WHERE number = 'INV-1'")
    run_sql(database, "UPDATE invoices SET state = 'partial', gross_total = 50 WHERE number = 'BILL-1'")

    assert {v.check for v in check(database)} == {"document_totals_match_lines", "currency_totals_match_lines",
                                                  "company_currency_documents_agree", "ledger_matches_subledgers"}
    assert check(database, invariants.document_totals_match_lines) == [
        Violation("document_totals_match_lines",
                  "invoice INV-1: amount_paid 28.24 != sum of payments 10.00", "INV-1"),
        Violation("document_totals_match_lines",
                  "bill BILL-1: gross_total 50.00 != net + tax 42.38; "
                  "state 'partial' does not fit amount_paid 0.00 of gross 50.00", "BILL-1"),
    ]


@pytest.mark.parametrize("sql, expected", [
    ("UPDATE products SET stock_value = stock_value + 50 WHERE sku = 'A-1'",
     [Violation("ledger_matches_subledgers", "account 1405 holds 33.75 but the products' stock values add up to 83.75 "
                "(difference -50.00)", "account:1405")]),
    ("UPDATE invoices SET amount_paid = 0, state = 'open' WHERE number = 'INV-1'",
     [Violation("ledger_matches_subledgers", "account 1122 holds 18.24 but the open customer invoices less credit notes add up to "
                "28.24 (difference -10.00)", "account:1122")]),
    ("UPDATE invoices SET amount_paid = 2.38, state = 'partial' WHERE number = 'BILL-1'",
     [Violation("ledger_matches_subledgers", "account 2202 holds -42.38 but the open supplier bills less debit notes add up to "
                "-40.00 (difference -2.38)", "account:2202")]),
    ("UPDATE purchase_orders SET state = 'received' WHERE number = 'PO-1'",
     [Violation("ledger_matches_subledgers", "account 2241 holds 0.00 but the receipts not yet billed add up to "
                "-37.50 (difference 37.50)", "account:2241")]),
    ("UPDATE stock_levels SET quantity = 0 WHERE product_id = 2",  # B-1 keeps its 12.50 with nothing on hand
     [Violation("ledger_matches_subledgers", "product B-1 is worth 12.50 with 0.000 on hand", "B-1")]),
])
def test_the_ledger_is_reconciled_with_each_subledger_to_the_cent(database, sql, expected):
    seed(database)
    assert check(database, invariants.ledger_matches_subledgers) == []
    run_sql(database, sql)

    assert check(database, invariants.ledger_matches_subledgers) == expected


@pytest.mark.parametrize("sql, expected", [
    ("INSERT INTO sales_order_lines (id, order_id, product_id, quantity, unit_price, discount_percent, "
     "tax_rate_percent, net_amount, tax_amount, unit_price_currency, net_amount_currency, tax_amount_currency) "
     "VALUES (900, 999, 1, 1, 10, 0, 13, 10, 1.3, 10, 10, 1.3)",
     Violation("no_orphans", "sales_order_lines 900: order_id=999 has no sales_orders row", "sales_order_lines:900")),
    ("INSERT INTO journal_lines (id, entry_id, account_code, debit, credit, currency, amount_currency) "
     "VALUES (900, 999, '1002', 5, 0, 'CNY', 5)",
     Violation("no_orphans", "journal_lines 900: entry_id=999 has no journal_entries row", "journal_lines:900")),
    ("INSERT INTO payments (id, number, invoice_id, amount, paid_on, method, journal_entry_id, currency, "
     "exchange_rate, amount_currency) VALUES (900, 'PAY-X', 999, 5, '2024-03-01', 'bank', 2, 'CNY', 1, 5)",
     Violation("no_orphans", "payments 900: invoice_id=999 has no invoices row", "payments:900")),
    ("INSERT INTO stock_levels (product_id, warehouse_id, quantity) VALUES (999, 1, 0)",
     Violation("no_orphans", "stock_levels 999/1: product_id=999 has no products row", "stock_levels:999/1")),
])
def test_rows_whose_parent_is_missing_are_reported(database, sql, expected):
    seed(database)
    run_sql_without_foreign_keys(database, sql)

    assert check(database, invariants.no_orphans) == [expected]


def test_a_long_list_is_cut_with_a_truncated_marker(database, monkeypatch):
    monkeypatch.setattr(invariants, "MAX_REPORTED", 2)
    with database.session() as s:
        for n in range(3):
            s.add(JournalEntry(number=f"JE-{n}", date=DAY, memo="", source="manual"))

    assert [v.ref for v in check(database)] == ["JE-0", "JE-1", "truncated"]


def test_the_checks_aggregate_in_sql_whatever_the_size(database):
    """The number of statements check_all runs does not grow with the data."""
    statements = []
    event.listen(database.engine, "before_cursor_execute", lambda *args: statements.append(args[2]))
    check(database)
    on_empty = len(statements)
    seed(database)
    statements.clear()

    assert check(database) == []
    assert len(statements) == on_empty


def test_a_violation_reads_as_a_dict():
    v = Violation("no_orphans", "payments 3: invoice_id=9 has no invoices row", "payments:3")
    assert v.as_dict() == {"check": "no_orphans", "detail": "payments 3: invoice_id=9 has no invoices row",
                           "ref": "payments:3"}
