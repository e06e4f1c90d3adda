"""The order form's pickers and live totals in a real browser (Debian's Chromium through Playwright, the
ERP served by waitress on loopback): a sales clerk types part of the customer's and a product's name,
picks each with the keyboard (arrow down, Enter; Escape closes the list), sees the customer's price less
the line's discount and the total with tax update as lines are entered, and saves; the order's invoice
PDF then downloads from the order page and its text is checked with pdftotext. Screenshots go to
test-artifacts/i18n/."""

from __future__ import annotations

import re

from erp_core.serve import Server
from tests.conftest import PASSWORD, Erp, fresh_database_url
from tests.erp_core.test_web_browser import CHROMIUM, CHROMIUM_ARGS, playwright_and_chromium
from tests.erp_core.test_web_browser_i18n import ARTIFACTS
from tests.erp_core.test_web_pdf import pdf_text


def _login(browser, url, username, expect):
    page = browser.new_context(locale="en-US", viewport={"width": 1280, "height": 900},
                               accept_downloads=True).new_page()
    page.set_default_timeout(20_000)
    page.goto(url + "/app/login")
    page.fill("input[name=username]", username)
    page.fill("input[name=password]", PASSWORD)
    page.click("form[action='/app/login'] button[type=submit]")
    expect(page.locator("header.top")).to_be_visible()
    return page


def _pick(page, expect, field: str, typed: str, downs: int, label: str):
    """Type part of a name, move down the suggestions with the arrow key and take one with Enter."""
    box = page.locator(field)
    box.press_sequentially(typed, delay=30)
    listbox = page.locator(f"#{box.get_attribute('aria-controls')}")
    expect(listbox.locator("[role=option]").first).to_be_visible()
    expect(box).to_have_attribute("aria-expanded", "true")
    for _ in range(downs):
        box.press("ArrowDown")
    active = box.get_attribute("aria-activedescendant")
    expect(page.locator(f"#{active}")).to_have_attribute("aria-selected", "true")
    expect(page.locator(f"#{active}")).to_contain_text(label)
    box.press("Enter")
    expect(box).to_have_value(label)
    expect(listbox).to_be_hidden()
    expect(box).to_have_attribute("aria-expanded", "false")


def test_a_clerk_picks_with_the_keyboard_sees_live_totals_and_downloads_the_invoice(request, tmp_path):
    expect, sync_playwright = playwright_and_chromium()
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    erp = Erp(fresh_database_url("sqlite", request, tmp_path), "sqlite")
    server = None
    try:
        wh, sup = erp.warehouse(), erp.supplier()
        cust = erp.customer("HZ1", name="Hangzhou Tea House")
        erp.customer("HZ2", name="Hangzhou Noodle Bar")
        tea = erp.post("/products", {"sku": "TEA-1", "name": "Longjing green tea", "sale_price": "100.00",
                                     "tax_code": "VAT13"})["id"]
        erp.post("/products", {"sku": "TEA-2", "name": "Longjing tea, second grade", "sale_price": "60.00",
                               "tax_code": "VAT13"})
        cup = erp.post("/products", {"sku": "CUP", "name": "Celadon cup", "sale_price": "20.00",
                                     "tax_code": "VAT9"})["id"]
        erp.stock_in(sup, wh, [(tea, 10, "50.00"), (cup, 10, "8.00")])
        erp.req("PUT", f"/partners/{cust}/prices", json={"product_id": tea, "unit_price": "90.00"}, expect=200)
        server = Server(erp.app, port=0).start()
        with sync_playwright() as pw:
            browser = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)
            try:
                page = _login(browser, server.url, "sales", expect)
                page.goto(server.url + "/app/sales/new")
                assert "Celadon cup" not in page.content()  # the page embeds no product list
                partner = page.locator("#partner")
                partner.press_sequentially("hangz", delay=30)
                expect(page.locator("#partner-list [role=option]")).to_have_count(2)
                partner.press("Escape")  # closes the list, keeps the text
                expect(page.locator("#partner-list")).to_be_hidden()
                partner.fill("")
                _pick(page, expect, "#partner", "tea hou", 1, "HZ1 — Hangzhou Tea House")
                assert page.input_value("#partner_id") == str(cust)
                _pick(page, expect, "#lines-0-product", "longj", 1, "TEA-1 — Longjing green tea")
                page.fill("#lines-0-quantity", "3")
                page.fill("#lines-0-discount_percent", "10")
                # the customer's 90.00 (not the list's 100.00) less 10 %: 3 x 81.00 = 243.00 + 13 % 31.59
                expect(page.locator("#lines-0-live-price")).to_have_text("90.00 − 10 % = 81.00")
                expect(page.locator("#lines-0-live-net")).to_have_text("243.00")
                expect(page.locator("#live-total")).to_have_text("274.59")
                _pick(page, expect, "#lines-1-product", "CELADON", 1, "CUP — Celadon cup")
                page.fill("#lines-1-quantity", "5")  # 5 x 20.00 = 100.00 + 9 % 9.00
                expect(page.locator("#lines-1-live-price")).to_have_text("20.00")
                expect(page.locator("#live-net")).to_have_text("343.00")
                expect(page.locator("#live-tax")).to_have_text("40.59")
                expect(page.locator("#live-total")).to_have_text("383.59")
                page.screenshot(path=str(ARTIFACTS / "sales-order-live-totals-en.png"), full_page=True)
                page.click("#save")
                page.wait_for_url(re.compile(r"/app/sales/\d+$"))
                expect(page.locator("#order-total")).to_have_text("383.59")  # the same figures as stored
                order_url = page.url
                page.context.close()

                so = int(order_url.rsplit("/", 1)[1])
                erp.post(f"/sales-orders/{so}/confirm", role="sales", expect=200)
                erp.post(f"/sales-orders/{so}/deliver", role="warehouse", json={}, expect=200)
                inv = erp.post(f"/sales-orders/{so}/invoice", role="finance")
                page = _login(browser, server.url, "finance", expect)
                page.goto(order_url)
                with page.expect_download() as download:
                    page.click("#invoice-pdf")
                assert download.value.suggested_filename == f"{inv['number']}.pdf"
                saved = tmp_path / "invoice.pdf"
                download.value.save_as(saved)
                page.context.close()
            finally:
                browser.close()
        text = pdf_text(saved.read_bytes(), tmp_path)
        for expected in (f"Invoice number: {inv['number']}", "Name Hangzhou Tea House (HZ1)",
                         "Longjing green tea TEA-1 pcs 3 90.00 10% 243.00 13% 31.59",
                         "Celadon cup CUP pcs 5 20.00 100.00 9% 9.00", "CN¥383.59",
                         "CNY three hundred eighty-three and 59/100"):
            assert expected in text, (expected, text)
    finally:
        if server is not None:
            server.stop()
        erp.close()
