"""Returns: goods back from a customer with a credit note, goods back to a supplier with a debit note.

A return is created as a draft against an invoiced sales order (a billed purchase order): per order
line a quantity no larger than what was delivered (received) and not yet returned by posted returns.
Posting it moves the stock and issues the note, once; a posted return is immutable.

- Customer return: the goods come back into the chosen warehouse at the unit cost they left at (the
  order's delivery moves), so cost of goods is reversed exactly (Dr Inventory / Cr COGS), into the lot
  they left from. The credit note (CN...) reverses revenue and output VAT of the returned lines at the
  invoiced price, discount and tax rate (Dr Revenue, Dr VAT output / Cr Receivable).
- Supplier return: the goods leave at the current moving-average cost (domain.costing.value_out, as
  every outgoing move: taking the receipt's cost instead would leave the average, and so the value of
  what stays, distorted). The debit note (DN...) reduces payable and input VAT at the billed prices;
  the gap between billed net and average-cost value is a purchase price difference (6402).

A note settles its invoice up to what is still open on it (domain.returns.settle); the rest is the
partner's balance the other way (a customer's credit), shown by the partner ledger and the aging.

Lock order of posting (services.stock's, with the invoice first as a payment takes it):
1. the invoice (bill) row, then the order row, then the return row, FOR UPDATE: two returns of the
   same order queue on the order, so the returnable quantities are read after the other's commit;
2. the products, sorted by id (stock.lock_products); 3. the stock_levels rows through the moves;
4. the inserted rows: stock moves, the note (numbering CN/DN) and its journal entries (JE)."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal

from sqlalchemy import func, select
from sqlalchemy.orm import Session, selectinload

from ..domain import costing, journal
from ..domain import returns as rules
from ..domain.money import ZERO, D
from ..domain.states import RETURN
from ..errors import Conflict, ValidationFailed
from ..invariants import cents, from_cents, from_thousandths, thousandths
from ..models import (CreditNote, Invoice, Partner, PurchaseOrder, PurchaseOrderLine, Return, ReturnLine, SalesOrder,
                      SalesOrderLine, StockMove)
from . import billing, ledger, stock
from .common import full, get_or_404, next_number, transition
from .documents import load_warehouse

RETURNABLE = {"customer": {"invoiced", "paid"}, "supplier": {"billed", "paid"}}
SOURCES = {"customer": (SalesOrder, SalesOrderLine, "sales order", Return.sales_order_id, Invoice.sales_order_id),
           "supplier": (PurchaseOrder, PurchaseOrderLine, "purchase order", Return.purchase_order_id,
                        Invoice.purchase_order_id)}


def _order(s: Session, kind: str, order_id: int):
    model, _line, what, _link, _inv = SOURCES[kind]
    return get_or_404(s, model, order_id, what, lock=True, options=full(model))


def returned_quantities(s: Session, kind: str, order_id: int, exclude: int | None = None) -> dict[int, Decimal]:
    """What posted returns of an order took back, by order line id."""
    link = SOURCES[kind][3]
    stmt = (select(ReturnLine.order_line_id, func.sum(thousandths(ReturnLine.quantity)))
            .join(Return, Return.id == ReturnLine.return_id)
            .where(link == order_id, Return.state == "posted").group_by(ReturnLine.order_line_id))
    if exclude is not None:
        stmt = stmt.where(Return.id != exclude)
    return {line_id: from_thousandths(q) for line_id, q in s.execute(stmt)}


def _returned_amounts(s: Session, kind: str, order_id: int, exclude: int) -> dict[int, rules.Returned]:
    link = SOURCES[kind][3]
    stmt = (select(ReturnLine.order_line_id, func.sum(thousandths(ReturnLine.quantity)),
                   *(func.sum(cents(c)) for c in (ReturnLine.net_amount, ReturnLine.tax_amount,
                                                  ReturnLine.net_amount_currency, ReturnLine.tax_amount_currency)))
            .join(Return, Return.id == ReturnLine.return_id)
            .where(link == order_id, Return.state == "posted", Return.id != exclude).group_by(ReturnLine.order_line_id))
    return {r[0]: rules.Returned(from_thousandths(r[1]), *(from_cents(v) for v in r[2:])) for r in s.execute(stmt)}


def _check_lines(order, lines_in: list[dict], already: dict[int, Decimal]) -> list[tuple]:
    """(order line, quantity) per requested line, or a 422 naming the line and what may be returned."""
    if not lines_in:
        raise ValidationFailed("a return needs at least one line", field="lines",
                               fix="Send the order lines returned with their quantities.")
    by_id = {l.id: l for l in order.lines}
    out, seen = [], set()
    for i, data in enumerate(lines_in):
        line = by_id.get(data["order_line_id"])
        if line is None:
            raise ValidationFailed(f"order line {data['order_line_id']} is not a line of {order.number}",
                                   field=f"lines.{i}.order_line_id",
                                   fix=f"Use the id of one of the lines of {order.number}.")
        if line.id in seen:
            raise ValidationFailed(f"order line {line.id} is returned twice", field=f"lines.{i}.order_line_id",
                                   fix="Send each order line once, with its whole returned quantity.")
        seen.add(line.id)
        try:
            qty = rules.check_quantity(data["quantity"], line.quantity, already.get(line.id, ZERO))
        except rules.OverReturn as exc:
            raise ValidationFailed(f"line {line.id} of {order.number}: {exc}", field=f"lines.{i}.quantity",
                                   fix="Return at most what was delivered or received and not yet returned.") from None
        out.append((line, qty))
    return out


def create(s: Session, kind: str, order_id: int, data: dict) -> Return:
    """A draft return of an invoiced sales order (kind 'customer') or a billed purchase order ('supplier')."""
    order = _order(s, kind, order_id)
    if order.state not in RETURNABLE[kind]:
        doc = "invoice" if kind == "customer" else "bill"
        raise Conflict(f"{order.number} is {order.state}: only an order with its {doc} can be returned against.",
                       fix=f"Post the order's {doc} first; the return's note then reverses the returned lines.",
                       state=order.state)
    wh = load_warehouse(s, data.get("warehouse_id") or order.warehouse_id).id
    checked = _check_lines(order, data.get("lines") or [], returned_quantities(s, kind, order.id))
    ret = Return(kind=kind, partner_id=order.partner_id, warehouse_id=wh, state=RETURN.initial,
                 reason=(data.get("reason") or "")[:500], created_by=s.info.get("actor", "system"),
                 sales_order_id=order.id if kind == "customer" else None,
                 purchase_order_id=order.id if kind == "supplier" else None)
    ret.lines = [ReturnLine(order_line_id=line.id, product_id=line.product_id, quantity=qty) for line, qty in checked]
    ret.number = next_number(s, "RET")
    s.add(ret)
    s.flush()
    return ret


def get(s: Session, return_id: int, lock: bool = False) -> Return:
    return get_or_404(s, Return, return_id, "return", lock=lock, options=[selectinload(Return.lines)])


def note_of(s: Session, ret: Return) -> CreditNote | None:
    return s.scalar(select(CreditNote).where(CreditNote.return_id == ret.id))


def cancel(s: Session, return_id: int) -> Return:
    ret = get(s, return_id, lock=True)
    transition(RETURN, ret, "cancel")
    s.flush()
    return ret


def post(s: Session, return_id: int, date: dt.date | None = None) -> Return:
    """Move the goods and issue the credit (debit) note; the lock order is the module's."""
    date = date or dt.date.today()
    draft = get(s, return_id)
    link = SOURCES[draft.kind][4]
    order_id = draft.sales_order_id or draft.purchase_order_id
    inv = s.execute(select(Invoice).where(link == order_id).options(*full(Invoice)).with_for_update()).scalar_one()
    order = _order(s, draft.kind, order_id)
    ret = get(s, return_id, lock=True)
    s.refresh(ret)
    transition(RETURN, ret, "post")
    already = returned_quantities(s, ret.kind, order.id, exclude=ret.id)
    try:
        checked = _check_lines(order, [{"order_line_id": l.order_line_id, "quantity": l.quantity}
                                       for l in ret.lines], already)
    except ValidationFailed as exc:  # another return of the order was posted since this one was drafted
        raise Conflict(f"{ret.number} can no longer be posted: {exc.detail}",
                       fix="Cancel this draft and create a return of what is left to return.") from None
    products = stock.lock_products(s, [l.product_id for l in ret.lines])
    if ret.kind == "customer":
        stock_value = _goods_back(s, ret, order, products)
    else:
        stock_value = _goods_out(s, ret, order, products)
    _price(s, ret, order, checked)
    _issue_note(s, ret, order, inv, stock_value, date)
    ret.posted_at = dt.datetime.now(dt.timezone.utc)
    s.flush()
    return ret


def _goods_back(s: Session, ret: Return, order, products) -> Decimal:
    """Customer return: each line back in at the unit cost its delivery moved at, into that lot."""
    cost = ZERO
    for line in sorted(ret.lines, key=lambda l: l.product_id):
        out = s.scalars(select(StockMove).where(StockMove.kind == "delivery", StockMove.reference == order.number,
                                                StockMove.product_id == line.product_id)
                        .order_by(StockMove.id).limit(1)).first()
        if out is None:
            raise Conflict(f"{order.number} has no delivery of product {line.product_id} to return.",
                           fix="Return only goods the order delivered.")
        value = costing.cost_of(line.quantity, out.unit_cost)
        line.unit_cost = out.unit_cost
        stock.receive(s, products[line.product_id], line.quantity, out.unit_cost, ret.warehouse_id, ret.number,
                      out.lot_id, value=value)
        cost += value
    if cost:
        entry = ledger.post(s, f"return:{ret.number}", f"Goods returned {ret.number} ({order.number})",
                            journal.goods_returned(cost))
        ret.stock_entry_id = entry.id
    return cost


def _goods_out(s: Session, ret: Return, order, products) -> Decimal:
    """Supplier return: each line out at moving-average cost, from the order's receipt lot when it still
    holds enough there, else from the oldest lots."""
    value = ZERO
    for line in sorted(ret.lines, key=lambda l: l.product_id):
        product = products[line.product_id]
        received = s.scalar(select(StockMove.lot_id).where(StockMove.kind == "receipt",
                                                           StockMove.reference == order.number,
                                                           StockMove.product_id == product.id).limit(1))
        held = {b.lot_id: b.quantity for b in stock.lot_balances(s, product.id, ret.warehouse_id)}
        lot = received if held.get(received, ZERO) >= line.quantity else None
        line.unit_cost = product.avg_cost
        value += stock.take_value(s, product, line.quantity)
        stock.move(s, product, line.quantity, kind="delivery", reference=ret.number, from_wh=ret.warehouse_id,
                   lot_id=lot)
    return value


def _price(s: Session, ret: Return, order, checked) -> None:
    """Each returned line's amounts, as its order line was invoiced (domain.returns.credit_amounts)."""
    before = _returned_amounts(s, ret.kind, order.id, ret.id)
    by_line = {l.order_line_id: l for l in ret.lines}
    for line, qty in checked:
        invoiced = rules.InvoicedLine(line.quantity, line.unit_price_currency, line.discount_percent,
                                      line.tax_rate_percent, line.net_amount, line.tax_amount,
                                      line.net_amount_currency, line.tax_amount_currency)
        priced = rules.credit_amounts(invoiced, before.get(line.id, rules.Returned()), qty, order.exchange_rate)
        row = by_line[line.id]
        row.net_amount, row.tax_amount = priced.net, priced.tax
        row.net_amount_currency, row.tax_amount_currency = priced.net_currency, priced.tax_currency


def _issue_note(s: Session, ret: Return, order, inv: Invoice, stock_value: Decimal, date: dt.date) -> CreditNote:
    net = sum((l.net_amount for l in ret.lines), ZERO)
    tax = sum((l.tax_amount for l in ret.lines), ZERO)
    net_c = sum((l.net_amount_currency for l in ret.lines), ZERO)
    tax_c = sum((l.tax_amount_currency for l in ret.lines), ZERO)
    doc = journal.DocumentAmounts(inv.currency, net_c, tax_c)
    partner = s.get(Partner, ret.partner_id)
    applied, applied_c = rules.settle(net + tax, net_c + tax_c, billing.company_outstanding(s, inv),
                                      billing.outstanding(s, inv))
    customer = ret.kind == "customer"
    number = next_number(s, "CN" if customer else "DN")
    lines = (journal.customer_credit_note(partner.id, net, tax, doc) if customer
             else journal.supplier_debit_note(partner.id, net, tax, stock_value, doc))
    entry = ledger.post(s, f"{'credit' if customer else 'debit'}-note:{inv.number}", f"{number} {partner.name}",
                        lines, date)
    note = CreditNote(number=number, kind="credit" if customer else "debit", return_id=ret.id, invoice_id=inv.id,
                      partner_id=partner.id, issue_date=date, currency=inv.currency, exchange_rate=inv.exchange_rate,
                      net_total=net, tax_total=tax, gross_total=net + tax, net_total_currency=net_c,
                      tax_total_currency=tax_c, gross_total_currency=net_c + tax_c, applied=applied,
                      applied_currency=applied_c, journal_entry_id=entry.id if entry else None)
    s.add(note)
    s.flush()
    if applied > 0 or applied_c > 0:
        billing.settle_state(s, inv, billing.company_outstanding(s, inv) == 0)
    return note


def list_notes(s: Session, kind: str | None, limit: int, offset: int, partner_id: int | None = None,
               invoice_id: int | None = None):
    stmt = select(CreditNote)
    if invoice_id is not None:
        stmt = stmt.where(CreditNote.invoice_id == invoice_id)
    if kind:
        stmt = stmt.where(CreditNote.kind == kind)
    if partner_id is not None:
        stmt = stmt.where(CreditNote.partner_id == partner_id)
    total = s.scalar(select(func.count()).select_from(stmt.subquery()))
    return list(s.scalars(stmt.order_by(CreditNote.id.desc()).limit(limit).offset(offset))), total
