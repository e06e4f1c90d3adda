"""Money, quantities and currencies. Money is rounded here and nowhere else."""

from __future__ import annotations

from decimal import ROUND_HALF_UP, Decimal, InvalidOperation

CENT = Decimal("0.01")
COST_PLACES = Decimal("0.0001")
QTY_PLACES = Decimal("0.001")
RATE_PLACES = Decimal("0.000001")
ZERO = Decimal("0")
ONE = Decimal("1")

# The currency the books are kept in. Every amount column without a _currency suffix is in it; a
# document in another currency keeps its own amounts in the *_currency columns beside them.
COMPANY_CURRENCY = "CNY"

# ISO 4217 codes of currencies in use (funds and precious metals left out).
ISO_CURRENCIES = frozenset("""
AED AFN ALL AMD ANG AOA ARS AUD AWG AZN BAM BBD BDT BGN BHD BIF BMD BND BOB BRL BSD BTN BWP BYN BZD
CAD CDF CHF CLP CNY COP CRC CUP CVE CZK DJF DKK DOP DZD EGP ERN ETB EUR FJD FKP GBP GEL GHS GIP GMD
GNF GTQ GYD HKD HNL HTG HUF IDR ILS INR IQD IRR ISK JMD JOD JPY KES KGS KHR KMF KPW KRW KWD KYD KZT
LAK LBP LKR LRD LSL LYD MAD MDL MGA MKD MMK MNT MOP MRU MUR MVR MWK MXN MYR MZN NAD NGN NIO NOK NPR
NZD OMR PAB PEN PGK PHP PKR PLN PYG QAR RON RSD RUB RWF SAR SBD SCR SDG SEK SGD SHP SLE SOS SRD SSP
STN SVC SYP SZL THB TJS TMT TND TOP TRY TTD TWD TZS UAH UGX USD UYU UZS VES VND VUV WST XAF XCD XOF
XPF YER ZAR ZMW ZWL
""".split())


def D(value) -> Decimal:
    """A Decimal from an int, str or Decimal (floats are refused: they are not exact)."""
    if isinstance(value, Decimal):
        return value
    if isinstance(value, float):
        raise TypeError("floats are not exact; pass a str or Decimal")
    try:
        return Decimal(value)
    except (InvalidOperation, TypeError) as exc:
        raise ValueError(f"not a number: {value!r}") from exc


def round_money(value) -> Decimal:
    """The one rounding rule for money: to the cent, half away from zero."""
    return D(value).quantize(CENT, rounding=ROUND_HALF_UP)


def round_cost(value) -> Decimal:
    """Unit costs keep four places (moving averages)."""
    return D(value).quantize(COST_PLACES, rounding=ROUND_HALF_UP)


def round_qty(value) -> Decimal:
    return D(value).quantize(QTY_PLACES, rounding=ROUND_HALF_UP)


# ---- currencies -------------------------------------------------------------------------------

class CurrencyError(ValueError):
    """A currency or exchange rate a document cannot have; `field` names the input at fault."""

    def __init__(self, message: str, field: str, fix: str):
        super().__init__(message)
        self.field, self.fix = field, fix


def document_currency(currency: str | None, rate) -> tuple[str, Decimal]:
    """The (currency, exchange rate) of a new document from what was asked for.

    The rate is company units per one document unit. No currency means the company currency at rate 1;
    a foreign currency needs a rate above zero; the company currency's rate is exactly 1."""
    code = currency or COMPANY_CURRENCY
    if code not in ISO_CURRENCIES:
        raise CurrencyError(f"{code!r} is not an ISO 4217 currency code", "currency",
                            "Send a three-letter ISO 4217 code such as USD or EUR, or leave currency out "
                            f"for {COMPANY_CURRENCY}.")
    if code == COMPANY_CURRENCY:
        if rate is not None and D(rate) != ONE:
            raise CurrencyError(f"the exchange rate of the company currency {COMPANY_CURRENCY} is 1, not {rate}",
                                "exchange_rate", "Leave exchange_rate out or send \"1\".")
        return code, ONE.quantize(RATE_PLACES)
    if rate is None:
        raise CurrencyError(f"an order in {code} needs an exchange rate", "exchange_rate",
                            f"Send exchange_rate: how many {COMPANY_CURRENCY} one {code} is worth, e.g. \"7.1\".")
    rate = D(rate)
    if rate <= 0:
        raise CurrencyError(f"exchange rate {rate} must be greater than zero", "exchange_rate",
                            f"Send how many {COMPANY_CURRENCY} one {code} is worth, e.g. \"7.1\".")
    if rate != rate.quantize(RATE_PLACES):
        raise CurrencyError(f"exchange rate {rate} has more than 6 decimal places", "exchange_rate",
                            "Round the rate to 6 decimal places.")
    return code, rate.quantize(RATE_PLACES)


def to_company(amount, rate) -> Decimal:
    """A document-currency amount in company currency: amount x rate, rounded as money."""
    return round_money(D(amount) * D(rate))


def to_document(amount, rate) -> Decimal:
    """A company-currency amount (e.g. a list price) in the document's currency."""
    return round_money(D(amount) / D(rate))
