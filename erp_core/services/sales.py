"""Sales orders: draft -> confirmed -> delivered -> invoiced -> paid (or cancelled)."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal

from sqlalchemy import select
from sqlalchemy.orm import Session

from ..domain import journal, pricing
from ..domain.money import ZERO
from ..domain.states import SALES_ORDER
from ..models import Invoice, PriceList, PriceListItem, Product, SalesOrder, SalesOrderLine
from . import billing, ledger, stock
from .common import full, get_or_404, next_number, step, transition
from .documents import build_lines, currency_of, load_partner, load_warehouse, quote, replace_draft, set_totals


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
    order = SalesOrder(partner_id=partner.id, warehouse_id=data["warehouse_id"],
                       state=SALES_ORDER.initial, notes=data.get("notes") or "",
                       channel=data.get("channel") or "direct", external_id=data.get("external_id"),
                       created_by=s.info.get("actor", "system"), currency=currency, exchange_rate=rate)
    order.lines = build_lines(s, SalesOrderLine, data["lines"],
                              lambda product, qty: customer_price(s, partner.id, product, qty), rate)
    set_totals(order)
    # numbered last: the series' row stays locked from here to the commit, so concurrent orders queue
    # on it for as short a time as can be (the lines are priced and checked before)
    order.number = next_number(s, "SO")
    s.add(order)
    s.flush()
    return order


def price_preview(s: Session, data: dict):
    """The lines and totals `create` would store for this customer and these lines (the customer's price
    list, the line's discount, tax), without storing anything: (lines, totals), see documents.quote."""
    partner = load_partner(s, data["partner_id"], "customer")
    _currency, rate = currency_of(data)
    return quote(s, SalesOrderLine, data["lines"], lambda product, qty: customer_price(s, partner.id, product, qty),
                 rate)


def update_draft(s: Session, order_id: int, data: dict) -> SalesOrder:
    """Replace a draft order's customer, warehouse, notes, currency and lines, priced as on create
    (documents.replace_draft)."""
    order = get(s, order_id, lock=True)
    replace_draft(s, order, SALES_ORDER, "customer", SalesOrderLine,
                  lambda partner: lambda product, qty: customer_price(s, partner.id, product, qty), data)
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
    products = stock.lock_products(s, [l.product_id for l in order.lines])  # the lock order of services.stock
    for line in sorted(order.lines, key=lambda l: l.product_id):
        product = products[line.product_id]
        cost += stock.take_value(s, product, line.quantity)
        stock.move(s, product, line.quantity, kind="delivery", reference=order.number, from_wh=wh)
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
