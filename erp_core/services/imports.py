"""Import of marketplace (e-commerce) orders: idempotent by channel and external id."""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.orm import Session

from ..errors import ErpError, ValidationFailed
from ..models import Partner, Product, SalesOrder
from . import sales


def import_order(s: Session, channel: str, warehouse_id: int, order: dict, confirm: bool) -> dict:
    """One marketplace order -> one sales order. Returns the outcome; never raises for bad data."""
    ext = order["external_id"]
    existing = s.scalar(select(SalesOrder).where(SalesOrder.channel == channel, SalesOrder.external_id == ext))
    if existing is not None:
        return {"external_id": ext, "status": "duplicate", "order_id": existing.id,
                "order_number": existing.number, "reason": "already imported"}
    try:
        with s.begin_nested():
            customer = s.scalar(select(Partner).where(Partner.code == order["customer_code"]))
            if customer is None:
                raise ValidationFailed(f"unknown customer code {order['customer_code']!r}")
            lines = []
            for i, line in enumerate(order["lines"]):
                product = s.scalar(select(Product).where(Product.sku == line["sku"]))
                if product is None:
                    raise ValidationFailed(f"line {i}: unknown SKU {line['sku']!r}")
                lines.append({"product_id": product.id, "quantity": line["quantity"],
                              "unit_price": line.get("unit_price"),
                              "discount_percent": line.get("discount_percent")})
            so = sales.create(s, {"partner_id": customer.id, "warehouse_id": warehouse_id, "lines": lines,
                                  "notes": order.get("notes") or "", "channel": channel, "external_id": ext})
            if confirm:
                sales.confirm(s, so.id)
    except ErpError as exc:
        return {"external_id": ext, "status": "rejected", "reason": exc.detail}
    return {"external_id": ext, "status": "accepted", "order_id": so.id, "order_number": so.number}
