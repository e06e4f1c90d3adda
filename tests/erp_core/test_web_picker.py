"""The order forms' pickers and live totals through Flask's test client, on both backends: the search
endpoints (folded: any case, any accents; the first N; the list page's permission), a code typed
without JavaScript resolved on the server, and the live totals priced by the service's own rule."""

from __future__ import annotations

import pytest

from tests.erp_core.test_web import WebUser, order_form, text_of


@pytest.fixture
def shop(erp):
    wh, sup = erp.warehouse(), erp.supplier("S1", name="Fournisseur Crème")
    cust = erp.customer("HZ1", name="Hangzhou Tea House")
    other = erp.customer("SH2", name="Shanghai Café")
    tea = erp.post("/products", {"sku": "TEA-1", "name": "Longjing Thé Vert", "sale_price": "100.00",
                                 "tax_code": "VAT13"})["id"]
    cups = [erp.product(f"CUP-{i:02d}", "20.00", "VAT9") for i in range(7)]
    erp.req("PUT", f"/partners/{cust}/prices", json={"product_id": tea, "unit_price": "90.00"}, expect=200)
    erp.req("PUT", f"/partners/{cust}/prices", json={"product_id": tea, "unit_price": "85.00", "min_quantity": "10"},
            expect=200)
    return {"wh": wh, "sup": sup, "cust": cust, "other": other, "tea": tea, "cups": cups}


def test_the_search_finds_by_code_or_name_whatever_the_case_and_accents(erp, shop):
    sales = WebUser(erp, "sales")
    for q in ("thé", "THE VERT", "tea-1", "longjing"):
        items = sales.get(f"/app/search/products?q={q}").json["items"]
        assert [i["label"] for i in items] == ["TEA-1 — Longjing Thé Vert"], q
    body = sales.get("/app/search/products?q=cup").json
    assert [i["code"] for i in body["items"]] == [f"CUP-{i:02d}" for i in range(7)] and body["more"] is False
    assert body["items"][0]["detail"] == "20.00/pcs"
    body = sales.get("/app/search/products?q=cup&limit=5").json  # the first N, and whether there are more
    assert [i["code"] for i in body["items"]] == [f"CUP-{i:02d}" for i in range(5)] and body["more"] is True
    assert sales.get("/app/search/products?q=cup-06&limit=1").json["items"][0]["code"] == "CUP-06"  # equal code first
    assert sales.get("/app/search/products?q=zzz").json == {"items": [], "more": False}
    customers = sales.get("/app/search/partners?role=customer&q=CAFE").json["items"]
    assert [c["label"] for c in customers] == ["SH2 — Shanghai Café"]
    assert sales.get("/app/search/partners?role=customer&q=creme").json["items"] == []  # a supplier
    assert [s["code"] for s in sales.get("/app/search/partners?role=supplier&q=creme").json["items"]] == ["S1"]
    r = WebUser(erp, "warehouse").get("/app/search/partners?q=a")
    assert r.status_code == 403
    assert WebUser(erp, None).get("/app/search/products?q=a").status_code == 302


def test_codes_typed_without_javascript_are_resolved_on_the_server(erp, shop):
    sales = WebUser(erp, "sales")
    form = order_form("", shop["wh"], [{"product": "tea-1", "quantity": "2"},
                                       {"product": "CUP-03 — Product CUP-03", "quantity": "1"}])
    form["partner"] = "hz1"
    page = sales.act("/app/sales/new", form)
    # 2 x the customer's 90.00 = 180.00 + 13 % 23.40; 1 x 20.00 + 9 % 1.80: 225.20
    assert "total 225.20" in text_of(page)
    bad = {**form, "lines-0-product": "NOPE"}
    r = sales.post("/app/sales/new", bad)
    assert r.status_code == 422 and "Line 1: no active product has the code NOPE" in text_of(r.get_data(as_text=True))
    assert 'value="NOPE"' in r.get_data(as_text=True)  # the form comes back as typed
    r = sales.post("/app/sales/new", {**form, "partner": "S1"})  # a supplier is not a customer
    assert r.status_code == 422 and "No active customer has the code S1" in text_of(r.get_data(as_text=True))
    edit = sales.page(page.split('id="edit-order" href="')[1].split('"')[0])
    assert 'value="HZ1 — Hangzhou Tea House"' in edit and 'value="TEA-1 — Longjing Thé Vert"' in edit


def test_live_totals_use_the_customers_price_list_and_the_discount(erp, shop):
    sales = WebUser(erp, "sales")
    q = {"partner_id": str(shop["cust"]), "line_count": "3", "lines-0-product_id": str(shop["tea"]),
         "lines-0-quantity": "12", "lines-0-discount_percent": "10", "lines-1-product": "cup-01",
         "lines-1-quantity": "5", "lines-2-product": "cup-02"}  # line 3: no quantity yet, not priced
    body = sales.get("/app/sales/price", query_string=q).json
    # 12 x 85.00 (the 10+ tier) less 10 % = 918.00 + 13 % 119.34; 5 x 20.00 = 100.00 + 9 % 9.00
    assert body["lines"] == [
        {"row": 0, "unit_price": "85.00", "discount": "10 %", "price": "76.50", "net": "918.00", "tax": "119.34"},
        {"row": 1, "unit_price": "20.00", "discount": "", "price": "20.00", "net": "100.00", "tax": "9.00"}]
    assert (body["net"], body["tax"], body["total"], body["currency"]) == ("1,018.00", "128.34", "1,146.34", "CNY")
    saved = sales.act("/app/sales/new", {**order_form(shop["cust"], shop["wh"], [
        {"product_id": shop["tea"], "quantity": "12", "discount_percent": "10"},
        {"product": "cup-01", "quantity": "5"}])})
    assert "total 1,146.34" in text_of(saved)  # what the live totals showed is what is stored
    assert sales.get("/app/sales/price", query_string={"lines-0-product": "cup-01", "lines-0-quantity": "1"}
                     ).json["message"] == "Pick the customer to see its prices."
    r = sales.get("/app/sales/price", query_string={**q, "lines-1-quantity": "-1"})
    assert r.status_code == 422 and "Line 2" in r.json["error"]
    purchasing = WebUser(erp, "purchasing")
    body = purchasing.get("/app/purchases/price", query_string={
        "partner": "s1", "lines-0-product": "tea-1", "lines-0-quantity": "3", "lines-0-unit_price": "50"}).json
    assert body["total"] == "169.50" and body["lines"][0]["net"] == "150.00"
    assert WebUser(erp, "warehouse").get("/app/sales/price", query_string=q).status_code == 403
