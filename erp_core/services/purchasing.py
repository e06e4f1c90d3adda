"""Purchase orders: draft -> confirmed -> received -> billed -> paid (or cancelled)."""

from __future__ import annotations

import datetime as dt

from sqlalchemy.orm import Session

from ..domain import journal
from ..domain.money import ZERO, round_cost
from ..domain.states import PURCHASE_ORDER
from ..errors import ValidationFailed
from ..models import Invoice, PurchaseOrder, PurchaseOrderLine
from . import billing, ledger, stock
from .common import full, get_or_404, next_number, step, transition
from .documents import build_lines, currency_of, load_partner, load_warehouse, quote, replace_draft, set_totals


def _price_required(product, _qty):
    raise ValidationFailed(f"no unit_price for {product.sku}", field="lines.unit_price",
                           fix="Send the supplier's unit price on every purchase line.")


def create(s: Session, data: dict) -> PurchaseOrder:
    partner = load_partner(s, data["partner_id"], "supplier")
    load_warehouse(s, data["warehouse_id"])
    currency, rate = currency_of(data)
    order = PurchaseOrder(partner_id=partner.id, warehouse_id=data["warehouse_id"],
                          state=PURCHASE_ORDER.initial, notes=data.get("notes") or "",
                          created_by=s.info.get("actor", "system"), currency=currency, exchange_rate=rate)
    order.lines = build_lines(s, PurchaseOrderLine, data["lines"], _price_required, rate)
    set_totals(order)
    order.number = next_number(s, "PO")  # last: the series' row is locked from here to the commit
    s.add(order)
    s.flush()
    return order


def price_preview(s: Session, data: dict):
    """The lines and totals `create` would store (the supplier's prices as sent), stored nowhere."""
    load_partner(s, data["partner_id"], "supplier")
    _currency, rate = currency_of(data)
    return quote(s, PurchaseOrderLine, data["lines"], _price_required, rate)


def update_draft(s: Session, order_id: int, data: dict) -> PurchaseOrder:
    """Replace a draft order's supplier, warehouse, notes, currency and lines (documents.replace_draft)."""
    order = get(s, order_id, lock=True)
    replace_draft(s, order, PURCHASE_ORDER, "supplier", PurchaseOrderLine, lambda _partner: _price_required, data)
    return order


def get(s: Session, order_id: int, lock: bool = False) -> PurchaseOrder:
    return get_or_404(s, PurchaseOrder, order_id, "purchase order", lock=lock, options=full(PurchaseOrder))


def confirm(s: Session, order_id: int) -> PurchaseOrder:
    return step(s, get(s, order_id, lock=True), PURCHASE_ORDER, "confirm")


def cancel(s: Session, order_id: int) -> PurchaseOrder:
    return step(s, get(s, order_id, lock=True), PURCHASE_ORDER, "cancel")


def receive(s: Session, order_id: int, date: dt.date | None = None) -> PurchaseOrder:
    """Move the goods in at their net unit cost (moving average) and book inventory."""
    order = get(s, order_id, lock=True)
    transition(PURCHASE_ORDER, order, "receive")
    value = ZERO
    lots: dict[int, int] = {}  # one lot per product received
    products = stock.lock_products(s, [l.product_id for l in order.lines])  # the lock order of services.stock
    for line in sorted(order.lines, key=lambda l: l.product_id):
        product = products[line.product_id]
        if product.id not in lots:
            lots[product.id] = stock.new_lot(s, product.id, order.number).id
        stock.receive(s, product, line.quantity, round_cost(line.net_amount / line.quantity),
                      order.warehouse_id, order.number, lots[product.id], value=line.net_amount)
        value += line.net_amount
    ledger.post(s, f"receipt:{order.number}", f"Goods received {order.number}", journal.goods_received(value), date)
    s.flush()
    return order


def bill(s: Session, order_id: int, supplier_reference: str | None = None, date: dt.date | None = None) -> Invoice:
    """Book payable and input VAT against the goods received."""
    order = get(s, order_id, lock=True)
    transition(PURCHASE_ORDER, order, "bill")
    return billing.issue(s, order, "supplier", date, supplier_reference)
