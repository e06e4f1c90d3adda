"""Customer returns with credit notes, supplier returns with debit notes: the books to the cent, the
partner's balance, the aging, and two returns of one order posted at once on PostgreSQL."""

import threading
from decimal import Decimal

import pytest

from erp_core import invariants
from erp_core.db import retrying
from erp_core.domain import returns as rules
from erp_core.domain.money import D
from erp_core.errors import Conflict
from erp_core.models import JournalEntry
from erp_core.services import reports, returns

from .test_flows import assert_clean, balances


def entry_lines(erp, source_prefix: str) -> list[tuple]:
    """(account, debit, credit, partner) of the entries whose source starts with source_prefix."""
    with erp.db.session(write=False) as s:
        entries = s.query(JournalEntry).filter(JournalEntry.source.like(f"{source_prefix}%")).order_by(JournalEntry.id)
        return [(l.account_code, str(l.debit), str(l.credit), l.partner_id) for e in entries for l in e.lines]


def sold_and_invoiced(erp):
    wh, sup, cust = erp.warehouse(), erp.supplier(), erp.customer()
    a, b = erp.product("A", "100.00", "VAT13"), erp.product("B", "20.00", "VAT9")
    erp.stock_in(sup, wh, [(a, 10, "60.00"), (b, 50, "8.00")])
    erp.stock_in(sup, wh, [(a, 10, "70.00")])  # A at 65.00 on average
    so = erp.post("/sales-orders", {"partner_id": cust, "warehouse_id": wh, "lines": [
        {"product_id": a, "quantity": "3", "discount_percent": "5"}, {"product_id": b, "quantity": "7"}]},
        role="sales")
    erp.post(f"/sales-orders/{so['id']}/confirm", role="sales", expect=200)
    erp.post(f"/sales-orders/{so['id']}/deliver", role="warehouse", expect=200)
    return wh, cust, a, b, so


def test_customer_returns_credit_notes_and_the_customers_credit(erp):
    wh, cust, a, b, so = sold_and_invoiced(erp)
    la, lb = (l["id"] for l in so["lines"])
    # delivered, not invoiced: nothing to credit yet
    early = erp.req("POST", f"/sales-orders/{so['id']}/returns", json={"lines": [{"order_line_id": la, "quantity": "1"}]},
                    expect=409).json
    assert "invoice" in early["fix"]
    inv = erp.post(f"/sales-orders/{so['id']}/invoice", role="finance")
    assert inv["gross_total"] == "474.65"  # A 285.00 + 37.05, B 140.00 + 12.60

    ret = erp.post(f"/sales-orders/{so['id']}/returns", {"reason": "damaged", "lines": [
        {"order_line_id": la, "quantity": "1"}, {"order_line_id": lb, "quantity": "2"}]}, role="warehouse")
    assert ret["state"] == "draft" and ret["credit_note"] is None
    assert balances(erp)["6401"] == Decimal("251.00")  # a draft books nothing
    posted = erp.post(f"/returns/{ret['id']}/post", {}, role="finance", expect=200)
    note = posted["credit_note"]
    assert posted["state"] == "posted" and note["number"] == "CN000001" and note["kind"] == "credit"
    assert (note["net_total"], note["tax_total"], note["gross_total"], note["applied"]) == (
        "135.00", "15.95", "150.95", "150.95")
    assert [l["unit_cost"] for l in posted["lines"]] == ["65.0000", "8.0000"]
    cust_lines = entry_lines(erp, "credit-note:")
    assert sorted(cust_lines) == sorted([("1122", "0.00", "150.95", cust), ("6001", "135.00", "0.00", None),
                                         ("2221.02", "15.95", "0.00", None)])
    assert sorted(entry_lines(erp, "return:")) == sorted([("1405", "81.00", "0.00", None), ("6401", "0.00", "81.00", None)])
    got = erp.get(f"/invoices/{inv['id']}", role="finance")
    assert (got["state"], got["credited"], got["outstanding"]) == ("partial", "150.95", "323.70")
    erp.post(f"/invoices/{inv['id']}/payments", {"amount": "323.70"}, role="finance")
    assert erp.get(f"/sales-orders/{so['id']}", role="sales")["state"] == "paid"

    # more than is left: 422 naming the line; the rest of A after the invoice was paid: the customer's credit
    over = erp.req("POST", f"/sales-orders/{so['id']}/returns", json={"lines": [{"order_line_id": la, "quantity": "2.001"}]},
                   expect=422).json
    assert over["field"] == "lines.0.quantity" and "2.000" in over["detail"]
    second = erp.post(f"/sales-orders/{so['id']}/returns", {"lines": [{"order_line_id": la, "quantity": "2"}]})
    note2 = erp.post(f"/returns/{second['id']}/post", {}, role="finance", expect=200)["credit_note"]
    assert (note2["gross_total"], note2["applied"], note2["unapplied"]) == ("214.70", "0.00", "214.70")
    erp.post(f"/returns/{second['id']}/post", {}, role="finance", expect=409)  # posted is final
    assert balances(erp) == {"1405": Decimal("1660.00"), "2241": Decimal("-1700.00"), "6401": Decimal("40.00"),
                             "6001": Decimal("-100.00"), "2221.02": Decimal("-9.00"), "1122": Decimal("-214.70"),
                             "1002": Decimal("323.70")}
    with erp.db.session(write=False) as s:
        ledger = reports.partner_ledger(s, cust)
        aging = reports.aging(s, "customer")
        due = reports.outstanding(s, "customer")
    assert ledger["balance"] == Decimal("-214.70")
    assert [l["document"]["number"] for l in ledger["lines"]][-1] == "CN000002"
    assert aging["total"] == Decimal("-214.70") and due["total"] == Decimal("-214.70")
    notes = erp.get("/credit-notes", role="finance", query={"partner_id": cust})
    assert notes["total"] == 2 and [n["number"] for n in notes["items"]] == ["CN000002", "CN000001"]
    assert erp.get(f"/stock", query={"product_id": a})["items"][0]["quantity"] == "20.000"
    assert_clean(erp)


def test_supplier_return_debit_note_at_average_cost(erp):
    wh, sup = erp.warehouse(), erp.supplier()
    a = erp.product("A", "9.00")
    erp.stock_in(sup, wh, [(a, 10, "4.00")])
    po = erp.stock_in(sup, wh, [(a, 10, "5.00")])  # average (40 + 50) / 20 = 4.50
    bill = erp.post(f"/purchase-orders/{po['id']}/bill", {"supplier_reference": "B-1"}, role="finance")
    ret = erp.post(f"/purchase-orders/{po['id']}/returns", {"lines": [
        {"order_line_id": po["lines"][0]["id"], "quantity": "4"}]}, role="warehouse")
    posted = erp.post(f"/returns/{ret['id']}/post", {}, role="finance", expect=200)
    note = posted["credit_note"]
    assert (note["number"], note["kind"], note["gross_total"], note["applied"]) == ("DN000001", "debit", "22.60", "22.60")
    assert posted["lines"][0]["unit_cost"] == "4.5000"
    assert sorted(entry_lines(erp, "debit-note:")) == sorted([
        ("2202", "22.60", "0.00", sup), ("2221.01", "0.00", "2.60", None), ("1405", "0.00", "18.00", None),
        ("6402", "0.00", "2.00", None)])
    assert balances(erp) == {"1405": Decimal("72.00"), "2241": Decimal("-40.00"), "2202": Decimal("-33.90"),
                             "2221.01": Decimal("3.90"), "6402": Decimal("-2.00")}
    assert erp.get(f"/invoices/{bill['id']}", role="finance")["outstanding"] == "33.90"
    erp.post(f"/invoices/{bill['id']}/payments", {"amount": "33.90"}, role="finance")
    assert erp.get(f"/purchase-orders/{po['id']}", role="purchasing")["state"] == "paid"
    assert erp.get("/stock", query={"product_id": a})["items"][0]["quantity"] == "16.000"
    assert_clean(erp)


@pytest.mark.postgres
@pytest.mark.parametrize("backend", ["postgres"])
def test_two_returns_of_one_order_posted_at_once(erp):
    """Each asks for 3 of the 5 delivered: one posts, the other is refused (409); nothing deadlocks."""
    wh, sup, cust = erp.warehouse(), erp.supplier(), erp.customer()
    a = erp.product("A", "10.00")
    erp.stock_in(sup, wh, [(a, 10, "4.00")])
    so = erp.post("/sales-orders", {"partner_id": cust, "warehouse_id": wh, "lines": [
        {"product_id": a, "quantity": "5"}]}, role="sales")
    for step in ("confirm", "deliver"):
        erp.post(f"/sales-orders/{so['id']}/{step}", expect=200)
    erp.post(f"/sales-orders/{so['id']}/invoice")
    line = so["lines"][0]["id"]
    drafts = [erp.post(f"/sales-orders/{so['id']}/returns", {"lines": [{"order_line_id": line, "quantity": "3"}]})["id"]
              for _ in range(2)]
    barrier, outcome = threading.Barrier(2), {}

    def post(rid):
        barrier.wait(timeout=30)

        def work():
            with erp.db.session(actor="finance") as s:
                return returns.post(s, rid).state
        try:
            outcome[rid] = retrying(work)
        except Conflict as exc:
            outcome[rid] = exc

    threads = [threading.Thread(target=post, args=(r,)) for r in drafts]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    assert sorted(outcome.values(), key=str)[-1] == "posted", outcome
    refused = [v for v in outcome.values() if v != "posted"]
    assert len(refused) == 1 and isinstance(refused[0], Conflict) and "no longer" in refused[0].detail, outcome
    with erp.db.session(write=False) as s:
        assert returns.returned_quantities(s, "customer", so["id"]) == {line: Decimal("3.000")}
        assert invariants.check_all(s) == []


def test_credit_amounts_of_a_line_add_up_to_it():
    """Returning a line in three parts: the parts are priced as the line, the last takes what is left."""
    line = rules.InvoicedLine(D("3"), D("33.33"), D("0"), D("13"), D("99.99"), D("13.00"), D("99.99"), D("13.00"))
    first = rules.credit_amounts(line, rules.Returned(), D("1"))
    assert (first.net, first.tax) == (D("33.33"), D("4.33"))
    before = rules.Returned(D("1"), first.net, first.tax, first.net_currency, first.tax_currency)
    second = rules.credit_amounts(line, before, D("1"))
    before = rules.Returned(D("2"), first.net + second.net, first.tax + second.tax,
                            first.net_currency + second.net_currency, first.tax_currency + second.tax_currency)
    last = rules.credit_amounts(line, before, D("1"))
    assert first.tax + second.tax + last.tax == D("13.00") and last.tax == D("4.34")
    with pytest.raises(rules.OverReturn, match="exceeds the 1.000"):
        rules.credit_amounts(line, before, D("1.5"))
    assert rules.settle(D("50"), D("50"), D("30"), D("30")) == (D("30"), D("30"))
    assert rules.settle(D("20"), D("20"), D("30"), D("30")) == (D("20"), D("20"))


def test_a_credit_note_in_the_invoices_currency(sqlite_erp):
    """A EUR invoice: the note reverses the returned line in EUR at the invoice's rate, and what is left is
    paid off in EUR to the cent of both currencies."""
    erp = sqlite_erp
    wh, sup, cust = erp.warehouse(), erp.supplier(), erp.customer()
    a = erp.product("A", "10.00")
    erp.stock_in(sup, wh, [(a, 10, "40.00")])
    so = erp.post("/sales-orders", {"partner_id": cust, "warehouse_id": wh, "currency": "EUR", "exchange_rate": "7.8",
                                    "lines": [{"product_id": a, "quantity": "3", "unit_price": "10.00"}]})
    for step in ("confirm", "deliver"):
        erp.post(f"/sales-orders/{so['id']}/{step}", expect=200)
    inv = erp.post(f"/sales-orders/{so['id']}/invoice")
    assert (inv["gross_total_currency"], inv["gross_total"]) == ("33.90", "264.42")
    ret = erp.post(f"/sales-orders/{so['id']}/returns", {"lines": [{"order_line_id": so["lines"][0]["id"], "quantity": "1"}]})
    note = erp.post(f"/returns/{ret['id']}/post", {}, expect=200)["credit_note"]
    assert (note["currency"], note["gross_total_currency"], note["gross_total"]) == ("EUR", "11.30", "88.14")
    erp.post(f"/invoices/{inv['id']}/payments", {"amount": "22.60"})
    got = erp.get(f"/invoices/{inv['id']}")
    assert (got["state"], got["amount_paid"], got["credited"], got["outstanding"]) == ("paid", "176.28", "88.14", "0.00")
    assert "1122" not in balances(erp)
    assert_clean(erp)
