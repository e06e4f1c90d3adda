"""The master-data pages through Flask's test client: customers and suppliers created, edited and
deactivated (bank details left alone), products with their reorder level, a customer's price list
used by a new order; every problem of a form marked on its field; and no form answering 500 to
hostile input (empty, overlong, wrong type, script-bearing), on SQLite and PostgreSQL."""

from __future__ import annotations

import re

import pytest

from erp_core.services import auth
from tests.conftest import PASSWORD
from tests.erp_core.test_web import WebUser, text_of


def _partner_form(**kw) -> dict:
    data = {"code": "C9", "name": "Acme Trading", "is_customer": "on", "email": "buy@acme.example",
            "address": "1 Harbour Road", "tax_id": "91310000MA1FL0001", "phone": "+86 21 5555 0101",
            "payment_terms_days": "45"}
    data.update(kw)
    return {k: v for k, v in data.items() if v is not None}


def _product_form(wh, **kw) -> dict:
    data = {"sku": "W-1", "name": "Widget", "unit": "box", "sale_price": "12.50", "tax_code": "VAT13",
            "reorder_warehouse_id": str(wh), "reorder_min": "5", "reorder_quantity": "20"}
    data.update(kw)
    return data


def _saved(user, path, data) -> str:
    r = user.post(path, data)
    assert r.status_code == 303, (path, r.status_code, text_of(r.get_data(as_text=True))[:800])
    return user.page(r.headers["Location"])


def test_a_clerk_creates_edits_and_deactivates_a_customer_without_touching_bank_details(sqlite_erp):
    erp = sqlite_erp
    erp.warehouse()
    sales = WebUser(erp, "sales")
    assert "New customer" in text_of(sales.page("/app/partners"))
    page = text_of(_saved(sales, "/app/partners/new", _partner_form()))
    assert "C9 — Acme Trading saved." in page and "45 d" in page
    cid = erp.get("/partners", query={"q": "C9"})["items"][0]["id"]
    # the bank account is set elsewhere (finance asks, a second finance user approves); the page shows it
    # but never sends it
    with erp.db.session() as s:
        auth.add_user(s, "finance2", PASSWORD, "finance", full_name="Second finance")
    change = erp.post(f"/partners/{cid}/bank-account-changes", {"bank_account": "CN12 3456 7890"}, role="finance")
    erp.post(f"/bank-account-changes/{change['id']}/approve", role="finance2", expect=200)

    form = sales.page(f"/app/partners/{cid}/edit")
    assert 'name="bank_account"' not in form
    assert re.search(r'id="tax_id"[^>]*value=""', form), "a role that may not read the tax id gets it blank"
    _saved(sales, f"/app/partners/{cid}/edit", _partner_form(code=None, name="Acme Trading Ltd", tax_id="",
                                                             phone="", payment_terms_days="60"))
    stored = erp.get(f"/partners/{cid}")
    assert (stored["name"], stored["payment_terms_days"]) == ("Acme Trading Ltd", 60)
    assert (stored["tax_id"], stored["phone"], stored["bank_account"]) == \
        ("91310000MA1FL0001", "+86 21 5555 0101", "CN12 3456 7890"), "blank masked fields keep their values"

    finance_sees = WebUser(erp, "admin").page(f"/app/partners/{cid}/edit")
    assert 'value="91310000MA1FL0001"' in finance_sees
    assert f'value="C9"' in finance_sees and "readonly" in finance_sees

    page = text_of(sales.act(f"/app/partners/{cid}/active", {"active": "0"}))
    assert "C9 is deactivated" in page and "(inactive)" in page
    assert f'value="{cid}"' not in sales.page("/app/sales/new").split('id="partner_id"')[1].split("</select>")[0]
    assert "C9 is active again." in text_of(sales.act(f"/app/partners/{cid}/active", {"active": "1"}))
    assert erp.get(f"/partners/{cid}")["active"] is True


def test_products_with_a_reorder_level_and_a_customer_price_used_by_an_order(sqlite_erp):
    erp = sqlite_erp
    wh, cust = erp.warehouse(), erp.customer("C1")
    purchasing, sales = WebUser(erp, "purchasing"), WebUser(erp, "sales")
    assert sales.get("/app/products/new").status_code == 403, "sales staff may not create products"
    page = text_of(_saved(purchasing, "/app/products/new", _product_form(wh)))
    assert "Product W-1 saved." in page and "WH1: below 5 order 20" in page and "12.50" in page
    pid = erp.get("/products", query={"q": "W-1"})["items"][0]["id"]
    page = text_of(_saved(purchasing, f"/app/products/{pid}/edit",
                          _product_form(wh, sku="ignored", sale_price="13.00", reorder_min="8", reorder_quantity="30")))
    assert "WH1: below 8 order 30" in page and "13.00" in page
    assert erp.get(f"/products/{pid}")["sku"] == "W-1"

    page = text_of(_saved(sales, f"/app/partners/{cust}/prices", {"sku": "w-1", "unit_price": "11.20"}))
    assert "Price of W-1 for C1 saved." in page and "11.20" in page
    page = text_of(_saved(sales, f"/app/partners/{cust}/prices",
                          {"sku": "W-1", "unit_price": "10.00", "min_quantity": "10"}))
    assert "11.20" in page and "10.00" in page
    order = erp.post("/sales-orders", {"partner_id": cust, "warehouse_id": wh, "lines": [
        {"product_id": pid, "quantity": "2"}, {"product_id": pid, "quantity": "12"}]}, role="sales")
    assert [line["unit_price"] for line in order["lines"]] == ["11.20", "10.00"]

    page = text_of(purchasing.act(f"/app/products/{pid}/active", {"active": "0"}))
    assert "Product W-1 is deactivated" in page
    r = sales.post(f"/app/partners/{cust}/prices", {"sku": "W-1", "unit_price": "9"})
    assert r.status_code == 422 and "no active product with SKU" in text_of(r.get_data(as_text=True))


def test_every_problem_of_a_form_is_marked_on_its_field(sqlite_erp):
    erp = sqlite_erp
    wh = erp.warehouse()
    admin = WebUser(erp, "admin")
    r = admin.post("/app/partners/new", _partner_form(code="bad code", name="", email="not-an-email",
                                                      payment_terms_days="forty"))
    page = r.get_data(as_text=True)
    assert r.status_code == 422
    marked = set(re.findall(r'id="(\w+)"[^>]*aria-invalid="true"', page))
    assert marked == {"code", "name", "email", "payment_terms_days"}
    assert 'value="bad code"' in page and 'value="forty"' in page, "what was typed is shown again"
    r = admin.post("/app/products/new", _product_form(wh, sku="", sale_price="-1", reorder_min="5",
                                                      reorder_quantity=""))
    page = r.get_data(as_text=True)
    assert r.status_code == 422
    assert {"sku", "sale_price"} <= set(re.findall(r'id="(\w+)"[^>]*aria-invalid="true"', page))
    r = admin.post("/app/products/new", _product_form(wh, reorder_quantity=""))
    assert r.status_code == 422
    assert set(re.findall(r'id="(\w+)"[^>]*aria-invalid="true"', r.get_data(as_text=True))) == {"reorder_quantity"}
    assert erp.get("/products")["total"] == 0, "a refused form stores nothing, not even the product"
    r = admin.post("/app/partners/new", _partner_form(is_customer=None))
    assert r.status_code == 422 and "must be a customer, a supplier or both" in text_of(r.get_data(as_text=True))
    _saved(admin, "/app/partners/new", _partner_form())
    r = admin.post("/app/partners/new", _partner_form(code="c9"))
    assert r.status_code == 409 and 'id="code"' in r.get_data(as_text=True)


SCRIPT = "<script>alert('x')</script>"
HOSTILE = ["", "   ", "x" * 5000, SCRIPT, '"><img src=x onerror=alert(1)>', "-1", "1e9999", "NaN", "0x1F",
           "１２", "2147483648", "99999999999999999999.999", "a\x00b", "'; DROP TABLE partners; --", "客户"]


# one value of each kind (empty, overlong, script, markup, negative, huge, out of range, NUL, wrong type, CJK)
# for the forms of the stock and user pages, which add no new kind of field
COMPACT = ["", "x" * 5000, SCRIPT, '"><img src=x onerror=alert(1)>', "-1", "1e9999", "2147483648", "a\x00b",
           "１２", "客户"]


def _forms(erp, wh, cust, pid):
    """Every form: (path, valid data, values tried in each field). {n} in a value makes it unique per post."""
    wh2 = erp.warehouse("WH2")
    uid = erp.post("/users", {"username": "hostile", "password": "Hostile-pass-2024!", "role": "sales"})["id"]
    return [
        ("/app/partners/new", _partner_form(code="H{n}"), HOSTILE),
        (f"/app/partners/{cust}/edit", _partner_form(code=None), HOSTILE),
        (f"/app/partners/{cust}/active", {"active": "0"}, HOSTILE),
        (f"/app/partners/{cust}/prices", {"sku": "P1", "unit_price": "9.50", "min_quantity": "0"}, HOSTILE),
        ("/app/products/new", _product_form(wh, sku="H{n}"), HOSTILE),
        (f"/app/products/{pid}/edit", _product_form(wh, sku=None), HOSTILE),
        (f"/app/products/{pid}/active", {"active": "1"}, HOSTILE),
        ("/app/warehouses/new", {"code": "H{n}", "name": "Hostile", "address": ""}, COMPACT),
        (f"/app/warehouses/{wh2}/edit", {"name": "Second", "address": "2 Dock"}, COMPACT),
        ("/app/stock/transfers/new", {"sku": "P1", "quantity": "1", "from_warehouse_id": str(wh),
                                      "to_warehouse_id": str(wh2), "reference": "r"}, COMPACT),
        ("/app/stocktakes/new", {"warehouse_id": str(wh), f"count-{pid}": "3"}, COMPACT),
        ("/app/stock/reorder-rules", {"sku": "P1", "warehouse_id": str(wh2), "min_quantity": "2",
                                      "reorder_quantity": "5"}, COMPACT),
        ("/app/users/new", {"username": "h{n}", "full_name": "H", "role": "sales"}, COMPACT),
        (f"/app/users/{uid}/role", {"role": "warehouse"}, COMPACT),
        (f"/app/users/{uid}/active", {"active": "1"}, COMPACT),
    ]


# forms whose every field takes any text (a name, an address): script-bearing values are stored as text
TAKES_ANY_TEXT = ("/warehouses/2/edit",)
# forms that go back to the list with a message when the record they belong to is not given
BACK_TO_LIST = ("/app/stocktakes/new",)


@pytest.mark.parametrize("backend", ["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def test_no_form_answers_500_and_script_values_come_back_escaped(erp):
    wh, cust, pid = erp.warehouse(), erp.customer("C1"), erp.product("P1")
    admin = WebUser(erp, "admin")
    n = 0
    for path, valid, values in _forms(erp, wh, cust, pid):
        fields = list(valid) + ["unknown_field"]
        for field in fields:
            for value in values:
                n += 1
                data = {k: (v or "").replace("{n}", str(n)) for k, v in valid.items() if v is not None}
                data[field] = value
                r = admin.post(path, data)
                body = r.get_data(as_text=True)
                assert r.status_code < 500 and r.status_code in (200, 303, 400, 404, 409, 422), \
                    (path, field, value[:40], r.status_code, text_of(body)[:300])
                assert "<script>alert" not in body and "<img src=x" not in body, (path, field)
        # every field script-bearing at once: refused, and the values are shown back escaped
        r = admin.post(path, {k: SCRIPT for k in valid})
        body = r.get_data(as_text=True)
        assert r.status_code < 500 and "<script>alert" not in body, (path, r.status_code)
        refuses = path.endswith(("/new", "/edit", "/prices", "/reorder-rules"))
        if refuses and not path.endswith(TAKES_ANY_TEXT + BACK_TO_LIST):
            assert r.status_code == 422 and "&lt;script&gt;alert(" in body, (path, r.status_code)
    for path in ("/app/partners", "/app/products", f"/app/partners/{cust}/prices", f"/app/partners/{cust}/edit",
                 f"/app/products/{pid}/edit", "/app/warehouses", "/app/stock/transfers", "/app/stocktakes",
                 "/app/users", "/app/stocktakes/1", "/app/warehouses/2/edit", "/app/stock/reorder-rules"):
        assert "<script>alert" not in admin.page(path)


def test_every_problem_of_a_form_is_shown_in_chinese_on_its_field(sqlite_erp):
    erp = sqlite_erp
    erp.warehouse()
    admin = WebUser(erp, "admin")
    admin.post("/app/account/language", {"locale": "zh_Hans"})
    r = admin.post("/app/partners/new", _partner_form(code="bad code", name="", email="not-an-email",
                                                      payment_terms_days="forty"))
    page = r.get_data(as_text=True)
    assert r.status_code == 422
    messages = dict(re.findall(r'<span class="field-error" id="(\w+)-error">([^<]*)</span>', page))
    assert set(messages) == {"code", "name", "email", "payment_terms_days"}
    for field in messages:
        assert re.search(rf'id="{field}"[^>]*aria-invalid="true" aria-describedby="{field}-error"', page), field
    assert messages["code"] == "含有此处不允许的字符" and messages["name"] == "不能为空"
    assert messages["email"] == "必须是电子邮件地址，例如 name@example.com"
    assert messages["payment_terms_days"] == "必须是整数，例如 42"
    assert not re.search(r"[A-Za-z]{4,}", "".join(messages.values()).replace("name@example.com", "")), messages
    r = admin.post("/app/users/new", {"username": "a b", "full_name": "x" * 200, "role": "king"})
    messages = dict(re.findall(r'<span class="field-error" id="(\w+)-error">([^<]*)</span>', r.get_data(as_text=True)))
    assert messages == {"username": "含有此处不允许的字符", "full_name": "不能超过 120 个字符",
                        "role": "必须是以下之一：&#39;admin&#39;, &#39;sales&#39;, &#39;purchasing&#39;, "
                                "&#39;warehouse&#39;, &#39;finance&#39;, &#39;auditor&#39;"}, messages
