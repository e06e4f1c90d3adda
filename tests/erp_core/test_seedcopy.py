"""erp_core.seedcopy: copies of a year of documents made through the services are whole businesses of
their own (new codes, gapless document numbers, references that follow), every invariant still holds,
and the ERP goes on numbering after them, on SQLite and PostgreSQL."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal

import pytest
from sqlalchemy import func, select

from erp_core import seedcopy
from erp_core.db import Database
from erp_core.invariants import check_all
from erp_core.models import Invoice, JournalEntry, Partner, Product, SalesOrder, StockLevel, StockMove
from erp_core.services import billing, masterdata, purchasing, sales

from ..conftest import fresh_database_url

DAY = dt.date(2026, 3, 2)


def trade(s, suffix: str) -> None:
    """Buy, receive, bill, sell, deliver, invoice and get paid: one small business's year."""
    wh = masterdata.create_warehouse(s, {"code": f"W{suffix}", "name": "Main", "address": "Road 1"})
    customer = masterdata.create_partner(s, {"code": f"C0000{suffix}", "name": "Customer", "is_customer": True,
                                             "phone": f"+386 {suffix}"})
    supplier = masterdata.create_partner(s, {"code": f"S0000{suffix}", "name": "Supplier", "is_supplier": True})
    product = masterdata.create_product(s, {"sku": f"HW-0000{suffix}", "name": "Bolt", "unit": "pcs",
                                            "sale_price": Decimal("9.90"), "tax_code": "VAT13"})
    po = purchasing.create(s, {"partner_id": supplier.id, "warehouse_id": wh.id, "notes": "", "lines": [
        {"product_id": product.id, "quantity": Decimal(10), "unit_price": Decimal("4.10")}]})
    purchasing.confirm(s, po.id)
    purchasing.receive(s, po.id, date=DAY)
    purchasing.bill(s, po.id, supplier_reference="R-1", date=DAY)
    so = sales.create(s, {"partner_id": customer.id, "warehouse_id": wh.id, "channel": "direct",
                          "lines": [{"product_id": product.id, "quantity": Decimal(3)}]})
    sales.confirm(s, so.id)
    sales.deliver(s, so.id, date=DAY)
    invoice = sales.invoice(s, so.id, date=DAY)
    billing.register_payment(s, invoice.id, Decimal("10.00"), paid_on=DAY)


@pytest.mark.parametrize("backend", ["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def test_copies_are_businesses_of_their_own(backend, request, tmp_path):
    db = Database(fresh_database_url(backend, request, tmp_path))
    try:
        with db.session() as s:
            trade(s, "1")  # something that is not copied: the copies start after it
        before = seedcopy.Mark.take(db)
        with db.session() as s:
            trade(s, "2")
        after = seedcopy.Mark.take(db)
        seen = []
        inserted = seedcopy.copy(db, before, after, 2, progress=lambda *a: seen.append(a))
        assert inserted > 0 and seen[-1] == ("copy", inserted, inserted)

        with db.session() as s:
            assert check_all(s) == []
            assert s.scalars(select(SalesOrder.number).order_by(SalesOrder.id)).all() == \
                ["SO000001", "SO000002", "SO000003", "SO000004"]
            assert s.scalars(select(Partner.code).order_by(Partner.id)).all() == \
                ["C00001", "S00001", "C00002", "S00002", "C00004", "S00004", "C00006", "S00006"]
            # encrypted values are bound to their row: each copy's are sealed again for its own ids
            assert [p.phone for p in s.scalars(select(Partner).where(Partner.is_customer).order_by(Partner.id))] == \
                ["+386 1", "+386 2", "+386 2", "+386 2"]
            assert s.scalars(select(Product.sku).order_by(Product.id)).all() == \
                ["HW-00001", "HW-00002", "HW-00003", "HW-00004"]
            # each copy's invoice, entry and stock refer to its own order, product and partner
            last = s.scalars(select(Invoice).where(Invoice.kind == "customer").order_by(Invoice.id.desc())).first()
            order = s.get(SalesOrder, last.sales_order_id)
            assert (last.number, order.number, order.partner_id) == ("INV000004", "SO000004", last.partner_id)
            entry = s.get(JournalEntry, last.journal_entry_id)
            assert "INV000004" in entry.source + entry.memo and entry.date == DAY
            moves = s.scalars(select(StockMove.reference).order_by(StockMove.id.desc()).limit(1)).all()
            assert moves == ["SO000004"]
            assert s.scalar(select(func.count()).select_from(StockLevel)) == 4

            # the ERP numbers on after the copies, without clashing with their ids
            customer = masterdata.create_partner(s, {"code": "C00099", "name": "New", "is_customer": True})
            so = sales.create(s, {"partner_id": customer.id, "warehouse_id": order.warehouse_id, "channel": "direct",
                                  "lines": [{"product_id": 4, "quantity": Decimal(1)}]})
            assert so.number == "SO000005" and so.id == 5 and customer.id == 9
    finally:
        db.dispose()
