"""The pages in both languages in a real browser (Debian's Chromium through Playwright, the ERP served
by waitress): a Chinese browser gets the Chinese login page; a user logs in in English, switches to
Chinese with the header's button and reads the main pages. Screenshots of each page in both
languages are saved under test-artifacts/i18n/ for review."""

from __future__ import annotations

import re
from pathlib import Path

from erp_core.serve import Server
from tests.conftest import PASSWORD, Erp, fresh_database_url
from tests.erp_core.test_i18n import chinese_data
from tests.erp_core.test_web_browser import CHROMIUM, CHROMIUM_ARGS, playwright_and_chromium

ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts" / "i18n"
# page -> (path, heading in English, heading in Chinese)
PAGES = {
    "dashboard": ("/app/", "Dashboard", "工作台"),
    "sales-orders": ("/app/sales", "Sales orders", "销售订单"),
    "new-sales-order": ("/app/sales/new", "New sales order", "新建销售订单"),
    "purchase-orders": ("/app/purchases", "Purchase orders", "采购订单"),
    "stock": ("/app/stock", "Stock on hand", "现有库存"),
    "partners": ("/app/partners", "Customers and suppliers", "客户和供应商"),
    "invoices": ("/app/invoices", "Invoices and bills", "发票和账单"),
    "trial-balance": ("/app/reports/trial-balance", "Trial balance", "试算平衡表"),
    "profit-and-loss": ("/app/reports/profit-and-loss", "Profit and loss", "利润表"),
    "balance-sheet": ("/app/reports/balance-sheet", "Balance sheet", "资产负债表"),
}


def _data(erp):
    wh, cust, prod = chinese_data(erp)
    so = erp.post("/sales-orders", {"partner_id": cust, "warehouse_id": wh,
                                    "lines": [{"product_id": prod, "quantity": "2"}]}, role="sales")["id"]
    for step, role in (("confirm", "sales"), ("deliver", "warehouse"), ("invoice", "finance")):
        assert erp.req("POST", f"/sales-orders/{so}/{step}", role=role, json={}).status_code in (200, 201)
    return so


def test_pages_in_english_and_chinese_in_chromium(request, tmp_path):
    expect, sync_playwright = playwright_and_chromium()
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    erp = Erp(fresh_database_url("sqlite", request, tmp_path), "sqlite")
    server = None
    try:
        so = _data(erp)
        pages = dict(PAGES, **{"sales-order": (f"/app/sales/{so}", "Sales order", "销售订单")})
        server = Server(erp.app, port=0).start()
        with sync_playwright() as pw:
            browser = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)
            try:
                chinese = browser.new_context(locale="zh-CN", viewport={"width": 1280, "height": 800})
                page = chinese.new_page()
                page.set_default_timeout(20_000)
                page.goto(server.url + "/app/login")
                expect(page.locator("html")).to_have_attribute("lang", "zh-CN")
                expect(page.locator("h1")).to_have_text("登录 ERP 系统")
                page.screenshot(path=str(ARTIFACTS / "login-zh.png"), full_page=True)
                chinese.close()

                page = browser.new_page(locale="en-US", viewport={"width": 1280, "height": 800})
                page.set_default_timeout(20_000)
                page.goto(server.url + "/app/login")
                expect(page.locator("h1")).to_have_text("Log in to the ERP")
                page.screenshot(path=str(ARTIFACTS / "login-en.png"), full_page=True)
                page.fill("input[name=username]", "admin")
                page.fill("input[name=password]", PASSWORD)
                page.click("button:has-text('Log in')")
                expect(page.locator("h1")).to_have_text("Dashboard")
                _tour(page, server.url, pages, "en", expect)

                page.goto(server.url + "/app/")
                page.click("button.lang-switch:has-text('简体中文')")
                expect(page.locator("html")).to_have_attribute("lang", "zh-CN")
                expect(page.locator(".flash.ok")).to_have_text("语言设置已保存。")
                _tour(page, server.url, pages, "zh", expect)
                page.goto(server.url + f"/app/sales/{so}")
                expect(page.locator("#order-state")).to_have_text("已开票")
                expect(page.locator("#order-total")).to_have_text("2,789.97")
                page.goto(server.url + "/app/account")
                expect(page.locator("#locale")).to_have_value("zh_Hans")
                page.screenshot(path=str(ARTIFACTS / "account-zh.png"), full_page=True)
            finally:
                browser.close()
        shots = sorted(p.name for p in ARTIFACTS.glob("*.png"))
        assert {f"{name}-{lang}.png" for name in pages for lang in ("en", "zh")} <= set(shots)
        assert all((ARTIFACTS / name).stat().st_size > 5000 for name in shots)
    finally:
        if server is not None:
            server.stop()
        erp.close()


def _tour(page, url, pages, lang, expect):
    for name, (path, english, chinese) in pages.items():
        page.goto(url + path)
        expect(page.locator("html")).to_have_attribute("lang", "en" if lang == "en" else "zh-CN")
        expect(page.locator("h1")).to_contain_text(re.compile("^" + re.escape(english if lang == "en" else chinese)))
        page.screenshot(path=str(ARTIFACTS / f"{name}-{lang}.png"), full_page=True)
