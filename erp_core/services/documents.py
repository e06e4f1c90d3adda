"""What sales and purchase orders share: lines priced by the pure rules, totals from lines."""

from __future__ import annotations

import datetime as dt
from types import SimpleNamespace

from sqlalchemy import func, or_, select
from sqlalchemy.orm import Session

from ..domain import pricing
from ..domain.money import ONE, CurrencyError, D, document_currency, to_document
from ..errors import InvalidTransition, ValidationFailed
from ..models import Partner, Product, TaxRate, Warehouse
from .common import full
from .masterdata import matching

# Money columns are NUMERIC(18,2); staying well below that keeps SQLite's sums exact too.
MAX_AMOUNT = D("999999999999.99")


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


def currency_of(data: dict):
    """The (currency, exchange rate) a new order asks for, or a 422 naming the field and the fix."""
    try:
        return document_currency(data.get("currency"), data.get("exchange_rate"))
    except CurrencyError as exc:
        raise ValidationFailed(str(exc), field=exc.field, fix=exc.fix) from None


def build_lines(s: Session, line_model, lines_in: list[dict], price_for, rate=ONE) -> list:
    """Create line rows priced in the document's currency and converted at `rate`; a sent unit_price
    is in the document's currency, and `price_for(product, quantity)` gives a company-currency price
    (list price) when none is sent."""
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
        if data.get("unit_price") is not None:
            price = D(data["unit_price"])
        else:
            price = to_document(price_for(product, qty), rate)
        line_in = pricing.LineInput(quantity=qty, unit_price=price,
                                    discount_percent=D(data.get("discount_percent") or 0),
                                    tax_rate_percent=rates[product.tax_code])
        try:
            priced = pricing.price_line(line_in, rate)
        except ValueError as exc:
            raise ValidationFailed(str(exc), field=f"lines.{i}", fix="Correct the line's figures.") from None
        largest = max(priced.net + priced.tax, priced.net_currency + priced.tax_currency, priced.unit_price)
        if largest > MAX_AMOUNT:
            raise ValidationFailed(f"line amount {largest} exceeds the largest amount {MAX_AMOUNT}",
                                   field=f"lines.{i}.quantity",
                                   fix="Split the order, or lower the quantity, the price or the exchange rate.")
        out.append(line_model(product_id=product.id, quantity=qty, unit_price=priced.unit_price,
                              discount_percent=line_in.discount_percent,
                              tax_rate_percent=line_in.tax_rate_percent,
                              net_amount=priced.net, tax_amount=priced.tax,
                              unit_price_currency=priced.unit_price_currency,
                              net_amount_currency=priced.net_currency, tax_amount_currency=priced.tax_currency))
    return out


def set_totals(order) -> None:
    """Header totals in both currencies: the sums of the lines (pricing.totals_of)."""
    totals = pricing.totals_of([
        pricing.PricedLine(l.unit_price_currency, l.net_amount_currency, l.tax_amount_currency,
                           l.unit_price, l.net_amount, l.tax_amount) for l in order.lines])
    largest = max(totals.gross, totals.gross_currency)
    if largest > MAX_AMOUNT:
        raise ValidationFailed(f"order total {largest} exceeds the largest amount {MAX_AMOUNT}",
                               field="lines", fix="Split the order into several smaller ones.")
    order.net_total, order.tax_total, order.gross_total = totals.net, totals.tax, totals.gross
    order.net_total_currency, order.tax_total_currency = totals.net_currency, totals.tax_currency
    order.gross_total_currency = totals.gross_currency


def quote(s: Session, line_model, lines_in: list[dict], price_for, rate=ONE):
    """What an order with these lines would hold, priced exactly as create prices it (build_lines,
    set_totals) but stored nowhere: (lines, totals) with the header totals as attributes of `totals`."""
    totals = SimpleNamespace(lines=build_lines(s, line_model, lines_in, price_for, rate))
    set_totals(totals)
    return totals.lines, totals


def replace_draft(s: Session, order, machine, role: str, line_model, price_for_partner, data: dict) -> None:
    """Replace a draft order's partner (of `role`), warehouse, notes, currency and lines, priced by
    price_for_partner(partner) as create prices them; an order past its machine's initial state is refused
    (409): it is changed by cancelling it and entering a new one."""
    if order.state != machine.initial:
        raise InvalidTransition(f"{machine.name} {order.number} is {order.state}; only a draft can be edited",
                                fix="Cancel the order and enter a new one.", state=order.state)
    partner = load_partner(s, data["partner_id"], role)
    load_warehouse(s, data["warehouse_id"])
    currency, rate = currency_of(data)
    order.partner_id, order.warehouse_id, order.notes = partner.id, data["warehouse_id"], data.get("notes") or ""
    order.currency, order.exchange_rate = currency, rate
    order.lines = build_lines(s, line_model, data["lines"], price_for_partner(partner), rate)
    set_totals(order)
    s.flush()


ORDER_SORTS = ("id", "number", "order_date", "gross_total")


def list_query(model, *, state=None, partner_id=None, q=None, date_from=None, date_to=None, sort="-id"):
    """Orders by state, partner, text (the number, or the partner's code or name, contains it) and order
    date (both ends included, by UTC day), sorted by one of ORDER_SORTS ('-' first: descending)."""
    stmt = select(model).options(*full(model))
    if state:
        stmt = stmt.where(model.state == state)
    if partner_id:
        stmt = stmt.where(model.partner_id == partner_id)
    if q:
        stmt = stmt.where(or_(func.lower(model.number).contains(q.lower(), autoescape=True),
                              model.partner_id.in_(select(Partner.id).where(matching(Partner, q)))))
    if date_from:
        stmt = stmt.where(model.order_date >= dt.datetime.combine(date_from, dt.time(), dt.timezone.utc))
    if date_to and date_to < dt.date.max:
        stmt = stmt.where(model.order_date < dt.datetime.combine(date_to + dt.timedelta(days=1), dt.time(),
                                                                 dt.timezone.utc))
    key = sort.lstrip("-")
    if key not in ORDER_SORTS:
        raise ValidationFailed(f"cannot sort by {key!r}", field="sort", fix=f"Use one of: {', '.join(ORDER_SORTS)}.")
    column, tiebreak = getattr(model, key), model.id
    if sort.startswith("-"):
        return stmt.order_by(column.desc(), tiebreak.desc())
    return stmt.order_by(column.asc(), tiebreak.asc())


def as_patched(order, changes: dict) -> dict:
    """A draft's whole input (as create takes it) with the fields a PATCH sends replacing the stored ones;
    lines not sent are kept as they are (their prices too)."""
    data = {"partner_id": order.partner_id, "warehouse_id": order.warehouse_id, "notes": order.notes,
            "currency": order.currency, "exchange_rate": order.exchange_rate,
            "lines": [{"product_id": line.product_id, "quantity": line.quantity, "unit_price": line.unit_price_currency,
                       "discount_percent": line.discount_percent} for line in order.lines]}
    data.update({k: v for k, v in changes.items() if v is not None or k == "notes"})
    if "currency" in changes and "exchange_rate" not in changes:
        data["exchange_rate"] = None  # a new currency needs its own rate (or none for the company's)
    return data
