"""Partners, products, price lists, warehouses: create and update with clear conflicts."""

from __future__ import annotations

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from .. import crypto
from ..domain import search
from ..domain.money import D
from ..errors import Conflict, ValidationFailed
from ..models import Partner, PriceList, PriceListItem, Product, TaxRate, Warehouse
from . import bankdetails
from .common import get_or_404, known

SENSITIVE = ("tax_id", "bank_account", "phone")


def _unique(s: Session, model, column: str, value, exclude_id=None) -> None:
    """Codes are unique regardless of case ('p-1' and 'P-1' are the same SKU; migration 0006's indexes)."""
    stmt = select(getattr(model, column)).where(func.lower(getattr(model, column)) == value.lower())
    if exclude_id is not None:
        stmt = stmt.where(model.id != exclude_id)
    existing = s.scalar(stmt)
    if existing is not None:
        same = f" ({existing!r}: codes are unique regardless of case)" if existing != value else ""
        raise Conflict(f"a {model.__tablename__[:-1].replace('_', ' ')} with {column} {value!r} already "
                       f"exists{same}.", field=column, fix=f"Choose another {column}, or update the existing record.")


def matching(model, q: str):
    """The WHERE of a search: the folded query inside the row's folded search key (domain.search), the
    same rows on every backend, whatever the case or accents of either."""
    return model.search_text.contains(search.fold(q), autoescape=True)


PICK_LIMIT = 20


def pick(s: Session, model, q: str, limit: int = PICK_LIMIT, role: str | None = None) -> tuple[list, bool]:
    """The first `limit` active products or partners (customers or suppliers with `role`) whose code or
    name holds the query (folded: any case, any accents, both backends), a code equal to the query
    first, then by code; and whether there are more. Two queries that stop early: the code looked up
    (its case-insensitive unique index), then the matches in code order with a LIMIT (the code's index
    read in order until enough rows match)."""
    code = Product.sku if model is Product else model.code
    q = (q or "").strip()[:100]
    stmt = select(model).where(model.active.is_(True))
    if role:
        stmt = stmt.where(Partner.is_customer.is_(True) if role == "customer" else Partner.is_supplier.is_(True))
    exact = by_code(s, model, q, role) if q else None
    if q:
        stmt = stmt.where(matching(model, q))
    if exact is not None:
        stmt = stmt.where(model.id != exact.id)
    rows = ([exact] if exact is not None else []) + list(s.scalars(stmt.order_by(code).limit(limit + 1)))
    return rows[:limit], len(rows) > limit


def by_code(s: Session, model, code: str, role: str | None = None):
    """The active product (SKU) or partner with this code, whatever its case; None when there is none."""
    column = Product.sku if model is Product else model.code
    stmt = select(model).where(func.lower(column) == code.strip().lower(), model.active.is_(True))
    if role:
        stmt = stmt.where(Partner.is_customer.is_(True) if role == "customer" else Partner.is_supplier.is_(True))
    return s.scalar(stmt)


def _apply(obj, data: dict) -> None:
    for key, value in data.items():
        setattr(obj, key, value)


# ---- partners -------------------------------------------------------------------------------

def create_partner(s: Session, data: dict, initial_bank_account: bool = False) -> Partner:
    """initial_bank_account: the seed's demo data only; a user's bank account goes through bankdetails."""
    if not initial_bank_account:
        bankdetails.refuse_direct_change(data)
    _unique(s, Partner, "code", data["code"])
    p = Partner()
    _apply(p, data)
    _check_partner(p)
    s.add(p)
    s.flush()
    return p


def update_partner(s: Session, partner_id: int, data: dict) -> Partner:
    bankdetails.refuse_direct_change(data)
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
    known(s, Product, product_id, "product_id", "product")
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


def update_warehouse(s: Session, warehouse_id: int, data: dict) -> Warehouse:
    """A warehouse's name and address (its code, which documents name, stays)."""
    w = get_or_404(s, Warehouse, warehouse_id, "warehouse", lock=True)
    _apply(w, data)
    s.flush()
    return w
