"""The remaining ERP pages through Flask's test client, on SQLite and PostgreSQL: warehouses (list,
create, edit), stock transfers between warehouses, stocktakes (count, post the differences), user
administration (create, change role, deactivate, the last-admin and service-user guards) and a
partner's ledger reached from the aging report and the general ledger."""

from __future__ import annotations

import re
from decimal import Decimal

import pytest
from sqlalchemy import select

from erp_core import invariants
from erp_core.models import User
from erp_core.services import auth
from tests.conftest import PASSWORD
from tests.erp_core.test_web import WebUser, _shop, text_of

BOTH = pytest.mark.parametrize("backend", ["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])


def _saved(user, path, data) -> str:
    r = user.post(path, data)
    assert r.status_code == 303, (path, r.status_code, text_of(r.get_data(as_text=True))[:800])
    return user.page(r.headers["Location"])


def _selected(page: str, select_id: str) -> str:
    block = page.split(f'id="{select_id}"')[1].split("</select>")[0]
    return re.search(r'<option value="(\d+)" selected', block).group(1)


@BOTH
def test_warehouses_transfers_and_a_stocktake(erp):
    shop = _shop(erp)
    admin, clerk, sales = WebUser(erp, "admin"), WebUser(erp, "warehouse"), WebUser(erp, "sales")
    assert clerk.get("/app/warehouses/new").status_code == 403, "only administrators add warehouses"
    page = text_of(_saved(admin, "/app/warehouses/new", {"code": "WH2", "name": "Overflow", "address": "2 Dock"}))
    assert "Warehouse WH2 saved." in page and "Overflow" in page and "(default)" in page
    wh2 = erp.get("/warehouses")["items"][1]["id"]
    _saved(admin, f"/app/warehouses/{wh2}/edit", {"name": "Overflow store", "address": ""})
    assert erp.get("/warehouses")["items"][1] == {"id": wh2, "code": "WH2", "name": "Overflow store", "address": None}

    # a transfer: the default warehouse is the source, the other one the destination
    form = clerk.page("/app/stock/transfers/new")
    assert _selected(form, "from_warehouse_id") == str(shop["wh"]) and _selected(form, "to_warehouse_id") == str(wh2)
    page = text_of(_saved(clerk, "/app/stock/transfers/new", {
        "sku": "A", "quantity": "4", "from_warehouse_id": str(shop["wh"]), "to_warehouse_id": str(wh2),
        "reference": "restock"}))
    assert "4 × A moved from WH1 to WH2." in page and "restock" in page
    levels = {(r["sku"], r["warehouse_code"]): r["quantity"] for r in erp.get("/stock")["items"]}
    assert levels[("A", "WH1")] == "6.000" and levels[("A", "WH2")] == "4.000"
    r = clerk.post("/app/stock/transfers/new", {"sku": "A", "quantity": "99", "from_warehouse_id": str(shop["wh"]),
                                                "to_warehouse_id": str(wh2)})
    assert r.status_code == 409 and "A" in text_of(r.get_data(as_text=True))
    assert sales.get("/app/stock/transfers/new").status_code == 403
    assert "restock" in text_of(sales.page("/app/stock/transfers"))

    # a reorder level per warehouse, beside the one the product form keeps
    assert _selected(clerk.page("/app/stock/reorder-rules"), "warehouse_id") == str(shop["wh"])
    page = text_of(_saved(clerk, "/app/stock/reorder-rules", {"sku": "a", "warehouse_id": str(wh2),
                                                               "min_quantity": "6", "reorder_quantity": "10"}))
    assert "Reorder level of A in WH2 saved." in page
    assert [(r["warehouse_id"], r["min_quantity"]) for r in erp.get("/stock/reorder-rules")["items"]] == [(wh2, "6.000")]
    assert any(r["sku"] == "A" and r["warehouse_code"] == "WH2" for r in erp.get("/stock/low")["items"])
    assert sales.post("/app/stock/reorder-rules", {"sku": "A"}).status_code == 403

    # a stocktake of WH1: A counted 5 (one lost), B left uncounted
    assert _selected(clerk.page("/app/stocktakes"), "warehouse_id") == str(shop["wh"])
    sheet = clerk.page(f"/app/stocktakes/new?warehouse_id={shop['wh']}")
    assert f'name="count-{shop["a"]}"' in sheet and f'name="count-{shop["b"]}"' in sheet
    page = text_of(_saved(clerk, "/app/stocktakes/new", {"warehouse_id": str(shop["wh"]),
                                                         f"count-{shop['a']}": "5", f"count-{shop['b']}": ""}))
    assert "saved as a draft" in page and "-1" in page
    st = erp.get("/stocktakes")["items"][0]
    assert st["state"] == "draft" and [line["product_id"] for line in st["lines"]] == [shop["a"]]
    page = text_of(clerk.act(f"/app/stocktakes/{st['id']}/post"))
    assert "posted" in page
    assert {(r["sku"], r["warehouse_code"]): r["quantity"] for r in erp.get("/stock")["items"]}[("A", "WH1")] == "5.000"
    again = clerk.post(f"/app/stocktakes/{st['id']}/post")
    assert again.status_code == 303, "posting twice is refused with a message, not a 500"
    with erp.db.session(write=False) as s:
        assert invariants.check_all(s) == []


@BOTH
def test_an_administrator_manages_users_within_the_guards(erp):
    admin = WebUser(erp, "admin")
    assert WebUser(erp, "sales").get("/app/users/new").status_code == 403
    r = admin.post("/app/users/new", {"username": "clerk2", "full_name": "New Clerk", "role": "warehouse"})
    assert r.status_code == 200
    temporary = re.search(r'id="temporary-password">([^<]+)<', r.get_data(as_text=True)).group(1)
    newbie = WebUser(erp, None)
    assert newbie.login("clerk2", temporary).status_code == 303
    assert newbie.get("/app/stock").status_code == 302, "the temporary password must be changed first"

    with erp.db.session(write=False) as s:
        uid = s.scalar(select(User.id).where(User.username == "clerk2"))
        admin_id = s.scalar(select(User.id).where(User.username == "admin"))
    page = text_of(admin.act(f"/app/users/{uid}/role", {"role": "finance"}))
    assert "clerk2 is now finance." in page
    page = text_of(admin.act(f"/app/users/{uid}/active", {"active": "0"}))
    assert "clerk2 is deactivated" in page
    assert newbie.get("/app/account/password").status_code == 302, "its session ended"
    # the last active administrator stays one
    with erp.db.session(write=False) as s:
        others = s.scalars(select(User).where(User.role == "admin", User.id != admin_id)).all()
    for other in others:
        admin.act(f"/app/users/{other.id}/active", {"active": "0"})
    page = text_of(admin.act(f"/app/users/{admin_id}/role", {"role": "sales"}))
    assert "last active administrator" in page
    # a service user is left to its tool
    with erp.db.session() as s:
        auth.add_user(s, "robot", PASSWORD + "-robot", "admin", service=True)
        robot = s.scalar(select(User.id).where(User.username == "robot"))
    assert 'id="deactivate-robot"' not in admin.page("/app/users")
    page = text_of(admin.act(f"/app/users/{robot}/active", {"active": "0"}))
    assert "service user" in page
    r = admin.post("/app/users/new", {"username": "clerk2", "full_name": "", "role": "sales"})
    assert r.status_code == 409 and 'aria-invalid="true"' in r.get_data(as_text=True)


def test_the_partner_ledger_and_the_drill_down_to_documents(sqlite_erp):
    erp = sqlite_erp
    shop = _shop(erp)
    so = erp.post("/sales-orders", {"partner_id": shop["cust"], "warehouse_id": shop["wh"],
                                    "lines": [{"product_id": shop["a"], "quantity": "2"}]}, role="sales")
    erp.post(f"/sales-orders/{so['id']}/confirm", role="sales", expect=200)
    erp.post(f"/sales-orders/{so['id']}/deliver", {}, role="warehouse", expect=200)
    inv = erp.post(f"/sales-orders/{so['id']}/invoice", role="finance")
    erp.post(f"/invoices/{inv['id']}/payments", {"amount": "100.00"}, role="finance")
    finance = WebUser(erp, "finance")
    aging = finance.page("/app/reports/aging")
    assert f'href="/app/partners/{shop["cust"]}/ledger"' in aging
    assert f'href="/app/invoices/{inv["id"]}"' not in aging, "one row per partner unless each invoice is asked for"
    detail = finance.page("/app/reports/aging?detail=1")
    assert f'href="/app/partners/{shop["cust"]}/ledger"' in detail and f'href="/app/invoices/{inv["id"]}"' in detail
    page = finance.page(f"/app/partners/{shop['cust']}/ledger")
    assert page.count(f'href="/app/invoices/{inv["id"]}"') == 2, "the invoice and its payment lead to it"
    balance = re.search(r'id="balance">([^<]*)<', page).group(1)
    assert balance.replace(",", "").lstrip("¥") == f"{Decimal(inv['gross_total']) - 100:.2f}"
    gl = finance.page("/app/reports/general-ledger?account=1122")
    assert f'href="/app/partners/{shop["cust"]}/ledger"' in gl and f'href="/app/invoices/{inv["id"]}"' in gl
    csv = finance.get(f"/app/partners/{shop['cust']}/ledger?format=csv").get_data(as_text=True)
    assert inv["number"] in csv
    assert finance.get("/app/partners/999999/ledger").status_code == 404
