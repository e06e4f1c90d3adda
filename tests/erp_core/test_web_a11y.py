"""Every main page of the ERP in a real browser (Debian's Chromium through Playwright, the ERP served
by waitress on loopback), as the role that works in it, in English and in Chinese: axe-core finds no
violation of impact serious or critical, at desktop width and on a 390 px phone, where nothing is wider
than the screen (tables scroll in their own container); a full-page screenshot of each page in each
language is kept (tests/a11y.py says where). And a sales order entered with the keyboard alone: Tab
moves through the form with the focus drawn on every control, the pickers take arrow keys and Enter,
Enter saves."""

from __future__ import annotations

import re

import pytest

from erp_core.serve import Server
from tests.a11y import DESKTOP, PHONE, PHONE_RULES, axe_script, focus_ring, overflow, screenshot, serious_violations
from tests.conftest import PASSWORD, Erp, fresh_database_url
from tests.erp_core.test_i18n import chinese_data
from tests.erp_core.test_web import WebUser
from tests.erp_core.test_web_browser import CHROMIUM, CHROMIUM_ARGS, playwright_and_chromium

LOCALES = {"en": "en-US", "zh": "zh-CN"}
HTML_LANG = {"en": "en", "zh": "zh-CN"}
# role -> page name -> path ({so} a draft sales order, {inv} its invoice, ... : made by the fixture)
PAGES = {
    "admin": {"dashboard-admin": "/app/", "users": "/app/users", "user-new": "/app/users/new",
              "warehouses": "/app/warehouses", "warehouse-new": "/app/warehouses/new",
              "warehouse-edit": "/app/warehouses/{wh}/edit", "account": "/app/account",
              "password": "/app/account/password", "sessions": "/app/account/sessions", "mfa": "/app/account/mfa"},
    "sales": {"dashboard-sales": "/app/", "sales-orders": "/app/sales", "sales-order-new": "/app/sales/new",
              "sales-order": "/app/sales/{so}", "sales-order-edit": "/app/sales/{draft}/edit",
              "partners": "/app/partners", "partner-new": "/app/partners/new",
              "partner-edit": "/app/partners/{cust}/edit", "prices": "/app/partners/{cust}/prices"},
    "purchasing": {"dashboard-purchasing": "/app/", "purchase-orders": "/app/purchases",
                   "purchase-order-new": "/app/purchases/new", "purchase-order": "/app/purchases/{po}",
                   "products": "/app/products", "product-new": "/app/products/new",
                   "product-edit": "/app/products/{prod}/edit"},
    "warehouse": {"dashboard-warehouse": "/app/", "stock": "/app/stock", "stock-ledger": "/app/stock/products/{prod}",
                  "reorder-rules": "/app/stock/reorder-rules", "transfers": "/app/stock/transfers",
                  "transfer-new": "/app/stock/transfers/new", "stocktakes": "/app/stocktakes",
                  "stocktake-count": "/app/stocktakes/new?warehouse_id={wh}", "stocktake": "/app/stocktakes/{st}"},
    "finance": {"dashboard-finance": "/app/", "invoices": "/app/invoices", "invoice": "/app/invoices/{inv}",
                "invoice-print": "/app/invoices/{inv}/print", "bank-details": "/app/bank-details",
                "trial-balance": "/app/reports/trial-balance", "profit-and-loss": "/app/reports/profit-and-loss",
                "balance-sheet": "/app/reports/balance-sheet",
                "general-ledger": "/app/reports/general-ledger?account=1100", "aging": "/app/reports/aging",
                "partner-ledger": "/app/partners/{cust}/ledger"},
    "auditor": {"dashboard-auditor": "/app/"},
}


def _documents(erp) -> dict:
    """One of each document the pages show: an invoiced and a draft sales order, a purchase order, a
    transfer to a second warehouse, a draft stocktake."""
    wh, cust, prod = chinese_data(erp)
    so = erp.post("/sales-orders", {"partner_id": cust, "warehouse_id": wh,
                                    "lines": [{"product_id": prod, "quantity": "2"}]}, role="sales")["id"]
    for step, role in (("confirm", "sales"), ("deliver", "warehouse")):
        erp.post(f"/sales-orders/{so}/{step}", role=role, json={}, expect=200)
    inv = erp.post(f"/sales-orders/{so}/invoice", role="finance")["id"]
    draft = erp.post("/sales-orders", {"partner_id": cust, "warehouse_id": wh,
                                       "lines": [{"product_id": prod, "quantity": "1"}]}, role="sales")["id"]
    sup = erp.get("/partners", query={"q": "GYS01"})["items"][0]["id"]
    po = erp.post("/purchase-orders", {"partner_id": sup, "warehouse_id": wh,
                                       "lines": [{"product_id": prod, "quantity": "1", "unit_price": "800.00"}]},
                  role="purchasing")["id"]
    WebUser(erp, "admin").post("/app/warehouses/new", {"code": "BJ01", "name": "北京仓"})
    wh2 = erp.get("/warehouses")["items"][1]["id"]
    clerk = WebUser(erp, "warehouse")
    clerk.post("/app/stock/transfers/new", {"sku": "LS-M8", "quantity": "3", "from_warehouse_id": str(wh),
                                            "to_warehouse_id": str(wh2), "reference": "补货"})
    clerk.post("/app/stocktakes/new", {"warehouse_id": str(wh), f"count-{prod}": "14"})
    st = erp.get("/stocktakes")["items"][0]["id"]
    return {"wh": wh, "cust": cust, "prod": prod, "so": so, "inv": inv, "draft": draft, "po": po, "st": st}


@pytest.fixture(scope="module")
def site(request, tmp_path_factory):
    """The ERP with its documents, served on loopback, and Chromium."""
    expect, sync_playwright = playwright_and_chromium()
    script = axe_script()
    erp = Erp(fresh_database_url("sqlite", request, tmp_path_factory.mktemp("a11y")), "sqlite")
    server = Server(erp.app, port=0).start()
    try:
        ids = _documents(erp)
        with sync_playwright() as pw:
            browser = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)
            try:
                yield {"url": server.url, "ids": ids, "browser": browser, "expect": expect, "axe": script}
            finally:
                browser.close()
    finally:
        server.stop()
        erp.close()


def _login(site, username: str, lang: str):
    context = site["browser"].new_context(locale=LOCALES[lang], viewport=DESKTOP)
    page = context.new_page()
    page.set_default_timeout(20_000)
    page.goto(site["url"] + "/app/login")
    page.fill("input[name=username]", username)
    page.fill("input[name=password]", PASSWORD)
    page.keyboard.press("Enter")
    site["expect"](page.locator("header.top")).to_be_visible()
    return page


def _check(page, site, lang: str, name: str, problems: list) -> None:
    """axe at desktop width and on the phone, the phone's width, the screenshot."""
    site["expect"](page.locator("html")).to_have_attribute("lang", HTML_LANG[lang])
    screenshot(page, "erp", lang, name)
    for label, size in (("desktop", DESKTOP), ("390 px", PHONE)):
        page.set_viewport_size(size)
        rules = PHONE_RULES if size is PHONE else None
        problems += [f"{lang} {name} ({label}): {v}" for v in serious_violations(page, site["axe"], rules)]
        if size is PHONE and (wide := overflow(page)):
            problems.append(f"{lang} {name} (390 px): {wide}")
    page.set_viewport_size(DESKTOP)


def test_every_page_passes_axe_in_both_languages_on_desktop_and_phone(site):
    problems: list[str] = []
    visited = 0
    for lang in LOCALES:
        page = site["browser"].new_page(locale=LOCALES[lang], viewport=DESKTOP)
        page.goto(site["url"] + "/app/login")
        _check(page, site, lang, "login", problems)
        page.context.close()
        for role, pages in PAGES.items():
            page = _login(site, role, lang)
            for name, path in pages.items():
                response = page.goto(site["url"] + path.format(**site["ids"]))
                assert response.status == 200, (role, path, response.status)
                _check(page, site, lang, name, problems)
                visited += 1
            page.context.close()
    assert not problems, f"{len(problems)} problems on {visited} pages:\n" + "\n".join(problems)


def _tab_to(page, element_id: str, seen: list, limit: int = 40) -> None:
    """Tab until the element has the focus, noting each focused control and whether its focus shows."""
    for _ in range(limit):
        page.keyboard.press("Tab")
        ring = focus_ring(page)
        seen.append(ring)
        if ring["id"] == element_id:
            return
    raise AssertionError(f"#{element_id} not reached with {limit} Tabs: {[r['id'] or r['tag'] for r in seen]}")


def test_a_sales_order_entered_with_the_keyboard_alone(site):
    expect = site["expect"]
    page = _login(site, "sales", "en")
    page.goto(site["url"] + "/app/sales/new")
    seen = [focus_ring(page)]  # the form opens with the focus in its first field
    assert seen[0]["id"] == "partner", seen
    page.keyboard.type("华东", delay=30)  # the customer by part of its name: arrow down, Enter
    expect(page.locator("#partner-list [role=option]").first).to_be_visible()
    page.keyboard.press("ArrowDown")
    page.keyboard.press("Enter")
    expect(page.locator("#partner")).to_have_value("KH001 — 华东贸易有限公司")
    _tab_to(page, "warehouse_id", seen)
    page.keyboard.press("ArrowDown")  # a closed list takes the arrow keys: the second warehouse, SH01
    page.keyboard.press("ArrowDown")
    expect(page.locator("#warehouse_id")).to_have_value(str(site["ids"]["wh"]))
    _tab_to(page, "lines-0-product", seen)
    page.keyboard.type("ls-m", delay=30)
    expect(page.locator("#lines-0-product-list [role=option]").first).to_be_visible()
    page.keyboard.press("ArrowDown")
    page.keyboard.press("Enter")
    expect(page.locator("#lines-0-product")).to_have_value(re.compile("^LS-M8"))
    _tab_to(page, "lines-0-quantity", seen)
    page.keyboard.type("3")
    _tab_to(page, "lines-0-discount_percent", seen)
    page.keyboard.type("10")
    _tab_to(page, "save", seen)
    hidden = [r for r in seen if not r["visible"]]
    assert not hidden, f"focus not drawn on: {hidden}"
    assert len({r["id"] for r in seen}) >= 5, seen
    page.keyboard.press("Enter")
    page.wait_for_url(re.compile(r"/app/sales/\d+$"))
    # 3 x 1,234.50 less 10 % = 3,333.15 + 13 % VAT 433.31
    expect(page.locator("#order-total")).to_have_text("3,766.46")
    page.context.close()
