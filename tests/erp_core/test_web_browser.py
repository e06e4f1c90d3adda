"""One real browser: headless Chromium (Debian's) driven by Playwright against the ERP served by
waitress, as a sales user enters and confirms an order with the keyboard-and-form flow."""

from __future__ import annotations

import os
import re

from erp_core.serve import Server
from tests.conftest import PASSWORD, Erp, fresh_database_url, need

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]


def playwright_and_chromium():
    """Playwright's expect and sync_playwright, or the test is skipped naming what is missing."""
    try:
        from playwright.sync_api import expect, sync_playwright
    except ImportError:
        need("the Python package 'playwright' is not installed (pip install playwright)")
    if not os.access(CHROMIUM, os.X_OK):
        need(f"Chromium is not installed at {CHROMIUM} (apt-get install chromium)")
    return expect, sync_playwright


def test_sales_user_enters_and_confirms_an_order_in_chromium(request, tmp_path):
    expect, sync_playwright = playwright_and_chromium()

    erp = Erp(fresh_database_url("sqlite", request, tmp_path), "sqlite")
    server = None
    try:
        wh, sup, cust = erp.warehouse(), erp.supplier(), erp.customer("C1")
        a, b = erp.product("A", "100.00", "VAT13"), erp.product("B", "20.00", "VAT9")
        erp.stock_in(sup, wh, [(a, 10, "60.00"), (b, 50, "8.00")])
        erp.req("PUT", f"/partners/{cust}/prices", json={"product_id": b, "unit_price": "18.00"}, expect=200)
        server = Server(erp.app, port=0).start()

        with sync_playwright() as pw:
            browser = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)
            try:
                page = browser.new_page(viewport={"width": 1366, "height": 768})
                page.set_default_timeout(20_000)
                page.goto(server.url + "/")
                expect(page).to_have_url(re.compile(r"/app/login"))
                page.fill("input[name=username]", "sales")
                page.fill("input[name=password]", PASSWORD)
                page.click("button:has-text('Log in')")
                expect(page.locator("h1")).to_have_text("Dashboard")

                page.click("text=New sales order")
                page.fill("#partner", "c1")  # codes typed as they are (the pickers' suggestions: test_web_browser_picker)
                page.select_option("#warehouse_id", str(wh))
                page.fill("#lines-0-product", "A")
                page.fill("#lines-0-quantity", "3")
                page.fill("#lines-0-discount_percent", "5")
                page.fill("#lines-1-product", "b")
                page.fill("#lines-1-quantity", "7")  # no price: the customer's list gives 18.00
                page.click("#save")
                page.wait_for_url(re.compile(r"/app/sales/\d+$"))
                # 3 x 100 - 5 % = 285.00 + 13 % VAT 37.05; 7 x 18.00 = 126.00 + 9 % VAT 11.34
                expect(page.locator("#order-total")).to_have_text("459.39")
                expect(page.locator("#order-state")).to_have_text("draft")

                page.click("#actions button:has-text('Confirm')")
                expect(page.locator(".flash.ok")).to_contain_text("Sales order SO000001 confirmed.")
                expect(page.locator("#order-number")).to_have_text("SO000001")
                expect(page.locator("#order-state")).to_have_text("confirmed")
                expect(page.locator("#order-total")).to_have_text("459.39")
                expect(page.locator("#order-lines tbody tr")).to_have_count(2)
                page.screenshot(path=str(tmp_path / "sales-order-confirmed.png"), full_page=True)
            finally:
                browser.close()

        assert (tmp_path / "sales-order-confirmed.png").stat().st_size > 0
        orders = erp.get("/sales-orders", role="sales")["items"]
        assert [(o["number"], o["state"], o["gross_total"]) for o in orders] == [("SO000001", "confirmed", "459.39")]
    finally:
        if server is not None:
            server.stop()
        erp.close()
