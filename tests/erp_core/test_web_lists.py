"""The lists: sorting by a column, filters (state, partner, date range, text), paging with all of
them kept in the URL, and the CSV export of exactly what the filter shows (UTF-8 with BOM; formulas
neutralised), through Flask's test client."""

from __future__ import annotations

import csv
import datetime as dt
import html
import io
import re

import pytest

from erp_core.web import listing, orders
from tests.erp_core.test_web import WebUser, text_of


@pytest.fixture
def shop(sqlite_erp, monkeypatch):
    """Five sales orders of two customers (one Chinese, one whose name looks like a formula), pages of 2."""
    monkeypatch.setattr(listing, "PAGE_SIZE", 2)
    monkeypatch.setattr(orders, "PAGE_SIZE", 2)
    erp = sqlite_erp
    wh = erp.warehouse()
    zh = erp.customer("ZH1", name="上海明远贸易有限公司")
    evil = erp.customer("EV1", name="=HYPERLINK(\"http://x\")")
    p = erp.product("A", "10.00")
    erp.stock_in(erp.supplier(), wh, [(p, 20, "6.00")])
    ids = []
    for cust, qty in ((zh, 1), (evil, 5), (zh, 3), (zh, 2), (evil, 4)):
        ids.append(erp.post("/sales-orders", {"partner_id": cust, "warehouse_id": wh, "lines": [
            {"product_id": p, "quantity": str(qty)}]}, role="sales")["id"])
    erp.post(f"/sales-orders/{ids[0]}/confirm", role="sales", expect=200)
    return erp


def numbers(page: str) -> list[str]:
    return re.findall(r">(SO\d+)</a>", page)


def read_csv(body: bytes) -> list[list[str]]:
    assert body.startswith(b"\xef\xbb\xbf"), "UTF-8 with a byte-order mark, for Excel"
    return list(csv.reader(io.StringIO(body.decode("utf-8-sig"), newline="")))


def test_sorting_filtering_and_paging_are_kept_in_the_url(shop):
    sales = WebUser(shop, "sales")
    page = sales.page("/app/sales?sort=total")
    assert numbers(page) == ["SO000001", "SO000004"]  # 11.30, 22.60
    nxt = html.unescape(re.search(r'href="([^"]+)" rel="next"', page).group(1))
    assert "sort=total" in nxt and "offset=2" in nxt
    assert numbers(sales.page(nxt)) == ["SO000003", "SO000005"]
    assert numbers(sales.page("/app/sales?sort=-total")) == ["SO000002", "SO000005"]
    # the header link reverses the order and goes back to the first page
    link = html.unescape(re.search(r'id="sort-total" href="([^"]+)"', sales.page(nxt)).group(1))
    assert "sort=-total" in link and "offset" not in link

    assert numbers(sales.page("/app/sales?partner=ev1&sort=number")) == ["SO000002", "SO000005"]
    assert numbers(sales.page("/app/sales?state=confirmed")) == ["SO000001"]
    assert numbers(sales.page("/app/sales?q=明远&sort=number&offset=2")) == ["SO000004"]
    today = dt.datetime.now(dt.timezone.utc).date()
    assert "5 in all" in text_of(sales.page(f"/app/sales?date_from={today}&date_to={today}&offset=0")) or \
        "1–2 of 5" in text_of(sales.page(f"/app/sales?date_from={today}&date_to={today}"))
    assert "No sales orders match." in text_of(sales.page(f"/app/sales?date_from={today + dt.timedelta(days=1)}"))
    assert "No sales orders match." in text_of(sales.page(f"/app/sales?date_to={today - dt.timedelta(days=1)}"))


ODD_QUERIES = ["date_from=nope", "date_to=9999-12-31", "date_from=0001-01-01", "sort=<script>", "sort=-",
               "offset=-5", "offset=99999999999", "_method=PATCH", "_anchor=x&_external=1", "format=xml",
               "partner=" + "x" * 500, "state=<b>", "q=%00", "date_from=2026-02-30&format=csv"]


def test_odd_list_urls_are_answered_not_failed(shop):
    admin = WebUser(shop, "admin")
    for query in ODD_QUERIES:
        for path in ("/app/sales", "/app/invoices", "/app/partners", "/app/products", "/app/purchases"):
            r = admin.get(f"{path}?{query}")
            assert r.status_code == 200, (path, query, r.status_code)
            assert "<script>" not in r.get_data(as_text=True).split("</style>")[-1]
    assert "'nope' is not a date" in text_of(admin.page("/app/sales?date_from=nope"))


def test_the_csv_export_is_what_the_filter_shows_and_excel_safe(shop):
    sales = WebUser(shop, "sales")
    r = sales.get("/app/sales?format=csv&sort=-total&offset=2")
    assert r.status_code == 200 and r.headers["Content-Type"] == "text/csv; charset=utf-8"
    assert re.match(r'attachment; filename="sales-\d{4}-\d{2}-\d{2}\.csv"', r.headers["Content-Disposition"])
    rows = read_csv(r.data)
    assert rows[0] == ["Number", "Date", "Partner code", "Partner", "State", "Currency", "Net", "Tax", "Total"]
    assert [(row[0], row[2], row[8]) for row in rows[1:]] == [
        ("SO000002", "EV1", "56.50"), ("SO000005", "EV1", "45.20"), ("SO000003", "ZH1", "33.90"),
        ("SO000004", "ZH1", "22.60"), ("SO000001", "ZH1", "11.30")], "every matching row, not one page"
    assert rows[3][3] == "上海明远贸易有限公司" and rows[3][4] == "draft"
    assert rows[1][3] == "'=HYPERLINK(\"http://x\")", "a formula-like text is not a formula in Excel"

    filtered = read_csv(sales.get("/app/sales?format=csv&partner=ZH1&state=draft&sort=number").data)
    assert [row[0] for row in filtered[1:]] == ["SO000003", "SO000004"]

    sales.post("/app/account/language", {"locale": "zh_Hans"})
    rows = read_csv(sales.get("/app/sales?format=csv&state=confirmed").data)
    assert rows[0][:3] == ["单号", "日期", "往来单位编码"] and rows[1][4] == "已确认"


def test_invoices_partners_and_products_sort_filter_and_export(shop):
    erp = shop
    so = erp.get("/sales-orders", query={"state": "confirmed"}, role="sales")["items"][0]["id"]
    erp.post(f"/sales-orders/{so}/deliver", role="warehouse", json={}, expect=200)
    erp.post(f"/sales-orders/{so}/invoice", role="finance", json={}, expect=201)
    finance = WebUser(erp, "finance")
    page = text_of(finance.page("/app/invoices?sort=-outstanding&partner=zh1"))
    assert "INV" in page and "11.30" in page
    rows = read_csv(finance.get("/app/invoices?format=csv&kind=customer").data)
    assert [r[3] for r in rows[1:]] == ["上海明远贸易有限公司"] and rows[1][8] == "11.30"
    today = dt.date.today()
    assert len(read_csv(finance.get(f"/app/invoices?format=csv&date_to={today - dt.timedelta(days=1)}").data)) == 1

    admin = WebUser(erp, "admin")
    rows = read_csv(admin.get("/app/partners?format=csv&sort=-code&kind=customer").data)
    assert [r[0] for r in rows[1:]] == ["ZH1", "EV1"]
    assert [r[0] for r in read_csv(admin.get("/app/products?format=csv").data)[1:]] == ["A"]
    sales = WebUser(erp, "sales")
    erp.req("PATCH", "/partners/1", json={"tax_id": "91310000MA1FL0001"}, expect=200)
    assert read_csv(admin.get("/app/partners?format=csv&q=ZH1").data)[1][6] == "91310000MA1FL0001"
    masked = read_csv(sales.get("/app/partners?format=csv&q=ZH1").data)
    assert masked[1][0] == "ZH1" and "91310000MA1FL0001" not in masked[1][6], "masked for the sales role"
