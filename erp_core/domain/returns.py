"""Returns: what may still be returned of a line, and the amounts a credit (or debit) note gives back.

A credit note reverses the returned part of an invoiced line at the line's own price, discount and tax
rate (pricing.price_line, the one place money is rounded). The return that brings a line's returned
quantity up to the whole line gives back exactly what is left of the line's invoiced amounts, so the
credit notes of a fully returned line add up to the invoice's line to the cent."""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal

from . import pricing
from .money import ONE, ZERO, D, round_qty


class OverReturn(ValueError):
    """More returned than was delivered (or received) and not yet returned."""


@dataclass(frozen=True)
class InvoicedLine:
    """An order line as invoiced: its quantity, prices (document currency), and amounts in both currencies."""
    quantity: Decimal
    unit_price_currency: Decimal
    discount_percent: Decimal
    tax_rate_percent: Decimal
    net: Decimal
    tax: Decimal
    net_currency: Decimal
    tax_currency: Decimal


@dataclass(frozen=True)
class Returned:
    """What earlier posted returns of one line already took back: quantity and amounts."""
    quantity: Decimal = ZERO
    net: Decimal = ZERO
    tax: Decimal = ZERO
    net_currency: Decimal = ZERO
    tax_currency: Decimal = ZERO


def returnable(line_quantity, already_returned) -> Decimal:
    return round_qty(D(line_quantity) - D(already_returned))


def check_quantity(qty, line_quantity, already_returned) -> Decimal:
    """The quantity to return, or OverReturn naming what may still be returned."""
    qty, left = round_qty(D(qty)), returnable(line_quantity, already_returned)
    if qty <= 0:
        raise OverReturn("a returned quantity must be greater than zero")
    if qty > left:
        raise OverReturn(f"{qty} exceeds the {left} that may still be returned")
    return qty


def credit_amounts(line: InvoicedLine, before: Returned, qty, rate=ONE) -> pricing.PricedLine:
    """What returning `qty` of an invoiced line gives back: priced as the line was, or, when it completes
    the line, what is left of the line's amounts (so the notes of a line add up to it exactly)."""
    qty = check_quantity(qty, line.quantity, before.quantity)
    if qty == returnable(line.quantity, before.quantity):
        return pricing.PricedLine(line.unit_price_currency, line.net_currency - before.net_currency,
                                  line.tax_currency - before.tax_currency, ZERO,
                                  line.net - before.net, line.tax - before.tax)
    return pricing.price_line(pricing.LineInput(qty, line.unit_price_currency, line.discount_percent,
                                                line.tax_rate_percent), rate)


def settle(gross, gross_currency, open_amount, open_currency) -> tuple[Decimal, Decimal]:
    """(applied, applied_currency): what of a note settles its invoice, in company and document currency.
    A note worth at least what is open on the invoice settles all of it (both figures exactly what was
    open); a smaller one is applied whole."""
    gross, gross_currency = D(gross), D(gross_currency)
    open_amount, open_currency = max(ZERO, D(open_amount)), max(ZERO, D(open_currency))
    if gross >= open_amount or gross_currency >= open_currency:
        return open_amount, open_currency
    return gross, gross_currency
