"""Journal lines for each business event. Every builder returns balanced lines.

Debits and credits are in company currency and balance there. Each line also carries a currency and
amount_currency, the line's signed amount in that currency (debit positive, credit negative): the
document's currency for lines that book a document's amounts (invoice, bill, payment), the company
currency otherwise (stock valuation, adjustments, manual entries), where it equals debit - credit."""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal

from .money import COMPANY_CURRENCY, ZERO, D

# Account codes of the default chart (created by the first migration).
CASH = "1002"
RECEIVABLE = "1122"
INVENTORY = "1405"
VAT_INPUT = "2221.01"
PAYABLE = "2202"
GOODS_RECEIVED_NOT_BILLED = "2241"
VAT_OUTPUT = "2221.02"
EQUITY = "4001"
REVENUE = "6001"
COGS = "6401"
PRICE_DIFFERENCE = "6402"
STOCK_ADJUSTMENT = "6711"

# Accounts whose balance a subledger defines (erp_core.invariants reconciles them): only the documents
# post to them, never a manual entry or a reversal.
CONTROL_ACCOUNTS = {INVENTORY: "the products' stock values", RECEIVABLE: "the open customer invoices less credit notes",
                    PAYABLE: "the open supplier bills less debit notes", GOODS_RECEIVED_NOT_BILLED: "the receipts not yet billed"}


@dataclass(frozen=True)
class Line:
    account: str
    debit: Decimal = ZERO
    credit: Decimal = ZERO
    partner_id: int | None = None
    currency: str | None = None            # None: company currency
    amount_currency: Decimal | None = None  # signed; None: debit - credit (company currency)

    @property
    def signed(self) -> Decimal:
        return D(self.debit) - D(self.credit)


class Unbalanced(ValueError):
    pass


def check_balanced(lines: list[Line]) -> None:
    if not lines:
        raise Unbalanced("an entry needs at least one line")
    for line in lines:
        if line.debit < 0 or line.credit < 0:
            raise Unbalanced(f"negative amount on {line.account}")
        if line.debit and line.credit:
            raise Unbalanced(f"line on {line.account} has both debit and credit")
        if not line.debit and not line.credit:
            raise Unbalanced(f"line on {line.account} is zero")
    debit = sum((l.debit for l in lines), ZERO)
    credit = sum((l.credit for l in lines), ZERO)
    if debit != credit:
        raise Unbalanced(f"debits {debit} != credits {credit}")


def in_currency(line: Line) -> Line:
    """The line with its currency and amount_currency set (company currency when it names none)."""
    if line.currency is not None and line.amount_currency is not None:
        return line
    return Line(line.account, line.debit, line.credit, line.partner_id, COMPANY_CURRENCY, line.signed)


def _clean(lines: list[Line]) -> list[Line]:
    """Drop zero lines; a negative amount moves to the other side (its signed amount_currency stays)."""
    out = []
    for l in map(in_currency, lines):
        net = l.signed
        if net > 0:
            out.append(Line(l.account, net, ZERO, l.partner_id, l.currency, l.amount_currency))
        elif net < 0:
            out.append(Line(l.account, ZERO, -net, l.partner_id, l.currency, l.amount_currency))
    if out:
        check_balanced(out)
    return out


@dataclass(frozen=True)
class DocumentAmounts:
    """A document's own amounts in its currency, carried onto the lines that book it."""
    currency: str
    net: Decimal
    tax: Decimal

    @property
    def gross(self) -> Decimal:
        return self.net + self.tax


def _company(net: Decimal, tax: Decimal) -> DocumentAmounts:
    return DocumentAmounts(COMPANY_CURRENCY, D(net), D(tax))


def customer_invoice(partner_id: int, net: Decimal, tax: Decimal, doc: DocumentAmounts | None = None) -> list[Line]:
    doc = doc or _company(net, tax)
    return _clean([
        Line(RECEIVABLE, debit=net + tax, partner_id=partner_id, currency=doc.currency, amount_currency=doc.gross),
        Line(REVENUE, credit=net, currency=doc.currency, amount_currency=-doc.net),
        Line(VAT_OUTPUT, credit=tax, currency=doc.currency, amount_currency=-doc.tax),
    ])


def supplier_bill(partner_id: int, net: Decimal, tax: Decimal, doc: DocumentAmounts | None = None) -> list[Line]:
    """Clears goods received (booked at receipt) and books input VAT against payable."""
    doc = doc or _company(net, tax)
    return _clean([
        Line(GOODS_RECEIVED_NOT_BILLED, debit=net, currency=doc.currency, amount_currency=doc.net),
        Line(VAT_INPUT, debit=tax, currency=doc.currency, amount_currency=doc.tax),
        Line(PAYABLE, credit=net + tax, partner_id=partner_id, currency=doc.currency, amount_currency=-doc.gross),
    ])


def goods_received(value: Decimal) -> list[Line]:
    return _clean([Line(INVENTORY, debit=value), Line(GOODS_RECEIVED_NOT_BILLED, credit=value)])


def goods_delivered(cost: Decimal) -> list[Line]:
    return _clean([Line(COGS, debit=cost), Line(INVENTORY, credit=cost)])


def goods_returned(cost: Decimal) -> list[Line]:
    """A customer return: the goods back in stock at the cost they went out at (reverses cost of goods)."""
    return reversal(goods_delivered(cost))


def customer_credit_note(partner_id: int, net: Decimal, tax: Decimal, doc: DocumentAmounts | None = None) -> list[Line]:
    """Reverses revenue and output VAT of the returned lines against receivable."""
    return reversal(customer_invoice(partner_id, net, tax, doc))


def supplier_debit_note(partner_id: int, net: Decimal, tax: Decimal, value_out: Decimal,
                        doc: DocumentAmounts | None = None) -> list[Line]:
    """A supplier return: payable and input VAT reduced at the billed prices, the goods leaving stock at
    their average-cost value; what the two differ by is a purchase price difference."""
    doc = doc or _company(net, tax)
    return _clean([
        Line(PAYABLE, debit=net + tax, partner_id=partner_id, currency=doc.currency, amount_currency=doc.gross),
        Line(VAT_INPUT, credit=tax, currency=doc.currency, amount_currency=-doc.tax),
        Line(INVENTORY, credit=value_out),
        Line(PRICE_DIFFERENCE, credit=net - value_out),
    ])


def customer_payment(partner_id: int, amount: Decimal, currency: str = COMPANY_CURRENCY,
                     amount_currency: Decimal | None = None) -> list[Line]:
    """Money received: `amount` in company currency, `amount_currency` in the invoice's currency."""
    doc = D(amount) if amount_currency is None else D(amount_currency)
    return _clean([Line(CASH, debit=amount, currency=currency, amount_currency=doc),
                   Line(RECEIVABLE, credit=amount, partner_id=partner_id, currency=currency, amount_currency=-doc)])


def supplier_payment(partner_id: int, amount: Decimal, currency: str = COMPANY_CURRENCY,
                     amount_currency: Decimal | None = None) -> list[Line]:
    doc = D(amount) if amount_currency is None else D(amount_currency)
    return _clean([Line(PAYABLE, debit=amount, partner_id=partner_id, currency=currency, amount_currency=doc),
                   Line(CASH, credit=amount, currency=currency, amount_currency=-doc)])


def stock_adjustment(value_delta: Decimal) -> list[Line]:
    """A stocktake gain (positive) or loss (negative) at average cost."""
    return _clean([Line(INVENTORY, debit=value_delta), Line(STOCK_ADJUSTMENT, credit=value_delta)])


def reversal(lines: list[Line]) -> list[Line]:
    return [Line(l.account, l.credit, l.debit, l.partner_id, l.currency,
                 None if l.amount_currency is None else -l.amount_currency) for l in lines]
