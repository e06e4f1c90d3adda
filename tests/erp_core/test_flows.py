"""End-to-end business flows through the API, ending with clean invariants and exact balances."""

from decimal import Decimal

from erp_core import invariants
from erp_core.services import reports


def balances(erp) -> dict[str, Decimal]:
    with erp.db.session(write=False) as s:
        tb = reports.trial_balance(s)
    net = {r["code"]: Decimal(r["debit"]) - Decimal(r["credit"]) for r in tb["rows"]}
    return {code: amount for code, amount in net.items() if amount}


def assert_clean(erp):
    with erp.db.session(write=False) as s:
        found = invariants.check_all(s)
    assert found == [], [v.as_dict() for v in found]


def test_procure_to_pay(erp):
    wh, sup = erp.warehouse(), erp.supplier()
    p = erp.product("BOLT", "12.00")
    po = erp.post("/purchase-orders", {"partner_id": sup, "warehouse_id": wh, "lines": [
        {"product_id": p, "quantity": "100", "unit_price": "5.00", "discount_percent": "10"}]}, role="purchasing")
    assert (po["net_total"], po["tax_total"], po["gross_total"]) == ("450.00", "58.50", "508.50")
    erp.post(f"/purchase-orders/{po['id']}/confirm", role="purchasing", expect=200)
    got = erp.post(f"/purchase-orders/{po['id']}/receive", role="warehouse", expect=200)
    assert got["state"] == "received"
    assert erp.get(f"/products/{p}")["avg_cost"] == "4.5000"
    assert erp.get("/stock", query={"product_id": p})["items"][0]["quantity"] == "100.000"
    bill = erp.post(f"/purchase-orders/{po['id']}/bill", {"supplier_reference": "INV-77"}, role="finance")
    assert bill["gross_total"] == "508.50" and bill["kind"] == "supplier"
    erp.post(f"/invoices/{bill['id']}/payments", {"amount": "500.00"}, role="finance")
    assert erp.get(f"/invoices/{bill['id']}", role="finance")["state"] == "partial"
    erp.post(f"/invoices/{bill['id']}/payments", {"amount": "8.50"}, role="finance")
    assert erp.get(f"/purchase-orders/{po['id']}", role="purchasing")["state"] == "paid"
    assert balances(erp) == {"1405": Decimal("450.00"), "2221.01": Decimal("58.50"), "1002": Decimal("-508.50")}
    assert_clean(erp)


def test_order_to_cash(erp):
    wh, sup, cust = erp.warehouse(), erp.supplier(), erp.customer()
    a, b = erp.product("A", "100.00", "VAT13"), erp.product("B", "20.00", "VAT9")
    erp.stock_in(sup, wh, [(a, 10, "60.00"), (b, 50, "8.00")])
    erp.stock_in(sup, wh, [(a, 10, "70.00")])  # moving average of A: 65.00
    erp.req("PUT", f"/partners/{cust}/prices", json={"product_id": b, "unit_price": "18.00"}, expect=200)
    so = erp.post("/sales-orders", {"partner_id": cust, "warehouse_id": wh, "lines": [
        {"product_id": a, "quantity": "3", "discount_percent": "5"},
        {"product_id": b, "quantity": "7"}]}, role="sales")
    # A: 3 x 100 - 5 % = 285.00, VAT 13 % = 37.05; B: 7 x 18 (price list) = 126.00, VAT 9 % = 11.34
    assert (so["net_total"], so["tax_total"], so["gross_total"]) == ("411.00", "48.39", "459.39")
    assert so["lines"][1]["unit_price"] == "18.00"
    erp.post(f"/sales-orders/{so['id']}/confirm", role="sales", expect=200)
    erp.post(f"/sales-orders/{so['id']}/deliver", role="warehouse", expect=200)
    inv = erp.post(f"/sales-orders/{so['id']}/invoice", role="finance")
    assert inv["gross_total"] == "459.39"
    erp.post(f"/invoices/{inv['id']}/payments", {"amount": "459.39"}, role="finance")
    assert erp.get(f"/sales-orders/{so['id']}", role="sales")["state"] == "paid"
    # stock: 1300 in A (600 + 700) and 400 in B; out at average: A 3 x 65 = 195, B 7 x 8 = 56
    assert balances(erp) == {
        "1405": Decimal("1449.00"), "2241": Decimal("-1700.00"),
        "1002": Decimal("459.39"), "6001": Decimal("-411.00"), "2221.02": Decimal("-48.39"),
        "6401": Decimal("251.00"),
    }
    with erp.db.session(write=False) as s:
        pl = reports.profit_and_loss(s)
    assert Decimal(pl["net_profit"]) == Decimal("160.00")
    assert_clean(erp)


def test_stocktake_posts_differences(erp):
    wh, sup = erp.warehouse(), erp.supplier()
    a, b = erp.product("A"), erp.product("B")
    erp.stock_in(sup, wh, [(a, 10, "4.00"), (b, 5, "10.00")])
    st = erp.post("/stocktakes", {"warehouse_id": wh, "counts": [
        {"product_id": a, "counted_quantity": "8"}, {"product_id": b, "counted_quantity": "6"}]}, role="warehouse")
    posted = erp.post(f"/stocktakes/{st['id']}/post", role="warehouse", expect=200)
    assert posted["state"] == "posted"
    assert {l["product_id"]: l["expected_quantity"] for l in posted["lines"]} == {a: "10.000", b: "5.000"}
    levels = {r["product_id"]: r["quantity"] for r in erp.get("/stock")["items"]}
    assert levels == {a: "8.000", b: "6.000"}
    # loss 2 x 4.00 = 8.00, gain 1 x 10.00 = 10.00: net +2.00 inventory
    assert balances(erp) == {"1405": Decimal("92.00"), "2241": Decimal("-90.00"), "6711": Decimal("-2.00")}
    erp.post(f"/stocktakes/{st['id']}/post", role="warehouse", expect=409)
    assert_clean(erp)


def test_transfer_between_warehouses(erp):
    w1, w2, sup = erp.warehouse("MAIN"), erp.warehouse("SHOP"), erp.supplier()
    a = erp.product("A")
    erp.stock_in(sup, w1, [(a, 10, "3.00")])
    erp.post("/stock/transfers", {"product_id": a, "quantity": "4", "from_warehouse_id": w1,
                                  "to_warehouse_id": w2}, role="warehouse")
    levels = {r["warehouse_code"]: r["quantity"] for r in erp.get("/stock", query={"product_id": a})["items"]}
    assert levels == {"MAIN": "6.000", "SHOP": "4.000"}
    r = erp.req("POST", "/stock/transfers", role="warehouse", json={
        "product_id": a, "quantity": "7", "from_warehouse_id": w1, "to_warehouse_id": w2}, expect=409)
    assert r.json["available"] == "6.000" and r.json["requested"] == "7.000"
    assert balances(erp) == {"1405": Decimal("30.00"), "2241": Decimal("-30.00")}
    with erp.db.session(write=False) as s:
        val = reports.stock_valuation(s)
    assert Decimal(str(val["total_value"])) == Decimal("30.00")
    assert_clean(erp)
