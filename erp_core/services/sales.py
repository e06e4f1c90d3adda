"""Sales orders: draft -> confirmed -> delivered -> invoiced -> paid (or cancelled)."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal

from sqlalchemy import select
from sqlalchemy.orm import Session

from ..domain import costing, journal, pricing
from ..domain.money import ZERO
from ..domain.states import SALES_ORDER
from ..models import Invoice, PriceList, PriceListItem, Product, SalesOrder, SalesOrderLine
from . import billing, ledger, stock
from .common import full, get_or_404, next_number, step, transition
from .documents import build_lines, currency_of, load_partner, load_warehouse, set_totals


def customer_price(s: Session, partner_id: int, product: Product, qty: Decimal) -> Decimal:
    """The customer's price list (best quantity break) or else the product's sale price."""
    item_price = s.scalar(
        select(PriceListItem.unit_price)
        .join(PriceList, PriceList.id == PriceListItem.price_list_id)
        .where(PriceList.partner_id == partner_id, PriceListItem.product_id == product.id,
               PriceListItem.min_quantity <= qty)
        .order_by(PriceListItem.min_quantity.desc()).limit(1))
    return pricing.pick_unit_price(product.sale_price, item_price)


def create(s: Session, data: dict) -> SalesOrder:
    partner = load_partner(s, data["partner_id"], "customer")
    load_warehouse(s, data["warehouse_id"])
    currency, rate = currency_of(data)
    order = SalesOrder(number=next_number(s, "SO"), partner_id=partner.id, warehouse_id=data["warehouse_id"],
                       state=SALES_ORDER.initial, notes=data.get("notes") or "",
                       channel=data.get("channel") or "direct", external_id=data.get("external_id"),
                       created_by=s.info.get("actor", "system"), currency=currency, exchange_rate=rate)
    order.lines = build_lines(s, SalesOrderLine, data["lines"],
                              lambda product, qty: customer_price(s, partner.id, product, qty), rate)
    set_totals(order)
    s.add(order)
    s.flush()
    return order


def get(s: Session, order_id: int, lock: bool = False) -> SalesOrder:
    return get_or_404(s, SalesOrder, order_id, "sales order", lock=lock, options=full(SalesOrder))


def confirm(s: Session, order_id: int) -> SalesOrder:
    return step(s, get(s, order_id, lock=True), SALES_ORDER, "confirm")


def cancel(s: Session, order_id: int) -> SalesOrder:
    return step(s, get(s, order_id, lock=True), SALES_ORDER, "cancel")


def deliver(s: Session, order_id: int, warehouse_id: int | None = None, date: dt.date | None = None) -> SalesOrder:
    """Move the goods out of the chosen warehouse and book cost of goods at moving-average cost."""
    order = get(s, order_id, lock=True)
    transition(SALES_ORDER, order, "deliver")
    wh = load_warehouse(s, warehouse_id or order.warehouse_id).id
    order.warehouse_id = wh
    cost = ZERO
    for line in sorted(order.lines, key=lambda l: l.product_id):  # one lock order: no deadlocks
        product = s.get(Product, line.product_id)
        stock.move(s, product, line.quantity, kind="delivery", reference=order.number, from_wh=wh)
        cost += costing.cost_of(line.quantity, product.avg_cost)
    if cost:
        ledger.post(s, f"delivery:{order.number}", f"Cost of goods {order.number}",
                    journal.goods_delivered(cost), date)
    s.flush()
    return order


def invoice(s: Session, order_id: int, date: dt.date | None = None) -> Invoice:
    """Book receivable, revenue and output VAT."""
    order = get(s, order_id, lock=True)
    transition(SALES_ORDER, order, "invoice")
    return billing.issue(s, order, "customer", date)
