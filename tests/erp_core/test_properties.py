"""Property tests: for random orders with discounts and tax rates, every posted entry balances
and document totals equal the sum of their rounded lines."""

from decimal import Decimal

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import func, select

from erp_core.domain import journal, pricing
from erp_core.domain.money import round_money
from erp_core import invariants
from erp_core.models import JournalEntry, SalesOrder
from erp_core.services import billing, masterdata, purchasing, sales

TAXES = {"VAT13": Decimal("13"), "VAT9": Decimal("9"), "VAT6": Decimal("6"), "VAT0": Decimal("0")}

quantities = st.decimals(min_value=Decimal("0.001"), max_value=Decimal("10000"), places=3)
prices = st.decimals(min_value=Decimal("0"), max_value=Decimal("100000"), places=2)
discounts = st.decimals(min_value=Decimal("0"), max_value=Decimal("100"), places=2)
line_inputs = st.builds(pricing.LineInput, quantity=quantities, unit_price=prices, discount_percent=discounts,
                        tax_rate_percent=st.sampled_from(list(TAXES.values())))


@given(st.lists(line_inputs, min_size=1, max_size=12))
def test_totals_equal_sum_of_rounded_lines(lines):
    totals = pricing.document_totals(lines)
    amounts = [pricing.line_amounts(l) for l in lines]
    assert all(a.net == round_money(a.net) and a.tax == round_money(a.tax) for a in amounts)
    assert totals.net == sum(a.net for a in amounts)
    assert totals.tax == sum(a.tax for a in amounts)
    assert totals.gross == totals.net + totals.tax
    assert sum(totals.tax_by_rate.values()) == totals.tax
    assert totals.net <= sum(l.quantity * l.unit_price for l in lines) + Decimal("0.005") * len(lines)


@given(net=prices, tax=prices, cost=prices)
def test_every_builder_balances(net, tax, cost):
    for lines in (journal.customer_invoice(1, net, tax), journal.supplier_bill(1, net, tax),
                  journal.goods_received(cost), journal.goods_delivered(cost),
                  journal.customer_payment(1, net + tax), journal.supplier_payment(1, net + tax),
                  journal.stock_adjustment(cost), journal.stock_adjustment(-cost)):
        if lines:
            journal.check_balanced(lines)
            assert sum(l.debit for l in lines) == sum(l.credit for l in lines)
            assert all((l.debit == 0) != (l.credit == 0) for l in lines)


order_lines = st.lists(st.tuples(st.integers(0, 3), quantities.filter(lambda q: q <= 50), discounts,
                                 st.one_of(st.none(), prices)), min_size=1, max_size=6)


@pytest.fixture(scope="module")
def world(request, tmp_path_factory):
    from tests.conftest import Erp, fresh_database_url

    erp = Erp(fresh_database_url("sqlite", request, tmp_path_factory.mktemp("prop")), "sqlite")
    with erp.db.session() as s:
        wh = masterdata.create_warehouse(s, {"code": "W", "name": "W"}).id
        cust = masterdata.create_partner(s, {"code": "C", "name": "C", "is_customer": True}).id
        sup = masterdata.create_partner(s, {"code": "S", "name": "S", "is_supplier": True}).id
        products = [masterdata.create_product(s, {"sku": code, "name": code, "sale_price": Decimal("19.99"),
                                                  "tax_code": code}).id for code in TAXES]
        po = purchasing.create(s, {"partner_id": sup, "warehouse_id": wh, "lines": [
            {"product_id": p, "quantity": Decimal("1000000"), "unit_price": Decimal("3.33")} for p in products]})
        purchasing.confirm(s, po.id)
        purchasing.receive(s, po.id)
    yield erp, wh, cust, products
    erp.close()


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(lines=order_lines)
def test_random_orders_post_balanced_entries(world, lines):
    erp, wh, cust, products = world
    with erp.db.session() as s:
        so = sales.create(s, {"partner_id": cust, "warehouse_id": wh, "lines": [
            {"product_id": products[i], "quantity": q, "discount_percent": d, "unit_price": p}
            for i, q, d, p in lines]})
        sales.confirm(s, so.id)
        sales.deliver(s, so.id)
        inv = sales.invoice(s, so.id)
        if inv.gross_total:
            billing.register_payment(s, inv.id, inv.gross_total)
        order = s.get(SalesOrder, so.id)
        assert order.net_total == sum(l.net_amount for l in order.lines)
        assert order.tax_total == sum(l.tax_amount for l in order.lines)
        assert order.gross_total == order.net_total + order.tax_total == inv.gross_total
    with erp.db.session(write=False) as s:
        assert invariants.journal_entries_balance(s) == []
        assert invariants.trial_balance_zero(s) == []
        assert invariants.document_totals_match_lines(s) == []
        assert s.scalar(select(func.count()).select_from(JournalEntry)) > 0
