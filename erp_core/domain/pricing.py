"""Document lines and totals: price, discount, tax.

Each line is rounded once (net and tax separately); the document total is the sum of its
rounded lines, so totals always equal their lines.

Multi-currency: lines are priced in the document's currency; each line's company amounts are its
document amounts converted at the document's rate (money.to_company, rounded once per amount), and the
header totals in either currency are the sums of the lines in that currency.
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal

from .money import ONE, ZERO, D, round_money, to_company

HUNDRED = Decimal("100")


@dataclass(frozen=True)
class LineInput:
    quantity: Decimal
    unit_price: Decimal
    discount_percent: Decimal = ZERO
    tax_rate_percent: Decimal = ZERO


@dataclass(frozen=True)
class LineAmounts:
    net: Decimal
    tax: Decimal

    @property
    def gross(self) -> Decimal:
        return self.net + self.tax


@dataclass(frozen=True)
class Totals:
    net: Decimal
    tax: Decimal
    gross: Decimal
    tax_by_rate: dict


def validate_line(line: LineInput) -> None:
    if D(line.quantity) <= 0:
        raise ValueError("quantity must be greater than zero")
    if D(line.unit_price) < 0:
        raise ValueError("unit_price must not be negative")
    if not ZERO <= D(line.discount_percent) <= HUNDRED:
        raise ValueError("discount_percent must be between 0 and 100")
    if not ZERO <= D(line.tax_rate_percent) <= HUNDRED:
        raise ValueError("tax_rate_percent must be between 0 and 100")


def line_amounts(line: LineInput) -> LineAmounts:
    validate_line(line)
    gross_before_discount = D(line.quantity) * D(line.unit_price)
    net = round_money(gross_before_discount * (HUNDRED - D(line.discount_percent)) / HUNDRED)
    tax = round_money(net * D(line.tax_rate_percent) / HUNDRED)
    return LineAmounts(net=net, tax=tax)


def discounted_unit_price(unit_price, discount_percent) -> Decimal:
    """The unit price after the line's discount, as shown beside a line being entered (the line's net is
    still line_amounts': quantity x price less the discount, rounded once)."""
    return round_money(D(unit_price) * (HUNDRED - D(discount_percent or 0)) / HUNDRED)


def document_totals(lines: list[LineInput]) -> Totals:
    net = tax = ZERO
    by_rate: dict[Decimal, Decimal] = {}
    for line in lines:
        amounts = line_amounts(line)
        net += amounts.net
        tax += amounts.tax
        rate = D(line.tax_rate_percent)
        by_rate[rate] = by_rate.get(rate, ZERO) + amounts.tax
    return Totals(net=net, tax=tax, gross=net + tax, tax_by_rate=by_rate)


def pick_unit_price(list_price: Decimal, customer_price: Decimal | None) -> Decimal:
    """A customer's price list wins over the product's sale price."""
    return D(customer_price) if customer_price is not None else D(list_price)


@dataclass(frozen=True)
class PricedLine:
    """A line in both currencies: document amounts (as priced) and company amounts (converted)."""
    unit_price_currency: Decimal
    net_currency: Decimal
    tax_currency: Decimal
    unit_price: Decimal
    net: Decimal
    tax: Decimal


@dataclass(frozen=True)
class DocumentTotals:
    net: Decimal
    tax: Decimal
    gross: Decimal
    net_currency: Decimal
    tax_currency: Decimal
    gross_currency: Decimal


def price_line(line: LineInput, rate=ONE) -> PricedLine:
    """Price a line given in document currency and convert it to company currency at `rate`."""
    doc = line_amounts(line)
    return PricedLine(unit_price_currency=D(line.unit_price), net_currency=doc.net, tax_currency=doc.tax,
                      unit_price=to_company(line.unit_price, rate), net=to_company(doc.net, rate),
                      tax=to_company(doc.tax, rate))


def totals_of(lines: list[PricedLine]) -> DocumentTotals:
    """Header totals in both currencies: the sums of the lines."""
    net = sum((l.net for l in lines), ZERO)
    tax = sum((l.tax for l in lines), ZERO)
    net_c = sum((l.net_currency for l in lines), ZERO)
    tax_c = sum((l.tax_currency for l in lines), ZERO)
    return DocumentTotals(net, tax, net + tax, net_c, tax_c, net_c + tax_c)
