"""Guards: the last active administrator and the operators' service users stay as they
are; search finds the same rows on SQLite and PostgreSQL, whatever the case or accents; codes are unique
regardless of case; an unknown reference is a 422 naming its field, and the control accounts are posted
only by their documents."""

from __future__ import annotations

import pytest
from sqlalchemy import text

from erp_core import ops
from tests.erp_core.test_race import PROBLEM

# ---- users ---------------------------------------------------------------------------------------


def _user_id(erp, username: str) -> int:
    return next(u["id"] for u in erp.get("/users", query={"limit": 100})["items"] if u["username"] == username)


def test_the_last_active_admin_can_be_neither_demoted_nor_deactivated(erp):
    admin = _user_id(erp, "admin")
    for change, field in (({"role": "sales"}, "role"), ({"active": False}, "active"),
                          ({"role": "auditor", "active": False}, "active")):
        r = erp.req("PATCH", f"/users/{admin}", json=change)  # by itself, the only admin
        assert r.status_code == 409 and r.mimetype == PROBLEM, r.get_data(as_text=True)
        assert "last active administrator" in r.json["detail"] and r.json["field"] == field and r.json["fix"]
    assert erp.get("/me")["role"] == "admin"

    # with a second active admin, either may step down; then the other is the last one again
    second = erp.post("/users", {"username": "second-admin", "password": "a long password 1", "role": "admin"})["id"]
    assert erp.req("PATCH", f"/users/{admin}", json={"full_name": "still here"}, expect=200).json["role"] == "admin"
    assert erp.req("PATCH", f"/users/{second}", json={"active": False}, expect=200).json["active"] is False
    assert erp.req("PATCH", f"/users/{admin}", json={"role": "sales"}).status_code == 409
    erp.req("PATCH", f"/users/{second}", json={"active": True}, expect=200)
    assert erp.req("PATCH", f"/users/{admin}", json={"role": "finance"}, expect=200).json["role"] == "finance"
    r = erp.client.open(f"/api/v1/users/{second}", method="PATCH", json={"role": "sales"},
                        headers={"Authorization": f"Bearer {_login(erp, 'second-admin', 'a long password 1')}"})
    assert r.status_code == 409 and r.json["field"] == "role"


def _login(erp, username: str, password: str) -> str:
    r = erp.client.post("/api/v1/auth/login", json={"username": username, "password": password})
    assert r.status_code == 200, r.json
    return r.json["token"]


def test_a_service_user_of_the_operators_tools_is_not_changed_through_the_api(sqlite_erp):
    erp = sqlite_erp
    with erp.db.session(actor="erpctl") as s:
        ops.create_user(s, "erpctl-probe", "a long password 2", "auditor", full_name="probe", service=True)
        ops.create_user(s, "older-tool", "a long password 3", "auditor")
        ops.mark_service_user(s, "older-tool")
    for name in ("erpctl-probe", "older-tool"):
        uid = _user_id(erp, name)
        for change in ({"active": False}, {"role": "admin"}, {"full_name": "renamed"}):
            r = erp.req("PATCH", f"/users/{uid}", json=change)
            assert r.status_code == 403 and r.mimetype == PROBLEM, r.get_data(as_text=True)
            assert "service user" in r.json["detail"] and "erpctl" in r.json["fix"]
        user = next(u for u in erp.get("/users", query={"limit": 100})["items"] if u["id"] == uid)
        assert user["active"] is True and user["role"] == "auditor"
    _login(erp, "erpctl-probe", "a long password 2")  # the probe still logs in
    with erp.db.session(actor="erpctl") as s:  # its own tools still manage it
        assert ops.deactivate_user(s, "erpctl-probe")["active"] is False


# ---- search and codes ----------------------------------------------------------------------------

NAMES = ["Customer C", "CUSTOMER CO", "Crème Brûlée SARL", "Müller GmbH", "customer-c", "Ærø Øl"]


QUERIES = [
    ("customer c", {"Customer C", "CUSTOMER CO"}),
    ("CUSTOMER C", {"Customer C", "CUSTOMER CO"}),
    ("  Customer   c ", {"Customer C", "CUSTOMER CO"}),
    ("creme brulee", {"Crème Brûlée SARL"}),
    ("BRÛLÉE", {"Crème Brûlée SARL"}),
    ("muller", {"Müller GmbH"}),
    ("mül", {"Müller GmbH"}),
    ("r-c", {"customer-c"}),
    ("%", set()),
    ("_", set()),
]


def test_search_ignores_case_and_accents_alike_on_both_backends(erp):
    for i, name in enumerate(NAMES):
        erp.post("/partners", {"code": f"K{i}", "name": name, "is_customer": True})
        erp.post("/products", {"sku": f"SKU-{i}", "name": name, "sale_price": "1.00", "tax_code": "VAT13"})

    for query, expected in QUERIES:
        partners = {p["name"] for p in erp.get("/partners", query={"q": query})["items"]}
        products = {p["name"] for p in erp.get("/products", query={"q": query})["items"]}
        assert (query, partners, products) == (query, expected, expected)
    assert {p["code"] for p in erp.get("/partners", query={"q": "k1"})["items"]} == {"K1"}


def test_a_renamed_record_is_found_by_its_new_name(sqlite_erp):
    erp = sqlite_erp
    pid = erp.post("/products", {"sku": "ren-1", "name": "Old Name", "sale_price": "1.00", "tax_code": "VAT13"})["id"]
    erp.req("PATCH", f"/products/{pid}", json={"name": "Nouvelle Entrée"}, expect=200)
    assert [p["id"] for p in erp.get("/products", query={"q": "entree"})["items"]] == [pid]
    assert erp.get("/products", query={"q": "old name"})["items"] == []
    assert [p["id"] for p in erp.get("/products", query={"q": "REN-1"})["items"]] == [pid]


CODES = [("/products", {"sku": "p-1", "name": "x", "sale_price": "1.00", "tax_code": "VAT13"}, "sku"),
         ("/partners", {"code": "acme", "name": "x", "is_customer": True}, "code"),
         ("/warehouses", {"code": "main", "name": "x"}, "code")]


def test_codes_are_unique_regardless_of_case(erp):
    for path, body, field in CODES:
        erp.post(path, {**body, field: body[field].upper()})
        r = erp.req("POST", path, json=body)
        assert r.status_code == 409 and r.json["field"] == field, r.get_data(as_text=True)
        assert "regardless of case" in r.json["detail"] and body[field].upper() in r.json["detail"]
    # and the database itself refuses them (the unique indexes on lower(code))
    with pytest.raises(Exception, match="(?i)unique"):
        with erp.db.session() as s:
            s.execute(text("INSERT INTO warehouses (code, name) VALUES ('Main', 'main again')"))


# ---- references and control accounts ---------------------------------------------------------------

def test_an_unknown_partner_on_a_journal_line_is_a_422_naming_the_field(sqlite_erp):
    erp = sqlite_erp
    r = erp.req("POST", "/journal-entries", role="finance", json={"memo": "x", "lines": [
        {"account": "1002", "debit": "5.00"}, {"account": "4001", "credit": "5.00", "partner_id": 999999}]})
    assert r.status_code == 422 and r.mimetype == PROBLEM, r.get_data(as_text=True)
    assert r.json["field"] == "lines.1.partner_id" and "999999" in r.json["detail"] and r.json["fix"]

    wh, cust, product = erp.warehouse(), erp.customer(), erp.product("REF", "1.00")
    for method, path, body, field in [
            ("POST", "/stock/transfers", {"product_id": 999999, "quantity": "1", "from_warehouse_id": wh,
                                          "to_warehouse_id": wh + 1}, "product_id"),
            ("POST", "/stock/transfers", {"product_id": product, "quantity": "1", "from_warehouse_id": wh,
                                          "to_warehouse_id": 999999}, "to_warehouse_id"),
            ("PUT", "/stock/reorder-rules", {"product_id": product, "warehouse_id": 999999, "min_quantity": "1",
                                             "reorder_quantity": "1"}, "warehouse_id"),
            ("PUT", f"/partners/{cust}/prices", {"product_id": 999999, "unit_price": "1.00"}, "product_id")]:
        r = erp.req(method, path, json=body)
        assert r.status_code == 422 and r.json["field"] == field, (path, r.get_data(as_text=True))


def test_control_accounts_are_posted_and_reversed_only_by_their_documents(sqlite_erp):
    erp = sqlite_erp
    for account in ("1405", "1122", "2202", "2241"):
        r = erp.req("POST", "/journal-entries", role="finance", json={"memo": "x", "lines": [
            {"account": "1002", "debit": "5.00"}, {"account": account, "credit": "5.00"}]})
        assert r.status_code == 422 and r.json["field"] == "lines.1.account", r.get_data(as_text=True)
        assert "only their documents post to it" in r.json["detail"]
    wh, sup = erp.warehouse(), erp.supplier()
    erp.stock_in(sup, wh, [(erp.product("REV", "2.00"), 2, "1.00")])
    entry = erp.get("/journal-entries", role="finance", query={"source": "receipt:"})["items"][0]
    r = erp.req("POST", f"/journal-entries/{entry['id']}/reverse", role="finance", json={})
    assert r.status_code == 409 and "through its document" in r.json["fix"], r.get_data(as_text=True)
