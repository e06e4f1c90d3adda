"""What sales and purchase orders share: lines priced by the pure rules, totals from lines."""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.orm import Session

from ..domain import pricing
from ..domain.money import D

# Money columns are NUMERIC(18,2); staying well below that keeps SQLite's sums exact too.
MAX_AMOUNT = D("999999999999.99")
from ..errors import ValidationFailed
from ..models import Partner, Product, TaxRate, Warehouse


def tax_rates(s: Session) -> dict[str, object]:
    return {t.code: t.rate_percent for t in s.scalars(select(TaxRate))}


def load_partner(s: Session, partner_id: int, role: str) -> Partner:
    partner = s.get(Partner, partner_id)
    flag = "is_customer" if role == "customer" else "is_supplier"
    if partner is None or not getattr(partner, flag) or not partner.active:
        raise ValidationFailed(f"partner {partner_id} is not an active {role}", field="partner_id",
                               fix=f"Use the id of an active {role} (GET /api/v1/partners?kind={role}).")
    return partner


def load_warehouse(s: Session, warehouse_id: int) -> Warehouse:
    wh = s.get(Warehouse, warehouse_id)
    if wh is None:
        raise ValidationFailed(f"warehouse {warehouse_id} does not exist", field="warehouse_id",
                               fix="Use the id of a warehouse from GET /api/v1/warehouses.")
    return wh


def build_lines(s: Session, line_model, lines_in: list[dict], price_for) -> list:
    """Create line rows; `price_for(product, quantity)` gives the unit price when none is sent."""
    if not lines_in:
        raise ValidationFailed("an order needs at least one line", field="lines", fix="Add a line.")
    rates = tax_rates(s)
    out = []
    for i, data in enumerate(lines_in):
        product = s.get(Product, data["product_id"])
        if product is None or not product.active:
            raise ValidationFailed(f"product {data['product_id']} does not exist or is inactive",
                                   field=f"lines.{i}.product_id",
                                   fix="Use the id of an active product (GET /api/v1/products).")
        qty = D(data["quantity"])
        price = D(data["unit_price"]) if data.get("unit_price") is not None else price_for(product, qty)
        line_in = pricing.LineInput(quantity=qty, unit_price=price,
                                    discount_percent=D(data.get("discount_percent") or 0),
                                    tax_rate_percent=rates[product.tax_code])
        try:
            amounts = pricing.line_amounts(line_in)
        except ValueError as exc:
            raise ValidationFailed(str(exc), field=f"lines.{i}", fix="Correct the line's figures.") from None
        if amounts.gross > MAX_AMOUNT:
            raise ValidationFailed(f"line amount {amounts.gross} exceeds the largest amount {MAX_AMOUNT}",
                                   field=f"lines.{i}.quantity", fix="Split the order, or lower the quantity or price.")
        out.append(line_model(product_id=product.id, quantity=qty, unit_price=price,
                              discount_percent=line_in.discount_percent,
                              tax_rate_percent=line_in.tax_rate_percent,
                              net_amount=amounts.net, tax_amount=amounts.tax))
    return out


def set_totals(order) -> None:
    totals = pricing.document_totals([
        pricing.LineInput(l.quantity, l.unit_price, l.discount_percent, l.tax_rate_percent)
        for l in order.lines])
    if totals.gross > MAX_AMOUNT:
        raise ValidationFailed(f"order total {totals.gross} exceeds the largest amount {MAX_AMOUNT}",
                               field="lines", fix="Split the order into several smaller ones.")
    order.net_total, order.tax_total, order.gross_total = totals.net, totals.tax, totals.gross


def list_query(model, *, state=None, partner_id=None):
    stmt = select(model).order_by(model.id.desc())
    if state:
        stmt = stmt.where(model.state == state)
    if partner_id:
        stmt = stmt.where(model.partner_id == partner_id)
    return stmt
