"""Release 1.1 through the API: documents in a foreign currency (both currencies exact, the ledger in
company currency) and lots taken first in, first out. SQLite and PostgreSQL."""

from decimal import Decimal

import pytest
from sqlalchemy import text

from erp_core import invariants
from erp_core.domain import lots, pricing
from erp_core.domain.money import COMPANY_CURRENCY, CurrencyError, document_currency, to_company
from tests.erp_core.test_flows import assert_clean, balances


# ---- pure rules ---------------------------------------------------------------------------------

def test_lines_are_priced_in_document_currency_and_converted_once_per_amount():
    line = pricing.price_line(pricing.LineInput(Decimal("7"), Decimal("2.82"), tax_rate_percent=Decimal("9")),
                              Decimal("7.1"))
    assert (line.net_currency, line.tax_currency) == (Decimal("19.74"), Decimal("1.78"))
    assert (line.unit_price, line.net, line.tax) == (Decimal("20.02"), Decimal("140.15"), Decimal("12.64"))
    totals = pricing.totals_of([line, line])
    assert (totals.gross_currency, totals.gross) == (Decimal("43.04"), Decimal("305.58"))
    assert to_company("2.675", "1") == Decimal("2.68")


@pytest.mark.parametrize("currency, rate, field", [
    ("USD", None, "exchange_rate"), ("USD", "0", "exchange_rate"), ("USD", "-1", "exchange_rate"),
    (COMPANY_CURRENCY, "2", "exchange_rate"), ("XYZ", "1", "currency"), ("USD", "1.0000001", "exchange_rate"),
])
def test_a_currency_needs_a_fitting_rate(currency, rate, field):
    with pytest.raises(CurrencyError) as exc:
        document_currency(currency, None if rate is None else Decimal(rate))
    assert exc.value.field == field and exc.value.fix


def test_fifo_takes_the_oldest_lots_first_and_splits():
    held = [lots.LotBalance(1, Decimal("10")), lots.LotBalance(2, Decimal("5"))]
    assert lots.fifo(held, Decimal("12")) == [(1, Decimal("10")), (2, Decimal("2"))]
    assert lots.fifo(held, Decimal("3")) == [(1, Decimal("3"))]
    with pytest.raises(lots.NotEnoughInLots):
        lots.fifo(held, Decimal("16"))


# ---- a foreign-currency order to cash ----------------------------------------------------------------

def test_a_usd_order_to_cash_is_exact_in_both_currencies(erp):
    wh, sup, cust = erp.warehouse(), erp.supplier(), erp.customer()
    a, b = erp.product("A", "100.00", "VAT13"), erp.product("B", "20.00", "VAT9")
    erp.stock_in(sup, wh, [(a, 10, "60.00"), (b, 50, "8.00")])
    so = erp.post("/sales-orders", {"partner_id": cust, "warehouse_id": wh, "currency": "USD",
                                    "exchange_rate": "7.1", "lines": [
                                        {"product_id": a, "quantity": "3", "unit_price": "20.00"},
                                        {"product_id": b, "quantity": "7"}]}, role="sales")
    # A: 3 x 20.00 USD = 60.00 + 7.80 VAT -> 426.00 + 55.38 CNY; B: list price 20.00 CNY = 2.82 USD,
    # 7 x 2.82 = 19.74 + 1.78 VAT -> 140.15 + 12.64 CNY
    assert (so["currency"], so["exchange_rate"]) == ("USD", "7.100000")
    assert [(l["unit_price_currency"], l["net_amount_currency"], l["tax_amount_currency"]) for l in so["lines"]] == [
        ("20.00", "60.00", "7.80"), ("2.82", "19.74", "1.78")]
    assert [(l["unit_price"], l["net_amount"], l["tax_amount"]) for l in so["lines"]] == [
        ("142.00", "426.00", "55.38"), ("20.02", "140.15", "12.64")]
    assert (so["net_total_currency"], so["tax_total_currency"], so["gross_total_currency"]) == ("79.74", "9.58", "89.32")
    assert (so["net_total"], so["tax_total"], so["gross_total"]) == ("566.15", "68.02", "634.17")
    erp.post(f"/sales-orders/{so['id']}/confirm", role="sales", expect=200)
    erp.post(f"/sales-orders/{so['id']}/deliver", role="warehouse", expect=200)
    inv = erp.post(f"/sales-orders/{so['id']}/invoice", role="finance")
    assert (inv["currency"], inv["gross_total_currency"], inv["gross_total"]) == ("USD", "89.32", "634.17")
    entry = erp.get("/journal-entries", role="finance", query={"source": "invoice:"})["items"][0]
    assert [(l["account_code"], l["debit"], l["credit"], l["currency"], l["amount_currency"]) for l in entry["lines"]] == [
        ("1122", "634.17", "0.00", "USD", "89.32"), ("6001", "0.00", "566.15", "USD", "-79.74"),
        ("2221.02", "0.00", "68.02", "USD", "-9.58")]
    part = erp.post(f"/invoices/{inv['id']}/payments", {"amount": "50.00"}, role="finance")
    assert (part["currency"], part["amount_currency"], part["amount"]) == ("USD", "50.00", "355.00")
    r = erp.req("POST", f"/invoices/{inv['id']}/payments", role="finance", json={"amount": "39.33"}, expect=422)
    assert "39.32 USD" in r.json["detail"] and r.json["field"] == "amount"
    rest = erp.post(f"/invoices/{inv['id']}/payments", {"amount": "39.32"}, role="finance")
    assert rest["amount"] == "279.17"  # what is left in CNY: the invoice is settled exactly
    paid = erp.get(f"/invoices/{inv['id']}", role="finance")
    assert (paid["state"], paid["amount_paid"]) == ("paid", "634.17")
    assert erp.get(f"/sales-orders/{so['id']}", role="sales")["state"] == "paid"
    assert balances(erp) == {"1405": Decimal("764.00"), "2241": Decimal("-1000.00"), "6401": Decimal("236.00"),
                             "6001": Decimal("-566.15"), "2221.02": Decimal("-68.02"), "1002": Decimal("634.17")}
    assert_clean(erp)


def test_a_eur_purchase_is_received_and_billed_in_company_currency(erp):
    wh, sup = erp.warehouse(), erp.supplier()
    p = erp.product("P", "50.00")
    po = erp.post("/purchase-orders", {"partner_id": sup, "warehouse_id": wh, "currency": "EUR",
                                       "exchange_rate": "7.8012", "lines": [
                                           {"product_id": p, "quantity": "4", "unit_price": "2.50"}]},
                  role="purchasing")
    assert (po["net_total_currency"], po["net_total"]) == ("10.00", "78.01")
    erp.post(f"/purchase-orders/{po['id']}/confirm", role="purchasing", expect=200)
    erp.post(f"/purchase-orders/{po['id']}/receive", role="warehouse", expect=200)
    bill = erp.post(f"/purchase-orders/{po['id']}/bill", {}, role="finance")
    erp.post(f"/invoices/{bill['id']}/payments", {"amount": bill["gross_total_currency"]}, role="finance")
    assert erp.get(f"/invoices/{bill['id']}", role="finance")["state"] == "paid"
    assert_clean(erp)


@pytest.mark.parametrize("extra, field, words", [
    ({"currency": "usd", "exchange_rate": "7"}, "currency", "pattern"),
    ({"currency": "XYZ", "exchange_rate": "7"}, "currency", "ISO 4217"),
    ({"currency": "USD"}, "exchange_rate", "needs an exchange rate"),
    ({"currency": "USD", "exchange_rate": "0"}, "exchange_rate", "above 0"),
    ({"currency": "USD", "exchange_rate": 7.1}, "exchange_rate", "not exact"),
    ({"currency": "CNY", "exchange_rate": "7"}, "exchange_rate", "is 1"),
    ({"exchange_rate": "2"}, "exchange_rate", "is 1"),
])
def test_a_bad_currency_or_rate_is_a_422_naming_the_field(erp, extra, field, words):
    wh, cust, p = erp.warehouse(), erp.customer(), erp.product()
    r = erp.req("POST", "/sales-orders", role="sales", expect=422, json={
        "partner_id": cust, "warehouse_id": wh, "lines": [{"product_id": p, "quantity": "1"}], **extra})
    assert r.json["field"] == field and words in r.json["detail"] and r.json["fix"], r.json


def test_an_order_without_currency_is_in_company_currency_with_equal_amounts(erp):
    wh, cust, p = erp.warehouse(), erp.customer(), erp.product("P", "12.34")
    so = erp.post("/sales-orders", {"partner_id": cust, "warehouse_id": wh,
                                    "lines": [{"product_id": p, "quantity": "2"}]}, role="sales")
    assert (so["currency"], so["exchange_rate"]) == (COMPANY_CURRENCY, "1.000000")
    assert so["gross_total_currency"] == so["gross_total"] == "27.89"


# ---- lots -----------------------------------------------------------------------------------------

def test_receipts_make_lots_and_a_delivery_takes_them_first_in_first_out(erp):
    w1, w2, sup, cust = erp.warehouse("MAIN"), erp.warehouse("SHOP"), erp.supplier(), erp.customer()
    p = erp.product("P", "10.00")
    erp.stock_in(sup, w1, [(p, 10, "5.00")])
    erp.stock_in(sup, w1, [(p, 5, "6.00")])
    receipts = erp.get("/stock/moves", query={"kind": "receipt", "product_id": p})["items"]
    first, second = sorted(m["lot_id"] for m in receipts)
    assert first != second
    so = erp.post("/sales-orders", {"partner_id": cust, "warehouse_id": w1,
                                    "lines": [{"product_id": p, "quantity": "12"}]}, role="sales")
    erp.post(f"/sales-orders/{so['id']}/confirm", role="sales", expect=200)
    erp.post(f"/sales-orders/{so['id']}/deliver", role="warehouse", expect=200)
    out = erp.get("/stock/moves", query={"kind": "delivery", "product_id": p})["items"]
    assert sorted((m["lot_id"], m["quantity"]) for m in out) == [(first, "10.000"), (second, "2.000")]
    moved = erp.post("/stock/transfers", {"product_id": p, "quantity": "3", "from_warehouse_id": w1,
                                          "to_warehouse_id": w2}, role="warehouse")
    assert (moved["quantity"], [(m["lot_id"], m["quantity"]) for m in moved["moves"]]) == ("3.000", [(second, "3.000")])
    with erp.db.session(write=False) as s:
        from erp_core.services import stock
        assert stock.lot_balances(s, p, w1) == []
        assert stock.lot_balances(s, p, w2) == [lots.LotBalance(second, Decimal("3.000"))]
    assert_clean(erp)


def test_a_lot_that_goes_negative_is_reported(erp):
    wh, sup = erp.warehouse(), erp.supplier()
    p = erp.product("P", "10.00")
    erp.stock_in(sup, wh, [(p, 2, "5.00")])
    lot = erp.get("/stock/moves", query={"kind": "receipt", "product_id": p})["items"][0]["lot_id"]
    with erp.db.session() as s:  # a delivery of more than the lot holds, written behind the services' back
        s.execute(text("INSERT INTO stock_moves (product_id, from_warehouse_id, quantity, unit_cost, kind, state, "
                       "reference, created_at, lot_id) VALUES (:p, :w, 3, 5, 'delivery', 'done', 'x', "
                       "CURRENT_TIMESTAMP, :lot)"), {"p": p, "w": wh, "lot": lot})
    with erp.db.session(write=False) as s:
        found = invariants.lots_consistent(s)
    assert [v.detail for v in found] == [f"lot LOT000001 holds -1.000 in warehouse {wh}: more went out of it "
                                         "than came in"]


def test_the_order_and_invoice_pages_show_the_currency(sqlite_erp):
    from tests.erp_core.test_web import WebUser, text_of

    erp = sqlite_erp
    wh, sup, cust = erp.warehouse(), erp.supplier(), erp.customer()
    p = erp.product("P", "10.00")
    erp.stock_in(sup, wh, [(p, 5, "5.00")])
    so = erp.post("/sales-orders", {"partner_id": cust, "warehouse_id": wh, "currency": "EUR",
                                    "exchange_rate": "7.8", "lines": [
                                        {"product_id": p, "quantity": "2", "unit_price": "3.00"}]}, role="sales")
    erp.post(f"/sales-orders/{so['id']}/confirm", role="sales", expect=200)
    erp.post(f"/sales-orders/{so['id']}/deliver", role="warehouse", expect=200)
    inv = erp.post(f"/sales-orders/{so['id']}/invoice", role="finance")
    erp.post(f"/invoices/{inv['id']}/payments", {"amount": "2.00"}, role="finance")
    order_page = text_of(WebUser(erp, "sales").page(f"/app/sales/{so['id']}"))
    assert f"Currency EUR at 7.800000 {COMPANY_CURRENCY}" in order_page
    assert "Totals in EUR 6.00 0.78 6.78" in order_page and f"Totals ({COMPANY_CURRENCY}) 46.80 6.08 52.88" in order_page
    invoice_page = text_of(WebUser(erp, "finance").page(f"/app/invoices/{inv['id']}"))
    assert "6.78 EUR at 7.800000; paid 2.00, outstanding 4.78 EUR" in invoice_page
    assert "15.60 2.00 EUR" in invoice_page
