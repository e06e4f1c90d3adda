"""The general-ledger and aging pages through Flask's test client: the figures shown are exactly
the services' reports (services.reports.general_ledger and aging), in English and Chinese; the
trial balance drills down to an account's ledger; odd input is answered with a message."""

from __future__ import annotations

import datetime as dt
import re

import pytest

from erp_core.domain import journal
from erp_core.services import reports
from tests.erp_core.test_web import WebUser, text_of
from tests.erp_core.test_web_lists import read_csv


@pytest.fixture
def books(sqlite_erp):
    """A customer invoiced 2 x 100.00 + 13 % VAT = 226.00 and paid 100.00; a supplier bill unpaid."""
    erp = sqlite_erp
    wh, sup, cust = erp.warehouse(), erp.supplier(), erp.customer("C1")
    p = erp.product("A", "100.00")
    po = erp.stock_in(sup, wh, [(p, 5, "60.00")])
    erp.post(f"/purchase-orders/{po['id']}/bill", {"supplier_reference": "B-1"}, role="finance")
    so = erp.post("/sales-orders", {"partner_id": cust, "warehouse_id": wh,
                                    "lines": [{"product_id": p, "quantity": "2"}]}, role="sales")["id"]
    erp.post(f"/sales-orders/{so}/confirm", role="sales", expect=200)
    erp.post(f"/sales-orders/{so}/deliver", role="warehouse", json={}, expect=200)
    inv = erp.post(f"/sales-orders/{so}/invoice", role="finance")
    erp.post(f"/invoices/{inv['id']}/payments", {"amount": "100.00"}, role="finance")
    return erp


def cell(page: str, id_: str) -> str:
    return re.search(rf'id="{id_}">([^<]*)<', page).group(1)


def test_the_general_ledger_page_shows_the_reports_figures(books):
    erp = books
    finance = WebUser(erp, "finance")
    page = finance.page(f"/app/reports/general-ledger?account={journal.RECEIVABLE}")
    with erp.db.session(write=False) as s:
        report = reports.general_ledger(s, journal.RECEIVABLE)
        tb = {r["code"]: r["balance"] for r in reports.trial_balance(s)["rows"]}
    assert report["closing"] == tb[journal.RECEIVABLE] == 126
    assert cell(page, "opening") == "0.00" and cell(page, "closing") == "126.00"
    assert (cell(page, "total-debit"), cell(page, "total-credit")) == ("226.00", "100.00")
    balances = re.findall(r'<td class="num">([\d,.-]+)</td></tr>', page.split('id="ledger"')[1])
    assert balances == [f"{r['balance']:,.2f}" for r in report["lines"]] == ["226.00", "126.00"]
    today = dt.date.today()
    later = finance.page(f"/app/reports/general-ledger?account={journal.RECEIVABLE}&date_from={today + dt.timedelta(days=1)}")
    assert cell(later, "opening") == "126.00" and "No entries on this account in the range." in text_of(later)
    rows = read_csv(finance.get(f"/app/reports/general-ledger?account={journal.RECEIVABLE}&format=csv").data)
    assert rows[1][2] == "Opening balance" and [r[6] for r in rows[1:]] == ["0.00", "226.00", "126.00"]

    tb_page = finance.page("/app/reports/trial-balance")
    assert f'href="/app/reports/general-ledger?account={journal.RECEIVABLE}"' in tb_page
    for query in ("account=9999", "account=<script>", "date_from=x&date_to=2020-13-01", "date_from=2025-02-01&date_to=2025-01-01"):
        r = finance.get(f"/app/reports/general-ledger?{query}")
        assert r.status_code == 200 and "<script>" not in r.get_data(as_text=True).split("</style>")[-1], query
    assert "There is no account '9999'" in text_of(finance.page("/app/reports/general-ledger?account=9999"))


def test_the_aging_page_shows_the_reports_buckets(books):
    erp = books
    finance = WebUser(erp, "finance")
    today = dt.date.today()
    for kind, as_of, total in (("customer", today, "126.00"), ("supplier", today + dt.timedelta(days=45), "339.00")):
        page = finance.page(f"/app/reports/aging?kind={kind}&as_of={as_of}")
        with erp.db.session(write=False) as s:
            report = reports.aging(s, kind, as_of)
        assert cell(page, "aging-total") == total == f"{report['total']:,.2f}"
        for bucket in reports.AGING_BUCKETS:
            assert cell(page, f"bucket-{bucket}") == f"{report['buckets'][bucket]:,.2f}"
    assert cell(finance.page(f"/app/reports/aging?kind=supplier&as_of={today + dt.timedelta(days=45)}"),
                "bucket-days_1_30") == "339.00"
    page = finance.page("/app/reports/aging?kind=<b>&as_of=nope")
    assert "'nope' is not a date" in text_of(page) and "Receivables aging" in text_of(page)
    finance.post("/app/account/language", {"locale": "zh_Hans"})
    page = text_of(finance.page("/app/reports/aging"))
    assert "应收账款账龄" in page and "126.00" in page
    assert "总分类账" in text_of(finance.page(f"/app/reports/general-ledger?account={journal.RECEIVABLE}"))


def test_the_invoice_prints_with_its_lines_buyer_and_totals(books):
    erp = books
    erp.req("PATCH", "/partners/2", json={"tax_id": "91310000MA1FL0001", "address": "上海市浦东新区 1 号"}, expect=200)
    finance = WebUser(erp, "finance")
    inv = erp.get("/invoices", query={"kind": "customer"}, role="finance")["items"][0]
    assert f"/app/invoices/{inv['id']}/print" in finance.page(f"/app/invoices/{inv['id']}")
    page = finance.page(f"/app/invoices/{inv['id']}/print")
    assert "@media print" in page and "@page{size:A4" in page and '<header class="top">' not in page
    text = text_of(page)
    for expected in (inv["number"], "Customer C1", "91310000MA1FL0001", "上海市浦东新区 1 号", "Product A", "200.00",
                     "26.00", "CN¥226.00", "13 %"):
        assert expected in text, expected
    assert (cell(page, "print-paid"), cell(page, "print-outstanding")) == ("100.00", "126.00")
    assert WebUser(erp, "sales").get(f"/app/invoices/{inv['id']}/print").status_code == 403
    assert finance.get("/app/invoices/999/print").status_code == 404
    finance.post("/app/account/language", {"locale": "zh_Hans"})
    text = text_of(finance.page(f"/app/invoices/{inv['id']}/print"))
    assert "纳税人识别号" in text and "价税合计" in text and "¥226.00" in text
