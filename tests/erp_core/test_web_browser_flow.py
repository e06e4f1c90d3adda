"""The business day in a real browser (Debian's Chromium through Playwright, the ERP served by
waitress on loopback), in English and in Chinese: purchasing adds a product with its reorder level;
a sales clerk creates a customer with a price list and enters an order with two lines, confirms it;
the warehouse delivers; finance invoices, opens the print view, records a payment; the general
ledger and aging pages show exactly the services' figures; the invoice list is exported to CSV and
the file re-read. Screenshots of every new page in both languages go to test-artifacts/i18n/."""

from __future__ import annotations

import csv
import re

import pytest

from erp_core.domain import journal
from erp_core.serve import Server
from erp_core.services import reports
from tests.conftest import PASSWORD, Erp, fresh_database_url
from tests.erp_core.test_web_browser import CHROMIUM, CHROMIUM_ARGS, playwright_and_chromium
from tests.erp_core.test_web_browser_i18n import ARTIFACTS

WORDS = {  # what each language shows, checked on the pages
    "en": {"locale": "en-US", "html": "en", "customer": "Hangzhou Tea House", "saved": "saved",
           "confirmed": "confirmed", "paid_part": "partial", "ledger": "General ledger", "aging": "Receivables aging",
           "csv_head": "Number"},
    "zh": {"locale": "zh-CN", "html": "zh-CN", "customer": "杭州茶馆有限公司", "saved": "已保存",
           "confirmed": "已确认", "paid_part": "部分付款", "ledger": "总分类账", "aging": "应收账款账龄",
           "csv_head": "单号"},
}


def _shot(page, name, lang):
    page.screenshot(path=str(ARTIFACTS / f"{name}-{lang}.png"), full_page=True)


def _login(browser, url, username, lang, expect):
    ctx = browser.new_context(locale=WORDS[lang]["locale"], viewport={"width": 1280, "height": 800},
                              accept_downloads=True)
    page = ctx.new_page()
    page.set_default_timeout(20_000)
    page.goto(url + "/app/login")
    page.fill("input[name=username]", username)
    page.fill("input[name=password]", PASSWORD)
    page.click("form[action='/app/login'] button[type=submit]")
    expect(page.locator("html")).to_have_attribute("lang", WORDS[lang]["html"])
    expect(page.locator("header.top")).to_be_visible()
    return page


def _money(value) -> str:
    return f"{value:,.2f}"


@pytest.mark.parametrize("lang", ["en", "zh"])
def test_a_business_day_in_the_browser(request, tmp_path, lang):
    expect, sync_playwright = playwright_and_chromium()
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    w = WORDS[lang]
    erp = Erp(fresh_database_url("sqlite", request, tmp_path), "sqlite")
    server = None
    try:
        wh, sup = erp.warehouse(), erp.supplier()
        b = erp.product("B", "20.00", "VAT9")
        erp.stock_in(sup, wh, [(b, 50, "8.00")])
        server = Server(erp.app, port=0).start()
        with sync_playwright() as pw:
            browser = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)
            try:
                _purchasing_adds_a_product(browser, server.url, lang, expect, wh)
                a = erp.get("/products", query={"q": "TEA-1"})["items"][0]["id"]
                erp.stock_in(sup, wh, [(a, 10, "50.00")])
                order_url = _sales_enters_an_order(browser, server.url, lang, expect, b)
                page = _login(browser, server.url, "warehouse", lang, expect)
                page.goto(order_url)
                page.click("button[name=action][value=deliver]")
                expect(page.locator(".flash.ok")).to_be_visible()
                page.context.close()
                _finance_invoices_and_is_paid(browser, server.url, lang, expect, erp, order_url, tmp_path)
            finally:
                browser.close()
    finally:
        if server is not None:
            server.stop()
        erp.close()


def _purchasing_adds_a_product(browser, url, lang, expect, wh):
    page = _login(browser, url, "purchasing", lang, expect)
    page.goto(url + "/app/products")
    _shot(page, "products", lang)
    page.click("#new-product")
    page.fill("#sku", "TEA-1")
    page.fill("#name", "Longjing tea 250 g" if lang == "en" else "龙井茶 250 克")
    page.fill("#unit", "box" if lang == "en" else "盒")
    page.fill("#sale_price", "")
    page.fill("#reorder_min", "5")
    page.fill("#reorder_quantity", "20")
    page.click("#save")  # the price is missing: refused, marked on its field, the rest kept
    expect(page.locator("#sale_price")).to_have_attribute("aria-invalid", "true")
    expect(page.locator("#sku")).to_have_value("TEA-1")
    _shot(page, "product-new-refused", lang)
    page.fill("#sale_price", "100.00")
    page.click("#save")
    expect(page.locator(".flash.ok")).to_contain_text("TEA-1")
    expect(page.locator("#products tbody tr")).to_have_count(1)
    expect(page.locator("#products")).to_contain_text("WH1")
    page.click("#products a[href$='/edit']")
    expect(page.locator("#reorder_min")).to_have_value("5")
    _shot(page, "product-edit", lang)
    page.context.close()


def _sales_enters_an_order(browser, url, lang, expect, b) -> str:
    w = WORDS[lang]
    page = _login(browser, url, "sales", lang, expect)
    page.goto(url + "/app/partners")
    page.click("#new-customer")
    _shot(page, "partner-new", lang)
    page.fill("#code", "HZ1")
    page.fill("#name", w["customer"])
    page.fill("#tax_id", "91330100MA2B3C4D5E")
    page.fill("#address", "Hangzhou, West Lake Road 1" if lang == "en" else "杭州市西湖路 1 号")
    page.fill("#payment_terms_days", "30")
    page.click("#save")
    expect(page.locator(".flash.ok")).to_contain_text(w["saved"])
    page.click("#partners a[href$='/edit']")
    page.fill("#payment_terms_days", "45")
    _shot(page, "partner-edit", lang)
    page.click("#save")
    expect(page.locator("#partners")).to_contain_text("45")
    page.click("#partners a[href$='/prices']")
    page.fill("#sku", "tea-1")
    page.fill("#unit_price", "90.00")
    page.click("#save-price")
    expect(page.locator("#prices tbody")).to_contain_text("90.00")
    _shot(page, "prices", lang)

    page.goto(url + "/app/sales/new")
    page.fill("#partner", "HZ1")
    page.fill("#lines-0-product", "TEA-1")
    page.fill("#lines-0-quantity", "2")                 # the customer's 90.00
    page.fill("#lines-1-product", "B")
    page.fill("#lines-1-quantity", "4")
    page.fill("#lines-1-discount_percent", "10")
    page.click("#save")
    page.wait_for_url(re.compile(r"/app/sales/\d+$"))
    expect(page.locator("#order-total")).to_have_text("281.88")
    page.click("#edit-order")  # the draft is edited: 5 of B instead of 4
    expect(page.locator("#lines-0-unit_price")).to_have_value("90.00")
    _shot(page, "sales-order-edit", lang)
    page.fill("#lines-1-quantity", "5")
    page.click("#save")
    page.wait_for_url(re.compile(r"/app/sales/\d+$"))
    # 2 x 90.00 = 180.00 + 13 % 23.40; 5 x 20.00 - 10 % = 90.00 + 9 % 8.10: 301.50
    expect(page.locator("#order-total")).to_have_text("301.50")
    page.click("button[name=action][value=confirm]")
    expect(page.locator("#order-state")).to_have_text(w["confirmed"])
    order_url = page.url
    page.goto(url + "/app/sales?partner=HZ1&sort=-total")
    expect(page.locator("#orders tbody tr")).to_have_count(1)
    _shot(page, "sales-filtered", lang)
    page.context.close()
    return order_url


def _finance_invoices_and_is_paid(browser, url, lang, expect, erp, order_url, tmp_path):
    w = WORDS[lang]
    page = _login(browser, url, "finance", lang, expect)
    page.goto(order_url)
    page.click("button[name=action][value=invoice]")
    page.click("a[href^='/app/invoices/']")
    page.wait_for_url(re.compile(r"/app/invoices/\d+$"))
    invoice_url = page.url
    page.click("#print-link")
    expect(page.locator("#print-total")).to_contain_text("301.50")
    expect(page.locator("#print-partner")).to_contain_text("91330100MA2B3C4D5E")
    expect(page.locator("#print-lines tbody tr")).to_have_count(2)
    _shot(page, "invoice-print", lang)
    page.emulate_media(media="print")
    expect(page.locator(".noprint")).to_be_hidden()
    page.emulate_media(media="screen")

    page.goto(invoice_url)
    page.fill("form[action$='/payments'] input[name=amount]", "200.00")
    page.click("form[action$='/payments'] button[type=submit]")
    expect(page.locator("#invoice-outstanding")).to_have_text("101.50")
    expect(page.locator("#invoice-state")).to_have_text(w["paid_part"])

    with erp.db.session(write=False) as s:
        ledger = reports.general_ledger(s, journal.RECEIVABLE)
        aging = reports.aging(s, "customer")
        tb = {r["code"]: r["balance"] for r in reports.trial_balance(s)["rows"]}
    assert ledger["closing"] == tb[journal.RECEIVABLE] == aging["total"] == 101.5
    page.goto(url + "/app/reports/trial-balance")
    page.click(f"#trial-balance a:text-is('{journal.RECEIVABLE}')")
    expect(page.locator("h1")).to_contain_text(w["ledger"])
    expect(page.locator("#opening")).to_have_text(_money(ledger["opening"]))
    expect(page.locator("#total-debit")).to_have_text(_money(ledger["totals"]["debit"]))
    expect(page.locator("#total-credit")).to_have_text(_money(ledger["totals"]["credit"]))
    expect(page.locator("#closing")).to_have_text("101.50")
    expect(page.locator("#ledger tbody tr")).to_have_count(1 + len(ledger["lines"]))
    _shot(page, "general-ledger", lang)
    page.goto(url + "/app/reports/aging")
    expect(page.locator("h1")).to_have_text(w["aging"])
    expect(page.locator("#aging-total")).to_have_text(_money(aging["total"]))
    expect(page.locator("#bucket-current")).to_have_text(_money(aging["buckets"]["current"]))
    expect(page.locator("#aging")).to_contain_text(w["customer"])
    _shot(page, "aging", lang)

    page.goto(url + "/app/invoices?kind=customer&sort=-issued")
    _shot(page, "invoices-filtered", lang)
    with page.expect_download() as info:
        page.click("#export-csv")
    path = tmp_path / f"invoices-{lang}.csv"
    info.value.save_as(str(path))
    raw = path.read_bytes()
    assert raw.startswith(b"\xef\xbb\xbf")
    rows = list(csv.reader(path.open(encoding="utf-8-sig", newline="")))
    assert rows[0][0] == w["csv_head"] and len(rows) == 2
    assert rows[1][2:4] == ["HZ1", w["customer"]] and rows[1][6:9] == ["301.50", "200.00", "101.50"]
    page.context.close()
