"""Editing a draft sales order on its page: the form comes back filled with the stored lines, the
change is saved through services.sales.update_draft (re-priced, totals equal their lines); an order
past draft cannot be edited; bad input is shown on the form."""

from __future__ import annotations

from erp_core import invariants
from tests.erp_core.test_web import WebUser, order_form, text_of


def test_a_draft_order_is_edited_and_a_confirmed_one_is_not(sqlite_erp):
    erp = sqlite_erp
    wh, cust = erp.warehouse(), erp.customer("C1")
    a, b = erp.product("A", "100.00", "VAT13"), erp.product("B", "20.00", "VAT9")
    erp.req("PUT", f"/partners/{cust}/prices", json={"product_id": b, "unit_price": "18.00"}, expect=200)
    sales = WebUser(erp, "sales")
    page = sales.act("/app/sales/new", order_form(cust, wh, [{"product_id": a, "quantity": "1"}]))
    oid = erp.get("/sales-orders", role="sales")["items"][0]["id"]
    assert f"/app/sales/{oid}/edit" in page
    form = sales.page(f"/app/sales/{oid}/edit")
    assert 'value="100.00"' in form and f'action="/app/sales/{oid}/edit"' in form
    page = sales.act(f"/app/sales/{oid}/edit", order_form(cust, wh, [
        {"product_id": a, "quantity": "2", "discount_percent": "5"}, {"product_id": b, "quantity": "7"}]))
    assert "SO000001" in text_of(page)
    order = erp.get(f"/sales-orders/{oid}", role="sales")
    # 2 x 100 - 5 % = 190.00 + 13 % 24.70; 7 x 18.00 (the customer's price) = 126.00 + 9 % 11.34
    assert [(l["quantity"], l["unit_price"]) for l in order["lines"]] == [("2.000", "100.00"), ("7.000", "18.00")]
    assert order["gross_total"] == "352.04" and order["number"] == "SO000001"
    with erp.db.session(write=False) as s:
        assert invariants.document_totals_match_lines(s) == [] and invariants.currency_totals_match_lines(s) == []
        assert invariants.check_all(s) == []

    r = sales.post(f"/app/sales/{oid}/edit", order_form(cust, wh, [{"product_id": a, "quantity": "-3"}]))
    assert r.status_code == 422 and 'value="-3"' in r.get_data(as_text=True)
    assert erp.get(f"/sales-orders/{oid}", role="sales")["gross_total"] == "352.04"

    sales.act(f"/app/sales/{oid}/confirm")
    assert f"/app/sales/{oid}/edit" not in sales.page(f"/app/sales/{oid}")
    r = sales.post(f"/app/sales/{oid}/edit", order_form(cust, wh, [{"product_id": a, "quantity": "1"}]))
    assert r.status_code == 409 and "only a draft can be edited" in text_of(r.get_data(as_text=True))
    assert WebUser(erp, "warehouse").get(f"/app/sales/{oid}/edit").status_code == 403
