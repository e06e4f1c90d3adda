"""erp_core.services.reports: exact figures from a known set of entries, invoices and stock."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal

import pytest

from erp_core import crypto
from erp_core import db as erp_db
from erp_core.domain import journal
from erp_core.errors import ValidationFailed
from erp_core.models import (Invoice, JournalEntry, JournalLine, Partner, Product, PurchaseOrder, ReorderRule,
                             SalesOrder, StockLevel, Warehouse)
from erp_core.services import reports


@pytest.fixture
def database(tmp_path):
    """A fresh migrated SQLite database (reference data only: roles, VAT rates, chart of accounts)."""
    crypto.configure("test-key")
    url = f"sqlite:///{tmp_path / 'erp.sqlite3'}"
    erp_db.migrate(url)
    database = erp_db.Database(url)
    yield database
    database.dispose()


def read(database, report, *args, **kwargs):
    with database.session(write=False) as s:
        return report(s, *args, **kwargs)


def D(value) -> Decimal:
    return Decimal(value)


def post(s, number: str, date: dt.date, lines: list[journal.Line]) -> JournalEntry:
    entry = JournalEntry(number=number, date=date, memo=number, source="test")
    entry.lines = [JournalLine(account_code=l.account, debit=l.debit, credit=l.credit) for l in lines]
    s.add(entry)
    s.flush()
    return entry


# ---- ledger reports -----------------------------------------------------------------------------

@pytest.fixture
def ledger(database):
    """Capital paid in, goods bought and billed in January; goods sold, delivered and partly paid for
    in February; a stock count loss in March."""
    with database.session() as s:
        post(s, "JE-1", dt.date(2024, 1, 5), [journal.Line(journal.CASH, debit=D("10000")),
                                              journal.Line(journal.EQUITY, credit=D("10000"))])
        post(s, "JE-2", dt.date(2024, 1, 10), journal.goods_received(D("600")))
        post(s, "JE-3", dt.date(2024, 1, 12), journal.supplier_bill(1, D("600"), D("78")))
        post(s, "JE-4", dt.date(2024, 2, 1), journal.customer_invoice(1, D("1000"), D("130")))
        post(s, "JE-5", dt.date(2024, 2, 1), journal.goods_delivered(D("400")))
        post(s, "JE-6", dt.date(2024, 2, 15), journal.customer_payment(1, D("500")))
        post(s, "JE-7", dt.date(2024, 3, 1), journal.stock_adjustment(D("-20")))
    return database


def test_trial_balance_lists_each_account_and_balances(ledger):
    report = read(ledger, reports.trial_balance)

    assert [(r["code"], r["debit"], r["credit"], r["balance"]) for r in report["rows"]] == [
        ("1002", D("10500.00"), D("0.00"), D("10500.00")),
        ("1122", D("1130.00"), D("500.00"), D("630.00")),
        ("1405", D("600.00"), D("420.00"), D("180.00")),
        ("2202", D("0.00"), D("678.00"), D("-678.00")),
        ("2221.01", D("78.00"), D("0.00"), D("78.00")),
        ("2221.02", D("0.00"), D("130.00"), D("-130.00")),
        ("2241", D("600.00"), D("600.00"), D("0.00")),
        ("4001", D("0.00"), D("10000.00"), D("-10000.00")),
        ("6001", D("0.00"), D("1000.00"), D("-1000.00")),
        ("6401", D("400.00"), D("0.00"), D("400.00")),
        ("6711", D("20.00"), D("0.00"), D("20.00")),
    ]
    assert report["rows"][0] == {"code": "1002", "name": "Bank", "type": "asset", "debit": D("10500.00"),
                                 "credit": D("0.00"), "balance": D("10500.00")}
    assert report["totals"] == {"debit": D("13328.00"), "credit": D("13328.00"), "balance": D("0.00")}
    assert report["as_of"] is None


def test_trial_balance_as_of_a_date_leaves_out_later_entries(ledger):
    report = read(ledger, reports.trial_balance, as_of=dt.date(2024, 1, 31))

    assert {r["code"]: r["balance"] for r in report["rows"]} == {
        "1002": D("10000.00"), "1405": D("600.00"), "2202": D("-678.00"), "2221.01": D("78.00"),
        "2241": D("0.00"), "4001": D("-10000.00")}
    assert report["totals"] == {"debit": D("11278.00"), "credit": D("11278.00"), "balance": D("0.00")}


def test_profit_and_loss_over_a_period(ledger):
    report = read(ledger, reports.profit_and_loss, date_from=dt.date(2024, 2, 1), date_to=dt.date(2024, 2, 29))

    assert report == {
        "date_from": dt.date(2024, 2, 1), "date_to": dt.date(2024, 2, 29),
        "income": [{"code": "6001", "name": "Sales revenue", "amount": D("1000.00")}],
        "expense": [{"code": "6401", "name": "Cost of goods sold", "amount": D("400.00")}],
        "total_income": D("1000.00"), "total_expense": D("400.00"), "net_profit": D("600.00"),
    }


def test_profit_and_loss_can_be_a_loss(ledger):
    march = read(ledger, reports.profit_and_loss, date_from=dt.date(2024, 3, 1))
    whole = read(ledger, reports.profit_and_loss)

    assert (march["total_income"], march["total_expense"], march["net_profit"]) == (D("0"), D("20.00"), D("-20.00"))
    assert [e["code"] for e in whole["expense"]] == ["6401", "6711"]
    assert whole["net_profit"] == D("580.00")


def test_balance_sheet_balances_with_the_profit_to_date_in_equity(ledger):
    report = read(ledger, reports.balance_sheet)

    assert [(a["code"], a["amount"]) for a in report["assets"]] == [
        ("1002", D("10500.00")), ("1122", D("630.00")), ("1405", D("180.00")), ("2221.01", D("78.00"))]
    assert [(a["code"], a["amount"]) for a in report["liabilities"]] == [
        ("2202", D("678.00")), ("2221.02", D("130.00")), ("2241", D("0.00"))]
    assert report["equity"] == [
        {"code": "4001", "name": "Owner's capital", "amount": D("10000.00")},
        {"code": None, "name": "Retained earnings (profit to date)", "amount": D("580.00")}]
    assert (report["total_assets"], report["total_liabilities"], report["total_equity"]) == (
        D("11388.00"), D("808.00"), D("10580.00"))
    assert report["balanced"] is True


def test_balance_sheet_as_of_a_date(ledger):
    report = read(ledger, reports.balance_sheet, as_of=dt.date(2024, 2, 1))

    assert report["equity"][-1]["amount"] == D("600.00")
    assert (report["total_assets"], report["total_liabilities"] + report["total_equity"]) == (
        D("11408.00"), D("11408.00"))
    assert report["balanced"] is True


def test_general_ledger_of_an_account_with_opening_running_and_closing_balances(ledger):
    report = read(ledger, reports.general_ledger, journal.RECEIVABLE, date_from=dt.date(2024, 2, 10))
    assert report["account"]["code"] == journal.RECEIVABLE
    assert report["opening"] == D("1130.00"), "the invoice of 1 February is before the range"
    assert [(r["number"], r["debit"], r["credit"], r["balance"]) for r in report["lines"]] == [
        ("JE-6", D("0.00"), D("500.00"), D("630.00"))]
    assert report["totals"] == {"debit": D("0.00"), "credit": D("500.00")} and report["closing"] == D("630.00")
    cash = read(ledger, reports.general_ledger, journal.CASH)
    assert [(r["number"], r["balance"]) for r in cash["lines"]] == [("JE-1", D("10000.00")), ("JE-6", D("10500.00"))]
    assert cash["opening"] == D("0") and not cash["truncated"]
    short = read(ledger, reports.general_ledger, journal.CASH, limit=1)
    assert short["truncated"] and len(short["lines"]) == 1 and short["closing"] == D("10500.00")


@pytest.mark.parametrize("date_from,date_to", [(None, None), (dt.date(2024, 1, 6), dt.date(2024, 2, 1)),
                                               (dt.date(2024, 2, 1), None), (None, dt.date(2024, 1, 31))])
def test_general_ledger_closing_balances_equal_the_trial_balance(ledger, date_from, date_to):
    before = read(ledger, reports.trial_balance, as_of=date_from - dt.timedelta(days=1)) if date_from else None
    after = read(ledger, reports.trial_balance, as_of=date_to)
    for row in read(ledger, reports.trial_balance)["rows"]:
        gl = read(ledger, reports.general_ledger, row["code"], date_from, date_to)
        expected_opening = next((r["balance"] for r in before["rows"] if r["code"] == row["code"]), 0) if before else 0
        assert gl["opening"] == expected_opening
        assert gl["closing"] == next((r["balance"] for r in after["rows"] if r["code"] == row["code"]), 0)
        assert (gl["lines"][-1]["balance"] if gl["lines"] else gl["opening"]) == gl["closing"]


def test_general_ledger_refuses_an_unknown_account_and_a_reversed_range(ledger):
    with pytest.raises(ValidationFailed, match="no account '9999'"):
        read(ledger, reports.general_ledger, "9999")
    with pytest.raises(ValidationFailed, match="starts after it ends"):
        read(ledger, reports.general_ledger, journal.CASH, dt.date(2024, 3, 1), dt.date(2024, 2, 1))


def test_reports_on_an_empty_ledger_are_zero(database):
    assert read(database, reports.trial_balance)["totals"] == {"debit": 0, "credit": 0, "balance": 0}
    sheet = read(database, reports.balance_sheet)
    assert (sheet["total_assets"], sheet["total_equity"], sheet["balanced"]) == (0, 0, True)


# ---- stock reports -------------------------------------------------------------------------------

@pytest.fixture
def stock(database):
    """Two warehouses; A costs 2.50, B 1.3333 (a moving average), C has no stock."""
    with database.session() as s:
        main, east = Warehouse(code="MAIN", name="Main"), Warehouse(code="EAST", name="East")
        a = Product(sku="A", name="Widget", sale_price=D("5"), tax_code="VAT13", avg_cost=D("2.5"))
        b = Product(sku="B", name="Gadget", sale_price=D("3"), tax_code="VAT13", avg_cost=D("1.3333"))
        c = Product(sku="C", name="Gizmo", sale_price=D("9"), tax_code="VAT13")
        s.add_all([main, east, a, b, c])
        s.flush()
        s.add_all([StockLevel(product_id=a.id, warehouse_id=main.id, quantity=D("10")),
                   StockLevel(product_id=b.id, warehouse_id=main.id, quantity=D("3")),
                   StockLevel(product_id=a.id, warehouse_id=east.id, quantity=D("4")),
                   StockLevel(product_id=b.id, warehouse_id=east.id, quantity=D("0.5")),
                   StockLevel(product_id=c.id, warehouse_id=east.id, quantity=D("0"))])
        s.add_all([ReorderRule(product_id=a.id, warehouse_id=main.id, min_quantity=D("20"), reorder_quantity=D("5")),
                   ReorderRule(product_id=b.id, warehouse_id=main.id, min_quantity=D("3"), reorder_quantity=D("10")),
                   ReorderRule(product_id=b.id, warehouse_id=east.id, min_quantity=D("1"), reorder_quantity=D("4")),
                   ReorderRule(product_id=c.id, warehouse_id=main.id, min_quantity=D("5"),
                               reorder_quantity=D("12"))])
    return database


def test_stock_valuation_values_on_hand_at_average_cost(stock):
    report = read(stock, reports.stock_valuation)

    east, main = report["warehouses"]
    assert (east["code"], east["name"], main["code"]) == ("EAST", "East", "MAIN")
    assert east["lines"] == [
        {"product_id": 1, "sku": "A", "name": "Widget", "quantity": D("4.000"), "unit_cost": D("2.5000"),
         "value": D("10.00")},
        {"product_id": 2, "sku": "B", "name": "Gadget", "quantity": D("0.500"), "unit_cost": D("1.3333"),
         "value": D("0.67")},  # 0.66665, rounded half up; C, with nothing on hand, is not listed
    ]
    assert [(l["sku"], l["value"]) for l in main["lines"]] == [("A", D("25.00")), ("B", D("4.00"))]
    assert (east["total_value"], main["total_value"], report["total_value"]) == (
        D("10.67"), D("29.00"), D("39.67"))


def test_low_stock_suggests_enough_to_reach_the_minimum(stock):
    assert read(stock, reports.low_stock) == [
        {"product_id": 2, "sku": "B", "name": "Gadget", "warehouse_id": 2, "warehouse_code": "EAST",
         "on_hand": D("0.500"), "min_quantity": D("1.000"), "reorder_quantity": D("4.000"),
         "suggested_quantity": D("4.000")},
        {"product_id": 1, "sku": "A", "name": "Widget", "warehouse_id": 1, "warehouse_code": "MAIN",
         "on_hand": D("10.000"), "min_quantity": D("20.000"), "reorder_quantity": D("5.000"),
         "suggested_quantity": D("10.000")},
        {"product_id": 3, "sku": "C", "name": "Gizmo", "warehouse_id": 1, "warehouse_code": "MAIN",
         "on_hand": D("0.000"), "min_quantity": D("5.000"), "reorder_quantity": D("12.000"),
         "suggested_quantity": D("12.000")},
    ]  # B at MAIN has exactly its minimum: not low


# ---- aging --------------------------------------------------------------------------------------

AS_OF = dt.date(2024, 6, 30)


@pytest.fixture
def invoices(database):
    """Customer invoices due on various dates, some partly or fully paid, and one supplier bill."""
    with database.session() as s:
        c1 = Partner(code="C1", name="Acme", is_customer=True)
        c2 = Partner(code="C2", name="Bolt", is_customer=True)
        s1 = Partner(code="S1", name="Parts Co", is_supplier=True)
        wh = Warehouse(code="MAIN", name="Main")
        s.add_all([c1, c2, s1, wh])
        s.flush()
        entry = post(s, "JE-1", AS_OF, [journal.Line(journal.CASH, debit=D("1")),
                                        journal.Line(journal.EQUITY, credit=D("1"))])
        for number, partner, due, gross, paid, state in [
            ("INV-1", c1, dt.date(2024, 6, 30), "100", "0", "open"),      # due today: current
            ("INV-2", c1, dt.date(2024, 6, 1), "200", "50", "partial"),   # 29 days
            ("INV-3", c1, dt.date(2024, 3, 1), "300", "0", "open"),       # 121 days
            ("INV-4", c2, dt.date(2024, 5, 1), "80", "0", "open"),        # 60 days
            ("INV-5", c2, dt.date(2024, 4, 1), "40", "0", "open"),        # 90 days
            ("INV-6", c2, dt.date(2024, 1, 1), "70", "70", "paid"),       # settled: not listed
            ("INV-7", c2, dt.date(2024, 7, 31), "10", "0", "open"),       # not yet due
            ("BILL-1", s1, dt.date(2024, 5, 30), "500", "100", "partial"),
        ]:
            customer = number.startswith("INV")
            order_class = SalesOrder if customer else PurchaseOrder
            order = order_class(number=f"O-{number}", partner_id=partner.id, warehouse_id=wh.id,
                                state="invoiced" if customer else "billed")
            s.add(order)
            s.flush()
            s.add(Invoice(number=number, kind="customer" if customer else "supplier", partner_id=partner.id,
                          sales_order_id=order.id if customer else None,
                          purchase_order_id=None if customer else order.id,
                          issue_date=due - dt.timedelta(days=30), due_date=due, net_total=D(gross),
                          tax_total=D("0"), gross_total=D(gross), amount_paid=D(paid), state=state,
                          journal_entry_id=entry.id))
    return database


def test_customer_aging_buckets_open_invoices_by_days_past_due(invoices):
    report = read(invoices, reports.aging, "customer", AS_OF)

    acme, bolt = report["partners"]
    assert (acme["code"], acme["name"], bolt["code"]) == ("C1", "Acme", "C2")
    assert acme["buckets"] == {"current": D("100.00"), "days_1_30": D("150.00"), "days_31_60": 0,
                               "days_61_90": 0, "over_90": D("300.00")}
    assert acme["total"] == D("550.00")
    assert bolt["buckets"] == {"current": D("10.00"), "days_1_30": 0, "days_31_60": D("80.00"),
                               "days_61_90": D("40.00"), "over_90": 0}
    assert [(i["number"], i["days_overdue"], i["bucket"], i["outstanding"]) for i in bolt["invoices"]] == [
        ("INV-5", 90, "days_61_90", D("40.00")), ("INV-4", 60, "days_31_60", D("80.00")),
        ("INV-7", 0, "current", D("10.00"))]
    assert acme["invoices"][1] == {"invoice_id": acme["invoices"][1]["invoice_id"], "number": "INV-2",
                                   "issue_date": dt.date(2024, 5, 2),
                                   "due_date": dt.date(2024, 6, 1), "days_overdue": 29, "bucket": "days_1_30",
                                   "outstanding": D("150.00")}
    assert report["buckets"] == {"current": D("110.00"), "days_1_30": D("150.00"), "days_31_60": D("80.00"),
                                 "days_61_90": D("40.00"), "over_90": D("300.00")}
    assert (report["kind"], report["as_of"], report["total"]) == ("customer", AS_OF, D("680.00"))


def test_supplier_aging_lists_only_bills(invoices):
    report = read(invoices, reports.aging, "supplier", AS_OF)

    [parts] = report["partners"]
    assert (parts["code"], parts["total"], parts["buckets"]["days_31_60"]) == ("S1", D("400.00"), D("400.00"))
    assert report["total"] == D("400.00")


@pytest.mark.parametrize("days, bucket", [(-5, "current"), (0, "current"), (1, "days_1_30"), (30, "days_1_30"),
                                          (31, "days_31_60"), (60, "days_31_60"), (61, "days_61_90"),
                                          (90, "days_61_90"), (91, "over_90")])
def test_aging_bucket_edges(days, bucket):
    assert reports.aging_bucket(days) == bucket


def test_aging_refuses_an_unknown_kind(database):
    with pytest.raises(ValidationFailed, match="unknown aging kind"):
        read(database, reports.aging, "employee", AS_OF)


def test_outstanding_totals_match_the_aging_report(invoices):
    """The dashboard's sums (in the database) equal the aging report's (invoice by invoice)."""
    for kind in ("customer", "supplier"):
        report = read(invoices, reports.aging, kind, AS_OF)
        sums = read(invoices, reports.outstanding, kind, AS_OF)
        assert sums == {"total": report["total"], "overdue": report["total"] - report["buckets"]["current"]}
    assert read(invoices, reports.outstanding, "customer", AS_OF)["overdue"] == D("550.00") - D("100.00") + D("120.00")
