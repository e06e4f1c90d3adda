"""Journal lines for each business event. Every builder returns balanced lines."""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal

from .money import ZERO, D

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
STOCK_ADJUSTMENT = "6711"


@dataclass(frozen=True)
class Line:
    account: str
    debit: Decimal = ZERO
    credit: Decimal = ZERO
    partner_id: int | None = None


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


def _clean(lines: list[Line]) -> list[Line]:
    """Drop zero lines; a negative amount moves to the other side."""
    out = []
    for l in lines:
        debit, credit = D(l.debit), D(l.credit)
        net = debit - credit
        if net > 0:
            out.append(Line(l.account, net, ZERO, l.partner_id))
        elif net < 0:
            out.append(Line(l.account, ZERO, -net, l.partner_id))
    if out:
        check_balanced(out)
    return out


def customer_invoice(partner_id: int, net: Decimal, tax: Decimal) -> list[Line]:
    return _clean([
        Line(RECEIVABLE, debit=net + tax, partner_id=partner_id),
        Line(REVENUE, credit=net),
        Line(VAT_OUTPUT, credit=tax),
    ])


def supplier_bill(partner_id: int, net: Decimal, tax: Decimal) -> list[Line]:
    """Clears goods received (booked at receipt) and books input VAT against payable."""
    return _clean([
        Line(GOODS_RECEIVED_NOT_BILLED, debit=net),
        Line(VAT_INPUT, debit=tax),
        Line(PAYABLE, credit=net + tax, partner_id=partner_id),
    ])


def goods_received(value: Decimal) -> list[Line]:
    return _clean([Line(INVENTORY, debit=value), Line(GOODS_RECEIVED_NOT_BILLED, credit=value)])


def goods_delivered(cost: Decimal) -> list[Line]:
    return _clean([Line(COGS, debit=cost), Line(INVENTORY, credit=cost)])


def customer_payment(partner_id: int, amount: Decimal) -> list[Line]:
    return _clean([Line(CASH, debit=amount), Line(RECEIVABLE, credit=amount, partner_id=partner_id)])


def supplier_payment(partner_id: int, amount: Decimal) -> list[Line]:
    return _clean([Line(PAYABLE, debit=amount, partner_id=partner_id), Line(CASH, credit=amount)])


def stock_adjustment(value_delta: Decimal) -> list[Line]:
    """A stocktake gain (positive) or loss (negative) at average cost."""
    return _clean([Line(INVENTORY, debit=value_delta), Line(STOCK_ADJUSTMENT, credit=value_delta)])


def reversal(lines: list[Line]) -> list[Line]:
    return [Line(l.account, l.credit, l.debit, l.partner_id) for l in lines]
