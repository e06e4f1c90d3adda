"""The web pages, through Flask's test client: login and logout, CSRF, permissions, an order taken
from entry to payment by the roles that do each step, errors shown as messages, maintenance."""

from __future__ import annotations

import html
import re

import pytest
from sqlalchemy import func, select

from erp_core import invariants
from erp_core.models import ApiToken, AuditLog, Partner, SalesOrder, User
from tests.conftest import PASSWORD

CSRF_RE = re.compile(r'name="csrf_token" value="([^"]+)"')


def text_of(page: str) -> str:
    """The page's visible text, tags dropped and whitespace collapsed."""
    page = re.sub(r"<(style|script)[^>]*>.*?</\1>", " ", page, flags=re.S)
    return " ".join(html.unescape(re.sub(r"<[^>]+>", " ", page)).split())


class WebUser:
    """A browser session of one user (its own cookie jar), logged in through the form."""

    def __init__(self, erp, username: str | None):
        self.erp = erp
        self.client = erp.app.test_client()
        self.csrf = None
        if username:
            r = self.login(username, PASSWORD)
            assert r.status_code == 303, r.get_data(as_text=True)
            self.csrf = CSRF_RE.search(self.get("/app/").get_data(as_text=True)).group(1)

    def login(self, username, password, **extra):
        page = self.client.get("/app/login").get_data(as_text=True)
        token = CSRF_RE.search(page).group(1)
        return self.client.post("/app/login", data={"username": username, "password": password,
                                                    "csrf_token": token, **extra})

    def get(self, path, **kw):
        return self.client.get(path, **kw)

    def page(self, path, status=200) -> str:
        r = self.client.get(path)
        assert r.status_code == status, (path, r.status_code, text_of(r.get_data(as_text=True))[:500])
        return r.get_data(as_text=True)

    def post(self, path, data=None, *, csrf=True, follow=False):
        data = dict(data or {})
        if csrf:
            data["csrf_token"] = self.csrf
        return self.client.post(path, data=data, follow_redirects=follow)

    def act(self, path, data=None) -> str:
        """POST an action, expect the redirect back, and return the page it lands on."""
        r = self.post(path, data)
        assert r.status_code == 303, (path, r.status_code, text_of(r.get_data(as_text=True))[:500])
        return self.page(r.headers["Location"])


def order_form(customer, warehouse, lines) -> dict:
    data = {"partner_id": str(customer), "warehouse_id": str(warehouse), "line_count": "6", "do": "save"}
    for i, line in enumerate(lines):
        for key, value in line.items():
            data[f"lines-{i}-{key}"] = str(value)
    return data


def buttons(page: str, kind: str = "sales") -> set[str]:
    return set(re.findall(rf'action="/app/{kind}/\d+/(\w+)"', page))


def order_count(erp) -> int:
    with erp.db.session(write=False) as s:
        return s.scalar(select(func.count()).select_from(SalesOrder))


@pytest.fixture
def shop(sqlite_erp):
    """A warehouse, a customer with a price on her list, two products, stock of both."""
    erp = sqlite_erp
    return _shop(erp)


def _shop(erp):
    wh, sup = erp.warehouse(), erp.supplier()
    cust = erp.customer("C1", tax_id="SI12345678", phone="+386 1 234 5678")
    with erp.db.session() as s:  # as the seed does: a user's change would need two finance users
        s.get(Partner, cust).bank_account = "SI56 0123 4567 8901 234"
    a, b = erp.product("A", "100.00", "VAT13"), erp.product("B", "20.00", "VAT9")
    erp.stock_in(sup, wh, [(a, 10, "60.00"), (b, 50, "8.00")])
    erp.req("PUT", f"/partners/{cust}/prices", json={"product_id": b, "unit_price": "18.00"}, expect=200)
    return {"wh": wh, "sup": sup, "cust": cust, "a": a, "b": b}


# ---- login, logout, the session cookie --------------------------------------------------------

def test_root_redirects_and_pages_need_a_login(sqlite_erp):
    anon = WebUser(sqlite_erp, None)
    r = anon.get("/")
    assert r.status_code == 302 and r.headers["Location"].endswith("/app/")
    r = anon.get("/app/sales?state=draft")
    assert r.status_code == 302
    assert r.headers["Location"] == "/app/login?next=/app/sales?state%3Ddraft"
    r = anon.client.post("/app/sales/new", data={"partner_id": "1"})
    assert r.status_code == 302 and r.headers["Location"].startswith("/app/login")
    assert "Log in to the ERP" in text_of(anon.page("/app/login"))


def test_login_sets_a_secure_session_cookie_and_logout_revokes_it(sqlite_erp):
    erp = sqlite_erp
    user = WebUser(erp, None)
    r = user.login("sales", "wrong password")
    assert r.status_code == 401 and "username or password is wrong" in text_of(r.get_data(as_text=True)).lower()
    r = user.login("sales", PASSWORD, next="/app/stock")
    assert r.status_code == 303 and r.headers["Location"] == "/app/stock"
    cookie = r.headers["Set-Cookie"]
    assert cookie.startswith("erp_session=")
    for attribute in ("Secure", "HttpOnly", "SameSite=Lax", "Path=/app"):
        assert attribute in cookie
    assert "Test sales (sales)" in text_of(user.page("/app/"))
    # a next= pointing elsewhere is ignored
    r = WebUser(erp, None).login("sales", PASSWORD, next="//evil.example/app/")
    assert r.headers["Location"] == "/app/"

    user.csrf = CSRF_RE.search(user.page("/app/")).group(1)
    r = user.post("/app/logout")
    assert r.status_code == 303 and r.headers["Location"] == "/app/login"
    assert "You are logged out." in text_of(user.page("/app/login"))
    assert user.get("/app/").status_code == 302
    with erp.db.session(write=False) as s:
        uid = s.scalar(select(User.id).where(User.username == "sales"))
        revoked = s.scalars(select(ApiToken.revoked).where(ApiToken.user_id == uid)).all()
    assert True in revoked


def test_a_revoked_token_ends_the_web_session(sqlite_erp):
    user = WebUser(sqlite_erp, "sales")
    with sqlite_erp.db.session() as s:
        s.execute(ApiToken.__table__.update().values(revoked=True))
    r = user.get("/app/sales")
    assert r.status_code == 302 and r.headers["Location"].startswith("/app/login")
    assert "Your session has ended" in text_of(user.page("/app/login"))


def test_login_is_rate_limited_like_the_api(sqlite_erp):
    user = WebUser(sqlite_erp, None)
    for _ in range(5):
        assert user.login("finance", "not the password").status_code == 401
    r = user.login("finance", PASSWORD)
    assert r.status_code == 429 and "Retry-After" in r.headers
    page = text_of(r.get_data(as_text=True))
    assert "Too many failed logins for 'finance' from this address." in page and "Fix: Wait" in page
    assert "ask an administrator to reset" not in page


def test_posts_without_the_csrf_token_are_refused(sqlite_erp, shop):
    erp = sqlite_erp
    anon = WebUser(erp, None)
    anon.client.get("/app/login")
    r = anon.client.post("/app/login", data={"username": "sales", "password": PASSWORD})
    assert r.status_code == 400 and "Set-Cookie" not in r.headers
    user = WebUser(erp, "sales")
    form = order_form(shop["cust"], shop["wh"], [{"product_id": shop["a"], "quantity": "1"}])
    r = user.post("/app/sales/new", form, csrf=False)
    assert r.status_code == 400 and "Reload the page" in text_of(r.get_data(as_text=True))
    r = user.post("/app/sales/new", {**form, "csrf_token": "forged"}, csrf=False)
    assert r.status_code == 400
    r = user.post("/app/logout", csrf=False)
    assert r.status_code == 400
    assert order_count(erp) == 0
    # the same form with the session's token goes through
    assert user.post("/app/sales/new", form).status_code == 303
    assert order_count(erp) == 1


# ---- the order from entry to payment ------------------------------------------------------------

def test_order_to_cash_through_the_pages(erp):
    shop = _shop(erp)
    sales, warehouse, finance = WebUser(erp, "sales"), WebUser(erp, "warehouse"), WebUser(erp, "finance")

    form_page = sales.page("/app/sales/new")  # pickers that search as one types, not lists of every record
    assert form_page.count('role="combobox"') == 7 and "Product A" not in form_page and "Customer C1" not in form_page
    assert [i["label"] for i in sales.get("/app/search/products?q=product").json["items"]] == ["A — Product A",
                                                                                               "B — Product B"]
    r = sales.post("/app/sales/new", order_form(shop["cust"], shop["wh"], [
        {"product_id": shop["a"], "quantity": "3", "discount_percent": "5"},
        {"product_id": shop["b"], "quantity": "7"},  # no price: 18.00 from the customer's price list
    ]))
    assert r.status_code == 303
    order_url = r.headers["Location"]
    oid = int(order_url.rsplit("/", 1)[1])
    page = sales.page(order_url)
    text = text_of(page)
    # A: 3 x 100 - 5 % = 285.00, VAT 13 % = 37.05; B: 7 x 18 = 126.00, VAT 9 % = 11.34
    assert "Sales order SO000001 saved: net 411.00, tax 48.39, total 459.39." in text
    assert re.search(r'id="order-total">459.39<', page) and "18.00" in text
    assert "draft" in re.search(r'id="order-state"[^>]*>(\w+)<', page).group(1)
    assert buttons(page) == {"confirm", "cancel"}

    page = sales.act(f"/app/sales/{oid}/confirm")
    assert "Sales order SO000001 confirmed." in text_of(page)
    assert re.search(r'id="order-state"[^>]*>confirmed<', page)
    assert buttons(page) == {"cancel"}  # delivering is the warehouse's job

    page = warehouse.page(order_url)
    assert buttons(page) == {"deliver"}
    page = warehouse.act(f"/app/sales/{oid}/deliver", {"warehouse_id": shop["wh"]})
    assert "Sales order SO000001 delivered from WH1." in text_of(page)
    assert buttons(page) == set() and "Nothing for your role to do" in text_of(page)
    stock = text_of(warehouse.page("/app/stock?q=A"))
    assert "A Product A WH1 7 pcs" in stock
    ledger = text_of(warehouse.page(f"/app/stock/products/{shop['a']}"))
    assert "delivery SO000001 WH1 — 3 −3" in ledger and "receipt" in ledger

    page = finance.page(order_url)
    assert buttons(page) == {"invoice"}
    page = finance.act(f"/app/sales/{oid}/invoice")
    assert "Invoice INV000001 issued: total 459.39" in text_of(page)
    inv_id = int(re.search(r'href="/app/invoices/(\d+)"', page).group(1))
    listing = finance.page("/app/invoices?state=unpaid")
    assert f'action="/app/invoices/{inv_id}/payments"' in listing and 'value="459.39"' in listing

    page = text_of(finance.act(f"/app/invoices/{inv_id}/payments", {"amount": "500.00", "return_to": "invoice"}))
    assert "Payment 500.00 exceeds the 459.39 outstanding on INV000001 Fix: Pay at most 459.39." in page
    page = text_of(finance.act(f"/app/invoices/{inv_id}/payments", {"amount": "lots", "return_to": "invoice"}))
    assert "Amount: must be a decimal above 0" in page
    page = finance.act(f"/app/invoices/{inv_id}/payments", {"amount": "400.00", "method": "bank",
                                                            "return_to": "invoice"})
    assert "Payment PAY000001 of 400.00 registered on INV000001; 59.39 is still outstanding." in text_of(page)
    assert re.search(r'id="invoice-state"[^>]*>partial<', page)
    r = finance.post(f"/app/invoices/{inv_id}/payments", {"amount": "59.39", "return_to": "list"})
    assert r.status_code == 303 and r.headers["Location"] == "/app/invoices?state=unpaid"
    assert "it is paid in full" in text_of(finance.page(r.headers["Location"]))
    assert re.search(r'id="order-state"[^>]*>paid<', finance.page(order_url))

    # the reports show the sale
    tb = finance.page("/app/reports/trial-balance")
    assert re.search(r'id="tb-balance">0.00<', tb)
    assert "6001 Revenue" in text_of(tb) or "6001" in tb
    assert re.search(r'id="net-profit">', finance.page("/app/reports/profit-and-loss"))
    bs = finance.page("/app/reports/balance-sheet")
    assert "Assets equal liabilities plus equity." in text_of(bs)
    dash = text_of(finance.page("/app/"))
    assert "Open receivables and payables" in dash
    with erp.db.session(write=False) as s:
        assert invariants.check_all(s) == []
        actors = dict(s.execute(select(AuditLog.entity, AuditLog.actor).where(
            AuditLog.action == "create", AuditLog.entity.in_(("sales_orders", "invoices", "payments")))).all())
    assert actors == {"sales_orders": "sales", "invoices": "finance", "payments": "finance"}


def test_purchase_order_through_the_pages(sqlite_erp):
    erp = sqlite_erp
    wh, sup = erp.warehouse(), erp.supplier()
    p = erp.product("BOLT", "12.00")
    purchasing, warehouse, finance = (WebUser(erp, r) for r in ("purchasing", "warehouse", "finance"))
    form = order_form(sup, wh, [{"product_id": p, "quantity": "100"}])
    form["partner_id"] = str(sup)
    r = purchasing.post("/app/purchases/new", form)
    assert r.status_code == 422 and "No unit_price for BOLT" in text_of(r.get_data(as_text=True))
    form["lines-0-unit_price"], form["lines-0-discount_percent"] = "5.00", "10"
    r = purchasing.post("/app/purchases/new", form)
    assert r.status_code == 303
    url = r.headers["Location"]
    oid = int(url.rsplit("/", 1)[1])
    page = purchasing.page(url)
    assert re.search(r'id="order-total">508.50<', page) and buttons(page, "purchases") == {"confirm", "cancel"}
    purchasing.act(f"/app/purchases/{oid}/confirm")
    assert buttons(warehouse.page(url), "purchases") == {"receive"}
    page = warehouse.act(f"/app/purchases/{oid}/receive")
    assert "received into stock" in text_of(page)
    page = finance.act(f"/app/purchases/{oid}/bill", {"supplier_reference": "INV-77"})
    assert "Supplier bill BILL000001 booked: total 508.50" in text_of(page)
    assert "BILL000001" in text_of(finance.page("/app/invoices?kind=supplier"))
    assert "PO000001" in text_of(purchasing.page("/app/purchases?state=billed"))
    assert "PO000001" not in text_of(purchasing.page("/app/purchases?state=draft"))


# ---- errors are messages with a fix -------------------------------------------------------------

def test_service_errors_are_shown_with_their_fix(sqlite_erp, shop):
    erp = sqlite_erp
    sales, warehouse = WebUser(erp, "sales"), WebUser(erp, "warehouse")
    # a bad line: the form comes back with the input and the message, nothing is saved
    r = sales.post("/app/sales/new", order_form(shop["cust"], shop["wh"], [
        {"product_id": shop["a"], "quantity": "2"}, {"product_id": shop["b"], "quantity": "-1"}]))
    assert r.status_code == 422
    page = r.get_data(as_text=True)
    assert "Line 2, quantity: must be a decimal above 0" in text_of(page)
    assert 'name="lines-1-quantity" id="lines-1-quantity" value="-1"' in page
    r = sales.post("/app/sales/new", order_form(shop["cust"], shop["wh"], [{"quantity": "2"}]))
    assert r.status_code == 422 and "Line 1 has figures but no product" in text_of(r.get_data(as_text=True))
    assert order_count(erp) == 0

    # more than is on hand: the service's InsufficientStock, shown on the order page
    r = sales.post("/app/sales/new", order_form(shop["cust"], shop["wh"], [
        {"product_id": shop["a"], "quantity": "11"}]))
    oid = int(r.headers["Location"].rsplit("/", 1)[1])
    sales.act(f"/app/sales/{oid}/confirm")
    page = text_of(warehouse.act(f"/app/sales/{oid}/deliver", {"warehouse_id": shop["wh"]}))
    assert "Only 10.000 pcs of A on hand in warehouse" in page
    assert "Fix: Receive or transfer stock into this warehouse first, or reduce the quantity." in page
    assert "confirmed" in page
    # a transition the state does not allow (an old page, a double click)
    page = text_of(sales.act(f"/app/sales/{oid}/confirm"))
    assert "Cannot confirm a sales order that is confirmed; allowed from confirmed: cancel, deliver" in page
    # the order can still be cancelled, after which nothing is left to do
    page = sales.act(f"/app/sales/{oid}/cancel")
    assert "Sales order SO000001 cancelled." in text_of(page) and buttons(page) == set()


def test_preview_prices_the_order_without_saving_it(sqlite_erp, shop):
    erp = sqlite_erp
    sales = WebUser(erp, "sales")
    form = order_form(shop["cust"], shop["wh"], [{"product_id": shop["b"], "quantity": "10"}])
    r = sales.post("/app/sales/new", {**form, "do": "preview"})
    assert r.status_code == 200
    page = r.get_data(as_text=True)
    assert "Preview (not saved)" in text_of(page) and re.search(r'id="preview-total">196.20<', page)
    r = sales.post("/app/sales/new", {**form, "do": "more"})
    assert r.get_data(as_text=True).count('name="lines-11-quantity"') == 1
    assert order_count(erp) == 0
    r = sales.post("/app/sales/new", form)
    assert "SO000001" in text_of(sales.page(r.headers["Location"]))  # the preview used no number


def test_an_order_in_another_currency_is_entered_previewed_and_saved_from_the_form(sqlite_erp, shop):
    """The currency and its rate on the form: without a rate the form comes back saying so (nothing
    saved); the preview shows the order's currency and the company's; the saved order has both."""
    erp = sqlite_erp
    sales = WebUser(erp, "sales")
    form = {**order_form(shop["cust"], shop["wh"], [{"product_id": shop["b"], "quantity": "10"}]), "currency": "usd"}
    r = sales.post("/app/sales/new", form)
    page = r.get_data(as_text=True)
    assert r.status_code == 422 and "An order in USD needs an exchange rate" in text_of(page)
    assert 'id="currency" value="USD"' in page and order_count(erp) == 0
    page = sales.post("/app/sales/new", {**form, "exchange_rate": "0"}).get_data(as_text=True)
    assert "Exchange rate: must be a decimal above 0" in text_of(page) and order_count(erp) == 0

    form["exchange_rate"] = "2"  # the customer's 18.00 CNY for B is 9.00 USD; 10 at VAT 9 %
    page = sales.post("/app/sales/new", {**form, "do": "preview"}).get_data(as_text=True)
    assert "Preview (not saved), in USD" in text_of(page)
    assert re.search(r'id="preview-total">98.10<', page) and re.search(r'id="preview-total-company">196.20<', page)
    r = sales.post("/app/sales/new", form)
    assert r.status_code == 303
    assert "USD at 2.000000 CNY" in text_of(sales.page(r.headers["Location"]))
    order = erp.get(f"/sales-orders/{r.headers['Location'].rsplit('/', 1)[1]}")
    assert (order["currency"], order["exchange_rate"], order["gross_total_currency"], order["gross_total"]) == \
        ("USD", "2.000000", "98.10", "196.20")


# ---- permissions ----------------------------------------------------------------------------------

@pytest.mark.parametrize("role,path", [
    ("warehouse", "/app/invoices"), ("warehouse", "/app/reports/trial-balance"), ("warehouse", "/app/partners"),
    ("sales", "/app/purchases"), ("sales", "/app/invoices"), ("purchasing", "/app/sales"),
    ("finance", "/app/sales/new"), ("auditor", "/app/sales/new"),
])
def test_a_role_without_the_permission_gets_403(sqlite_erp, role, path):
    page = text_of(WebUser(sqlite_erp, role).page(path, status=403))
    assert f"Your role '{role}' may not" in page and "Ask an administrator for a role with" in page


def test_actions_check_the_permission_too(sqlite_erp, shop):
    erp = sqlite_erp
    so = erp.post("/sales-orders", {"partner_id": shop["cust"], "warehouse_id": shop["wh"],
                                    "lines": [{"product_id": shop["a"], "quantity": "1"}]}, role="sales")
    erp.post(f"/sales-orders/{so['id']}/confirm", role="sales", expect=200)
    sales, warehouse, auditor = WebUser(erp, "sales"), WebUser(erp, "warehouse"), WebUser(erp, "auditor")
    assert sales.post(f"/app/sales/{so['id']}/deliver", {"warehouse_id": shop["wh"]}).status_code == 403
    assert warehouse.post(f"/app/sales/{so['id']}/cancel").status_code == 403
    assert warehouse.post("/app/sales/new", order_form(shop["cust"], shop["wh"], [])).status_code == 403
    assert auditor.post(f"/app/sales/{so['id']}/invoice").status_code == 403
    assert buttons(auditor.page(f"/app/sales/{so['id']}")) == set()
    assert erp.get(f"/sales-orders/{so['id']}")["state"] == "confirmed"
    # the menu shows only what the role may open
    nav = warehouse.page("/app/")
    assert 'href="/app/stock"' in nav and 'href="/app/invoices"' not in nav and 'href="/app/purchases"' in nav


def test_sensitive_partner_fields_are_masked_without_the_permission(sqlite_erp, shop):
    erp = sqlite_erp
    so = erp.post("/sales-orders", {"partner_id": shop["cust"], "warehouse_id": shop["wh"],
                                    "lines": [{"product_id": shop["a"], "quantity": "1"}]}, role="sales")
    sales, finance = WebUser(erp, "sales"), WebUser(erp, "finance")
    page = text_of(sales.page(f"/app/sales/{so['id']}"))
    assert "SI12345678" not in page and "******5678" in page and "+386 1 234 5678" not in page
    page = text_of(finance.page(f"/app/sales/{so['id']}"))
    assert "SI12345678" in page and "+386 1 234 5678" in page
    listing = text_of(sales.page("/app/partners?kind=customer"))
    assert "SI12345678" not in listing and "SI56 0123" not in listing and "masked for your role" in listing
    assert "SI56 0123 4567 8901 234" in text_of(finance.page("/app/partners"))


# ---- maintenance, unknown pages -------------------------------------------------------------------

def test_maintenance_blocks_web_writes_with_a_message(sqlite_erp, shop):
    erp = sqlite_erp
    sales = WebUser(erp, "sales")
    erp.req("PUT", "/system/maintenance", json={"enabled": True, "reason": "upgrade to 1.1"}, expect=200)
    r = sales.post("/app/sales/new", order_form(shop["cust"], shop["wh"], [{"product_id": shop["a"], "quantity": "1"}]))
    assert r.status_code == 303 and r.headers["Location"] == "/app/sales/new"
    page = text_of(sales.page("/app/sales/new"))
    assert "The ERP is read-only for maintenance: upgrade to 1.1; nothing was changed." in page
    assert "Fix: Retry after the maintenance window." in page
    assert "Read-only: the ERP is in maintenance (upgrade to 1.1)" in page
    assert order_count(erp) == 0
    assert "Sales orders" in text_of(sales.page("/app/sales"))  # reading still works
    assert WebUser(erp, "finance").csrf  # so does logging in
    erp.req("PUT", "/system/maintenance", json={"enabled": False}, expect=200)
    assert sales.post("/app/sales/new", order_form(shop["cust"], shop["wh"], [
        {"product_id": shop["a"], "quantity": "1"}])).status_code == 303
    assert order_count(erp) == 1


def test_unknown_pages_and_ids_are_html_404s(sqlite_erp):
    user = WebUser(sqlite_erp, "admin")
    for path in ("/app/nowhere", "/app/sales/424242", "/app/sales/99999999999", "/app/invoices/7",
                 "/app/stock/products/9"):
        r = user.get(path)
        assert r.status_code == 404 and r.mimetype == "text/html", path
        assert "Back to the dashboard" in text_of(r.get_data(as_text=True))
    r = user.get("/app/reports/balance-sheet?as_of=yesterday")
    assert r.status_code == 200 and "'yesterday' is not a date" in text_of(r.get_data(as_text=True))


def test_pages_send_security_headers(sqlite_erp):
    r = WebUser(sqlite_erp, "admin").get("/app/")
    csp = r.headers["Content-Security-Policy"]
    assert "default-src 'none'" in csp and "frame-ancestors 'none'" in csp and "unsafe-inline" not in csp
    nonce = re.search(r"'nonce-([^']+)'", csp).group(1)
    assert f"script-src 'nonce-{nonce}'" in csp and "connect-src 'self'" in csp  # only the pages' own scripts
    assert f'<style nonce="{nonce}">' in r.get_data(as_text=True)
    assert r.headers["X-Frame-Options"] == "DENY" and r.headers["Cache-Control"] == "no-store"
