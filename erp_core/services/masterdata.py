"""Partners, products, price lists, warehouses: create and update with clear conflicts."""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.orm import Session

from .. import crypto
from ..domain.money import D
from ..errors import Conflict, ValidationFailed
from ..models import Partner, PriceList, PriceListItem, Product, TaxRate, Warehouse
from .common import get_or_404

SENSITIVE = ("tax_id", "bank_account", "phone")


def _unique(s: Session, model, column: str, value, exclude_id=None) -> None:
    stmt = select(model.id).where(getattr(model, column) == value)
    if exclude_id is not None:
        stmt = stmt.where(model.id != exclude_id)
    if s.scalar(stmt) is not None:
        raise Conflict(f"a {model.__tablename__[:-1].replace('_', ' ')} with {column} {value!r} already exists.",
                       field=column, fix=f"Choose another {column}, or update the existing record.")


def _apply(obj, data: dict) -> None:
    for key, value in data.items():
        setattr(obj, key, value)


# ---- partners -------------------------------------------------------------------------------

def create_partner(s: Session, data: dict) -> Partner:
    _unique(s, Partner, "code", data["code"])
    p = Partner()
    _apply(p, data)
    _check_partner(p)
    s.add(p)
    s.flush()
    return p


def update_partner(s: Session, partner_id: int, data: dict) -> Partner:
    p = get_or_404(s, Partner, partner_id, "partner")
    if "code" in data:
        _unique(s, Partner, "code", data["code"], exclude_id=p.id)
    _apply(p, data)
    _check_partner(p)
    s.flush()
    return p


def _check_partner(p: Partner) -> None:
    if not (p.is_customer or p.is_supplier):
        raise ValidationFailed("a partner must be a customer, a supplier or both", field="is_customer",
                               fix="Set is_customer or is_supplier to true.")


def partner_view(p: Partner, may_see_sensitive: bool) -> dict:
    """Decrypted sensitive fields for roles that need them, masked for the others."""
    out = {c: getattr(p, c) for c in ("id", "code", "name", "is_customer", "is_supplier", "email",
                                      "address", "payment_terms_days", "active")}
    for f in SENSITIVE:
        value = getattr(p, f)
        out[f] = value if may_see_sensitive else crypto.mask(value)
    return out


# ---- products and price lists -----------------------------------------------------------------

def _check_tax(s: Session, code: str) -> None:
    if s.get(TaxRate, code) is None:
        codes = ", ".join(s.scalars(select(TaxRate.code)))
        raise ValidationFailed(f"unknown tax code {code!r}", field="tax_code", fix=f"Use one of: {codes}.")


def create_product(s: Session, data: dict) -> Product:
    _unique(s, Product, "sku", data["sku"])
    _check_tax(s, data["tax_code"])
    p = Product(avg_cost=D("0"))
    _apply(p, data)
    s.add(p)
    s.flush()
    return p


def update_product(s: Session, product_id: int, data: dict) -> Product:
    p = get_or_404(s, Product, product_id, "product")
    if "sku" in data:
        _unique(s, Product, "sku", data["sku"], exclude_id=p.id)
    if "tax_code" in data:
        _check_tax(s, data["tax_code"])
    _apply(p, data)
    s.flush()
    return p


def set_customer_price(s: Session, partner_id: int, product_id: int, unit_price, min_quantity=0) -> PriceListItem:
    """Put a price on the customer's own price list (created on first use)."""
    partner = get_or_404(s, Partner, partner_id, "partner")
    if not partner.is_customer:
        raise ValidationFailed(f"partner {partner_id} is not a customer", field="partner_id",
                               fix="Price lists belong to customers.")
    get_or_404(s, Product, product_id, "product")
    plist = s.scalar(select(PriceList).where(PriceList.partner_id == partner_id))
    if plist is None:
        plist = PriceList(name=f"{partner.code} prices", partner_id=partner_id)
        s.add(plist)
        s.flush()
    item = s.scalar(select(PriceListItem).where(PriceListItem.price_list_id == plist.id,
                                                PriceListItem.product_id == product_id,
                                                PriceListItem.min_quantity == D(min_quantity)))
    if item is None:
        item = PriceListItem(price_list_id=plist.id, product_id=product_id, min_quantity=D(min_quantity))
        s.add(item)
    item.unit_price = D(unit_price)
    s.flush()
    return item


def customer_prices(s: Session, partner_id: int) -> list[dict]:
    get_or_404(s, Partner, partner_id, "partner")
    rows = s.execute(select(PriceListItem, Product.sku)
                     .join(PriceList, PriceList.id == PriceListItem.price_list_id)
                     .join(Product, Product.id == PriceListItem.product_id)
                     .where(PriceList.partner_id == partner_id)
                     .order_by(Product.sku, PriceListItem.min_quantity)).all()
    return [{"product_id": i.product_id, "sku": sku, "unit_price": i.unit_price, "min_quantity": i.min_quantity}
            for i, sku in rows]


# ---- warehouses -------------------------------------------------------------------------------

def create_warehouse(s: Session, data: dict) -> Warehouse:
    _unique(s, Warehouse, "code", data["code"])
    w = Warehouse()
    _apply(w, data)
    s.add(w)
    s.flush()
    return w
