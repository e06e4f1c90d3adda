"""The API's consistency, as a client sees it: a draft order edited with PATCH (409 once past draft),
orders searched, sorted and filtered by date, journal entries by account, /stock/low paged like the
other lists, numbers the same on create and on read, 201 with a Location to read the new resource
from, malformed JSON answered 400, invoices with what is outstanding; and the OpenAPI document
describing all of it."""

from __future__ import annotations

import datetime as dt
import re

import pytest

from erp_core.domain.journal import INVENTORY
from erp_core.models import SalesOrder

BOTH = pytest.mark.parametrize("backend", ["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])


def _setup(erp):
    wh, sup = erp.warehouse(), erp.supplier("S1")
    cust, other = erp.customer("C1"), erp.customer("ZED")
    a, b = erp.product("A", "100.00"), erp.product("B", "20.00")
    erp.stock_in(sup, wh, [(a, 10, "60.00"), (b, 50, "8.00")])
    return wh, sup, cust, other, a, b


@BOTH
def test_a_draft_order_is_edited_with_patch_and_refused_once_confirmed(erp):
    wh, sup, cust, other, a, b = _setup(erp)
    so = erp.post("/sales-orders", {"partner_id": cust, "warehouse_id": wh,
                                    "lines": [{"product_id": a, "quantity": "1"}]}, role="sales")
    r = erp.req("PATCH", f"/sales-orders/{so['id']}", json={"notes": "call first"}, role="sales", expect=200)
    assert r.json["notes"] == "call first" and r.json["gross_total"] == so["gross_total"], "lines kept"
    r = erp.req("PATCH", f"/sales-orders/{so['id']}", role="sales", expect=200,
                json={"partner_id": other, "lines": [{"product_id": b, "quantity": "3", "unit_price": "15.00"}]})
    assert r.json["partner_id"] == other and r.json["net_total"] == "45.00" and len(r.json["lines"]) == 1
    assert erp.get(f"/sales-orders/{so['id']}") == r.json, "what PATCH answers is what a read gives"
    r = erp.req("PATCH", f"/sales-orders/{so['id']}", json={"lines": []}, role="sales", expect=422)
    assert r.json["field"] == "lines"
    erp.post(f"/sales-orders/{so['id']}/confirm", role="sales", expect=200)
    r = erp.req("PATCH", f"/sales-orders/{so['id']}", json={"notes": "late"}, role="sales", expect=409)
    assert "only a draft can be edited" in r.json["detail"] and r.json["fix"]
    assert erp.req("PATCH", f"/sales-orders/{so['id']}", json={"notes": "x"}, role="warehouse").status_code == 403

    po = erp.post("/purchase-orders", {"partner_id": sup, "warehouse_id": wh, "lines": [
        {"product_id": a, "quantity": "2", "unit_price": "50.00"}]}, role="purchasing")
    r = erp.req("PATCH", f"/purchase-orders/{po['id']}", role="purchasing", expect=200,
                json={"lines": [{"product_id": a, "quantity": "4", "unit_price": "49.50"}]})
    assert r.json["net_total"] == "198.00" and r.json["lines"][0]["quantity"] == "4.000"
    r = erp.req("PATCH", f"/purchase-orders/{po['id']}", json={"partner_id": cust}, role="purchasing", expect=422)
    assert r.json["field"] == "partner_id", "a customer is not a supplier"
    erp.post(f"/purchase-orders/{po['id']}/cancel", role="purchasing", expect=200)
    erp.req("PATCH", f"/purchase-orders/{po['id']}", json={"notes": "x"}, role="purchasing", expect=409)


def test_orders_are_searched_sorted_and_filtered_by_date(sqlite_erp):
    erp = sqlite_erp
    wh, sup, cust, other, a, b = _setup(erp)
    ids = [erp.post("/sales-orders", {"partner_id": p, "warehouse_id": wh,
                                      "lines": [{"product_id": a, "quantity": q}]}, role="sales")["id"]
           for p, q in ((cust, "1"), (other, "3"), (cust, "2"))]
    with erp.db.session() as s:  # three order days
        for i, day in zip(ids, (dt.datetime(2025, 1, 5, 12), dt.datetime(2025, 2, 5, 12), dt.datetime(2025, 3, 5, 12))):
            s.get(SalesOrder, i).order_date = day.replace(tzinfo=dt.timezone.utc)
    got = lambda **q: [o["id"] for o in erp.get("/sales-orders", query=q)["items"]]  # noqa: E731
    assert got() == ids[::-1]
    assert got(q="zed") == [ids[1]] and got(q="Customer C1") == [ids[2], ids[0]]
    assert got(q=erp.get(f"/sales-orders/{ids[2]}")["number"]) == [ids[2]]
    assert got(sort="gross_total") == [ids[0], ids[2], ids[1]] and got(sort="-order_date") == ids[::-1]
    assert got(date_from="2025-02-01") == [ids[2], ids[1]] and got(date_to="2025-02-05") == [ids[1], ids[0]]
    assert got(date_from="2025-02-05", date_to="2025-02-05") == [ids[1]]
    assert got(date_from="1970-01-01", date_to="9999-12-31") == ids[::-1], "the last day there is"
    for bad in ({"sort": "partner"}, {"date_from": "yesterday"}, {"q": ""}):
        r = erp.req("GET", "/sales-orders", query=bad)
        assert r.status_code == 422 and r.json["field"] == next(iter(bad)), bad
    assert erp.get("/purchase-orders", query={"q": "S1"})["total"] == 1


def test_journal_entries_by_account_and_stock_low_paged(sqlite_erp):
    erp = sqlite_erp
    wh, sup, cust, other, a, b = _setup(erp)
    everything = erp.get("/journal-entries", role="finance")["total"]
    stock = erp.get("/journal-entries", query={"account": INVENTORY}, role="finance")
    assert 1 <= stock["total"] <= everything
    assert all(any(line["account_code"] == INVENTORY for line in e["lines"]) for e in stock["items"])
    assert erp.get("/journal-entries", query={"account": "9999"}, role="finance")["total"] == 0
    for p in (a, b):
        erp.req("PUT", "/stock/reorder-rules", json={"product_id": p, "warehouse_id": wh, "min_quantity": "100",
                                                     "reorder_quantity": "5"}, expect=200)
    low = erp.get("/stock/low", query={"limit": 1})
    assert (low["total"], low["limit"], low["offset"], len(low["items"])) == (2, 1, 0, 1)
    assert low["items"][0]["sku"] == "A" and low["items"][0]["suggested_quantity"] == "90.000"
    assert erp.get("/stock/low", query={"offset": 1})["items"][0]["sku"] == "B"


@BOTH
def test_created_resources_read_back_the_same_from_their_location(erp):
    wh, sup, cust, other, a, b = _setup(erp)
    for path, body in (("/products", {"sku": "N1", "name": "N", "sale_price": "12.5", "tax_code": "VAT13"}),
                       ("/partners", {"code": "C7", "name": "Seven", "is_customer": True}),
                       ("/warehouses", {"code": "W7", "name": "Seven"}),
                       ("/sales-orders", {"partner_id": cust, "warehouse_id": wh,
                                          "lines": [{"product_id": a, "quantity": "2", "unit_price": "99.5"}]}),
                       ("/stocktakes", {"warehouse_id": wh, "counts": [{"product_id": a, "counted_quantity": "7"}]})):
        r = erp.req("POST", path, json=body, expect=201)
        assert r.headers["Location"] == f"/api/v1{path}/{r.json['id']}", path
        assert erp.get(r.headers["Location"].removeprefix("/api/v1")) == r.json, path
    created = erp.req("POST", "/products", json={"sku": "N2", "name": "N", "sale_price": "3"}, expect=201).json
    assert created["sale_price"] == "3.00"
    rule = erp.req("PUT", "/stock/reorder-rules", json={"product_id": a, "warehouse_id": wh, "min_quantity": "5",
                                                        "reorder_quantity": "2"}, expect=200).json
    assert rule["min_quantity"] == "5.000" and erp.get("/stock/reorder-rules")["items"] == [rule]


def test_invoices_carry_what_is_outstanding(sqlite_erp):
    erp = sqlite_erp
    wh, sup, cust, other, a, b = _setup(erp)
    so = erp.post("/sales-orders", {"partner_id": cust, "warehouse_id": wh,
                                    "lines": [{"product_id": a, "quantity": "1"}]}, role="sales")
    erp.post(f"/sales-orders/{so['id']}/confirm", role="sales", expect=200)
    erp.post(f"/sales-orders/{so['id']}/deliver", {}, role="warehouse", expect=200)
    r = erp.req("POST", f"/sales-orders/{so['id']}/invoice", role="finance", expect=201)
    inv = r.json
    assert r.headers["Location"] == f"/api/v1/invoices/{inv['id']}"
    assert inv["outstanding"] == inv["gross_total"] == "113.00"
    erp.post(f"/invoices/{inv['id']}/payments", {"amount": "13.00"}, role="finance")
    assert erp.get(f"/invoices/{inv['id']}", role="finance")["outstanding"] == "100.00"
    assert erp.get("/invoices", role="finance")["items"][0]["outstanding"] == "100.00"


def test_malformed_json_is_a_400_and_the_openapi_document_says_so(sqlite_erp):
    erp = sqlite_erp
    auth = {"Authorization": f"Bearer {erp.token('admin')}"}
    for data, ctype in (("{not json", "application/json"), ("[1,", "application/json"), ("x=1", "text/plain")):
        r = erp.client.post("/api/v1/products", data=data, headers={**auth, "Content-Type": ctype})
        assert r.status_code == 400 and r.mimetype == "application/problem+json" and r.json["field"] == "body", data
    r = erp.req("POST", "/products", json={"sku": "A", "name": "A", "sale_price": "x"})
    assert r.status_code == 422, "well-formed JSON with a wrong value stays a 422"
    spec = erp.client.get("/api/v1/openapi.json").json
    paths = spec["paths"]
    assert "patch" in paths["/api/v1/sales-orders/{order_id}"] and "patch" in paths["/api/v1/purchase-orders/{order_id}"]
    names = {p["name"] for p in paths["/api/v1/sales-orders"]["get"]["parameters"]}
    assert {"q", "sort", "date_from", "date_to"} <= names
    assert "account" in {p["name"] for p in paths["/api/v1/journal-entries"]["get"]["parameters"]}
    low = paths["/api/v1/stock/low"]["get"]["responses"]["200"]["content"]["application/json"]["schema"]["$ref"]
    assert set(spec["components"]["schemas"][low.rsplit("/", 1)[1]]["properties"]) >= {"items", "total", "limit"}
    assert "Location" in paths["/api/v1/sales-orders"]["post"]["responses"]["201"]["headers"]
    assert "outstanding" in spec["components"]["schemas"]["InvoiceOut"]["properties"]
    assert "400" in paths["/api/v1/products"]["post"]["responses"]


def test_the_api_explorer_is_served_locally_without_a_cdn(sqlite_erp):
    client = sqlite_erp.client
    page = client.get("/api/v1/docs")
    html = page.get_data(as_text=True)
    assert page.status_code == 200 and page.mimetype == "text/html"
    assert "script-src 'self'" in page.headers["Content-Security-Policy"] and "<script>" not in html
    sources = re.findall(r'(?:src|href)="([^"]+)"', html)
    assert sources and all(s.startswith("/api/v1/docs/") for s in sources), "nothing from another host"
    for src in sources:
        r = client.get(src)
        assert r.status_code == 200 and len(r.data) > 0, src
    assert b"SwaggerUIBundle" in client.get("/api/v1/docs/swagger-ui-bundle.js").data
    assert b"/api/v1/openapi.json" in client.get("/api/v1/docs/explorer.js").data
    for name in ("../__init__.py", "index.html", "nope.js"):
        assert client.get(f"/api/v1/docs/{name}").status_code == 404, name
