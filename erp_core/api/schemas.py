"""Request and response schemas. They validate requests and generate the OpenAPI document."""

from __future__ import annotations

import datetime as dt
import re
from decimal import Decimal
from typing import Annotated, Generic, Literal, TypeVar

from pydantic import AfterValidator, BaseModel, BeforeValidator, ConfigDict, Field, WithJsonSchema

MAX_ID = 2**31 - 1


def _clean_text(value: str) -> str:
    if "\x00" in value:
        raise ValueError("must not contain NUL characters")
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        raise ValueError("must be valid Unicode text") from None
    return value


def _not_blank(value: str) -> str:
    if not value:
        raise ValueError("must not be blank")
    return value


def Text(max_length: int, min_length: int = 0):
    """Text whose documented lengths hold for what is sent; surrounding spaces are then trimmed."""
    after = [AfterValidator(_clean_text), AfterValidator(str.strip)]
    if min_length:
        after.append(AfterValidator(_not_blank))
    return Annotated[str, Field(min_length=min_length, max_length=max_length), *after]


_EMAIL = re.compile(r"[^@\s\"(),:;<>\[\]\\]{1,64}@(?:[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?\.)+[A-Za-z]{2,63}")


def _email(value: str) -> str:
    if value and not _EMAIL.fullmatch(value):
        raise ValueError("must be an e-mail address such as name@example.com")
    return value


# An e-mail address: one @, no spaces, a domain with a dot ("" when a form leaves it empty).
Email = Annotated[Text(200), AfterValidator(_email)]


# JSON request bodies are validated strictly (api/framework.py: a JSON 0 is not false, "5" is not 5).
# Query strings and web forms arrive as text: whole numbers and booleans are read from text, but only
# in their plain spelling. Decimals and dates are read here, so that both ways accept the same text.

def _whole_number(value):
    if isinstance(value, float) and value.is_integer():
        return int(value)  # JSON 42.0 is the integer 42 (JSON Schema)
    if isinstance(value, bool) or (isinstance(value, str) and not re.fullmatch(r"-?[0-9]{1,19}", value)):
        raise ValueError("must be a whole number, such as 42")
    return value


def _boolean(value):
    if isinstance(value, str) and value not in ("true", "false"):
        raise ValueError("must be true or false")
    return value


Int = BeforeValidator(_whole_number)
Bool = Annotated[bool, BeforeValidator(_boolean)]
Id = Annotated[int, Field(ge=1, le=MAX_ID), Int]
Code = Annotated[str, Field(min_length=1, max_length=32, pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]*$")]


def _decimal(digits: int, places: int, *, positive: bool, pattern: str | None = None, maximum: int | None = None):
    """An exact decimal: a JSON string such as "12.50" (at most `digits` digits before the point and
    `places` after it) or a JSON integer. A JSON number with a fraction is refused, since it is a binary
    float and not exact. The documented schema is exactly what is accepted."""
    fraction = rf"(?:\.[0-9]{{1,{places}}})?"
    if pattern is None:
        integral = rf"[1-9][0-9]{{0,{digits - 1}}}"
        if positive:  # not zero: a nonzero integral part, or 0 and a nonzero fraction
            nonzero = "|".join(f"{'0' * k}[1-9][0-9]{{0,{places - 1 - k}}}" for k in range(places))
            pattern = rf"^(?:{integral}{fraction}|0\.(?:{nonzero}))$"
        else:
            pattern = rf"^(?:0|{integral}){fraction}$"
    maximum = maximum if maximum is not None else 10**digits - 1  # the largest JSON integer accepted
    largest = Decimal(maximum) if maximum < 10**digits - 1 else Decimal(10**digits) - Decimal(1).scaleb(-places)
    minimum = 1 if positive else 0
    text = re.compile(pattern)
    example = f"12.5{'0' * (places - 1)}"

    def check(value):
        if isinstance(value, Decimal):
            return value  # from Python callers, not from JSON
        if isinstance(value, float) and value.is_integer():
            value = int(value)
        if isinstance(value, int) and not isinstance(value, bool):
            if not minimum <= value <= maximum:
                raise ValueError(f"must be between {minimum} and {maximum}")
            return Decimal(value)
        if isinstance(value, str):
            if not text.fullmatch(value):
                raise ValueError(f"must be a decimal {'above 0' if positive else '0 or more'} and at most {largest}, "
                                 f"written like \"{example}\" (at most {places} decimal places)")
            return Decimal(value)
        raise ValueError(f"must be a decimal written as a string, such as \"{example}\" "
                         "(a JSON number with a fraction is not exact)")

    schema = {"anyOf": [{"type": "string", "pattern": pattern},
                        {"type": "integer", "minimum": minimum, "maximum": maximum}],
              "examples": [example]}
    bounds = {"gt": 0} if positive else {"ge": 0}
    return Annotated[Decimal, Field(le=largest, decimal_places=places, **bounds), BeforeValidator(check),
                     WithJsonSchema(schema)]


def _iso_date(value):
    if isinstance(value, dt.date) and not isinstance(value, dt.datetime):
        return value
    if isinstance(value, str) and re.fullmatch(r"[0-9]{4}-[0-9]{2}-[0-9]{2}", value):
        try:
            return dt.date.fromisoformat(value)
        except ValueError:
            raise ValueError(f"{value} is not a day of the calendar") from None
    raise ValueError("must be a date written as YYYY-MM-DD")


Money = _decimal(12, 2, positive=False)
PositiveMoney = _decimal(12, 2, positive=True)
Quantity = _decimal(9, 3, positive=True)
Count = _decimal(9, 3, positive=False)
Percent = _decimal(3, 2, positive=False, pattern=r"^(?:100(?:\.00?)?|[1-9]?[0-9](?:\.[0-9]{1,2})?)$", maximum=100)
ExchangeRate = _decimal(12, 6, positive=True)
CurrencyCode = Annotated[str, Field(min_length=3, max_length=3, pattern=r"^[A-Z]{3}$",
                                    description="ISO 4217 code, e.g. USD", examples=["USD"])]
Day = Annotated[dt.date, Field(ge=dt.date(1970, 1, 1), le=dt.date(9999, 12, 31)), BeforeValidator(_iso_date)]

T = TypeVar("T")


def _no_default(schema: dict) -> None:
    schema.pop("default", None)


def Unchanged(**constraints):
    """A PATCH field that may be left out (no change) but not sent as null: the column is NOT NULL."""
    return Field(None, json_schema_extra=_no_default, **constraints)


class In(BaseModel):
    # No str_strip_whitespace: lengths and patterns are checked on the text as sent (as documented);
    # Text() trims it afterwards, and codes and usernames have no room for spaces at all.
    model_config = ConfigDict(extra="forbid")


class Out(BaseModel):
    model_config = ConfigDict(from_attributes=True)


class Page(Out, Generic[T]):
    items: list[T]
    total: int
    total_is_estimate: bool = False  # true: more than `total` rows match (the count stopped there)
    limit: int
    offset: int


class PageQuery(In):
    limit: Annotated[int, Int] = Field(50, ge=1, le=200, description="Rows per page (1-200)")
    offset: Annotated[int, Int] = Field(0, ge=0, le=MAX_ID, description="Rows to skip")


class Problem(BaseModel):
    """RFC 9457 problem details, with the field at fault and the fix."""
    type: str
    title: str
    status: int
    detail: str
    field: str | None = None
    fix: str | None = None


# ---- auth and users ----------------------------------------------------------------------------

class LoginIn(In):
    username: Text(64, 1)
    password: Text(256, 1)


class LoginCodeIn(In):
    """The second step of a login: the challenge the first step answered, and a one-time code."""
    challenge: Text(128, 1)
    code: Text(32, 1)


class TokenOut(Out):
    token: str
    token_type: Literal["Bearer"] = "Bearer"
    expires_at: dt.datetime
    username: str
    role: str
    must_change_password: bool = False  # reset by an administrator: POST /me/password before anything else


Role = Literal["admin", "sales", "purchasing", "warehouse", "finance", "auditor"]


class UserIn(In):
    username: Annotated[str, Field(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9._@-]+$")]
    password: Text(256, 10)
    role: Role
    full_name: Text(120) = ""


class UserOut(Out):
    id: int
    username: str
    full_name: str
    role: str
    active: bool


class UserPatch(In):
    role: Role = Unchanged()
    active: bool = Unchanged()
    full_name: Text(120) = Unchanged()


# ---- partners ------------------------------------------------------------------------------

class PartnerIn(In):
    code: Code
    name: Text(200, 1)
    is_customer: bool = False
    is_supplier: bool = False
    email: Email | None = None
    address: Text(500) | None = None
    tax_id: Text(64) | None = None
    bank_account: Text(64) | None = None
    phone: Text(32) | None = None
    payment_terms_days: Annotated[int, Int] = Field(30, ge=0, le=365)


class PartnerPatch(In):
    name: Text(200, 1) = Unchanged()
    is_customer: bool = Unchanged()
    is_supplier: bool = Unchanged()
    email: Email | None = None
    address: Text(500) | None = None
    tax_id: Text(64) | None = None
    bank_account: Text(64) | None = None
    phone: Text(32) | None = None
    payment_terms_days: Annotated[int, Int] = Unchanged(ge=0, le=365)
    active: bool = Unchanged()


class PartnerOut(Out):
    id: int
    code: str
    name: str
    is_customer: bool
    is_supplier: bool
    email: str | None
    address: str | None
    tax_id: str | None = Field(description="Masked unless the role may see it")
    bank_account: str | None
    phone: str | None
    payment_terms_days: int
    active: bool


class PartnerQuery(PageQuery):
    kind: Literal["customer", "supplier"] | None = None
    q: Text(100, 1) | None = Field(None, description="Name or code contains")


class BankChangeIn(In):
    bank_account: Text(64, 1)
    note: Text(500) | None = None


class BankChangeReject(In):
    reason: Text(500) | None = None


class BankChangeOut(Out):
    id: int
    partner_id: int
    partner_code: str
    partner_name: str
    old_value: str | None = Field(description="The account before the change (masked unless the role may see it)")
    new_value: str | None
    state: Literal["pending", "approved", "rejected"]
    note: str | None
    requested_by: str
    requested_at: dt.datetime
    decided_by: str | None
    decided_at: dt.datetime | None
    reason: str | None


class BankChangeQuery(PageQuery):
    state: Literal["pending", "approved", "rejected"] | None = None
    partner_id: Id | None = None


class PriceIn(In):
    product_id: Id
    unit_price: Money
    min_quantity: Count = Decimal("0")


class PriceOut(Out):
    product_id: int
    sku: str
    unit_price: Decimal
    min_quantity: Decimal


# ---- products, taxes, warehouses ----------------------------------------------------------------

class ProductIn(In):
    sku: Code
    name: Text(200, 1)
    unit: Text(16, 1) = "pcs"
    sale_price: Money
    tax_code: Text(16, 1) = "VAT13"


class ProductPatch(In):
    name: Text(200, 1) = Unchanged()
    unit: Text(16, 1) = Unchanged()
    sale_price: Money = Unchanged()
    tax_code: Text(16, 1) = Unchanged()
    active: bool = Unchanged()


class ProductOut(Out):
    id: int
    sku: str
    name: str
    unit: str
    sale_price: Decimal
    tax_code: str
    avg_cost: Decimal
    active: bool


class ProductQuery(PageQuery):
    q: Text(100, 1) | None = Field(None, description="SKU or name contains")
    active: Bool | None = None


class TaxRateOut(Out):
    code: str
    name: str
    rate_percent: Decimal


class WarehouseIn(In):
    code: Code
    name: Text(100, 1)
    address: Text(300) | None = None


class WarehousePatch(In):
    name: Text(100, 1) = Unchanged()
    address: Text(300) | None = None


class WarehouseOut(Out):
    id: int
    code: str
    name: str
    address: str | None


# ---- stock --------------------------------------------------------------------------------

class StockLevelOut(Out):
    product_id: int
    sku: str
    warehouse_id: int
    warehouse_code: str
    quantity: Decimal


class StockQuery(PageQuery):
    product_id: Id | None = None
    warehouse_id: Id | None = None


class MoveOut(Out):
    id: int
    product_id: int
    from_warehouse_id: int | None
    to_warehouse_id: int | None
    quantity: Decimal
    unit_cost: Decimal
    kind: str
    reference: str
    created_at: dt.datetime
    lot_id: int | None


class TransferOut(MoveOut):
    """The first move of the transfer, with the whole quantity, and every move (one per lot taken)."""
    moves: list[MoveOut]


class MoveQuery(StockQuery):
    kind: Literal["receipt", "delivery", "transfer", "adjustment"] | None = None


class TransferIn(In):
    product_id: Id
    quantity: Quantity
    from_warehouse_id: Id
    to_warehouse_id: Id
    reference: Text(64) = ""


class ReorderRuleIn(In):
    product_id: Id
    warehouse_id: Id
    min_quantity: Count
    reorder_quantity: Quantity


class ReorderRuleOut(Out):
    id: int
    product_id: int
    warehouse_id: int
    min_quantity: Decimal
    reorder_quantity: Decimal


class LowStockOut(Out):
    product_id: int
    sku: str
    name: str
    warehouse_id: int
    warehouse_code: str
    on_hand: Decimal
    min_quantity: Decimal
    reorder_quantity: Decimal
    suggested_quantity: Decimal = Field(description="The reorder quantity, or more to reach the minimum")


class CountIn(In):
    product_id: Id
    counted_quantity: Count


class StocktakeIn(In):
    warehouse_id: Id
    counts: list[CountIn] = Field(min_length=1, max_length=5000)


class StocktakeLineOut(Out):
    product_id: int
    counted_quantity: Decimal
    expected_quantity: Decimal | None


class StocktakeOut(Out):
    id: int
    number: str
    warehouse_id: int
    state: str
    lines: list[StocktakeLineOut]


# ---- orders --------------------------------------------------------------------------------

class OrderLineIn(In):
    product_id: Id
    quantity: Quantity
    unit_price: Money | None = Field(None, description="Sales: defaults to the customer's price list, "
                                                      "then the product's sale price")
    discount_percent: Percent = Decimal("0")


class OrderIn(In):
    partner_id: Id
    warehouse_id: Id
    lines: list[OrderLineIn] = Field(min_length=1, max_length=500)
    notes: Text(1000) = ""
    currency: CurrencyCode | None = Field(None, description="The order's currency; the company currency "
                                                            "when left out. Unit prices sent are in it.")
    exchange_rate: ExchangeRate | None = Field(None, description="Company currency units per one unit of the "
                                                                 "order's currency: required for a foreign "
                                                                 "currency, 1 for the company currency")


class OrderLineOut(Out):
    id: int
    product_id: int
    quantity: Decimal
    unit_price: Decimal
    discount_percent: Decimal
    tax_rate_percent: Decimal
    net_amount: Decimal
    tax_amount: Decimal
    unit_price_currency: Decimal
    net_amount_currency: Decimal
    tax_amount_currency: Decimal


class OrderOut(Out):
    id: int
    number: str
    partner_id: int
    warehouse_id: int
    state: str
    net_total: Decimal
    tax_total: Decimal
    gross_total: Decimal
    notes: str
    order_date: dt.datetime
    lines: list[OrderLineOut]
    currency: str = Field(description="The order's currency; amounts without _currency are in the company's")
    exchange_rate: Decimal
    net_total_currency: Decimal
    tax_total_currency: Decimal
    gross_total_currency: Decimal


class SalesOrderOut(OrderOut):
    channel: str
    external_id: str | None


class PurchaseOrderOut(OrderOut):
    pass


OrderState = Literal["draft", "confirmed", "delivered", "received", "invoiced", "billed", "paid", "cancelled"]


OrderSort = Literal["id", "-id", "number", "-number", "order_date", "-order_date", "gross_total", "-gross_total"]


class OrderQuery(PageQuery):
    state: OrderState | None = None
    partner_id: Id | None = None
    q: Text(100, 1) | None = Field(None, description="The order number, or the partner's code or name, contains")
    date_from: Day | None = Field(None, description="Ordered on or after this day (UTC)")
    date_to: Day | None = Field(None, description="Ordered on or before this day (UTC)")
    sort: OrderSort = Field("-id", description="A column to sort by; '-' first for descending")


class OrderPatch(In):
    """A draft order's fields to change; what is left out stays. Lines, when sent, replace all lines."""
    partner_id: Id = Unchanged()
    warehouse_id: Id = Unchanged()
    lines: list[OrderLineIn] = Unchanged(min_length=1, max_length=500)
    notes: Text(1000) = Unchanged()
    currency: CurrencyCode = Unchanged()
    exchange_rate: ExchangeRate = Unchanged()


class DeliverIn(In):
    warehouse_id: Id | None = Field(None, description="Deliver from another warehouse than the order's")


class BillIn(In):
    supplier_reference: Text(64) | None = None


# ---- finance -------------------------------------------------------------------------------

class InvoiceOut(Out):
    id: int
    number: str
    kind: str
    partner_id: int
    sales_order_id: int | None
    purchase_order_id: int | None
    supplier_reference: str | None
    issue_date: dt.date
    due_date: dt.date
    net_total: Decimal
    tax_total: Decimal
    gross_total: Decimal
    amount_paid: Decimal
    credited: Decimal = Field(description="What credit (debit) notes of returns settled of it")
    outstanding: Decimal = Field(description="What is left to pay: gross_total - amount_paid - credited")
    state: str
    currency: str
    exchange_rate: Decimal
    net_total_currency: Decimal
    tax_total_currency: Decimal
    gross_total_currency: Decimal


class InvoiceQuery(PageQuery):
    kind: Literal["customer", "supplier"] | None = None
    state: Literal["open", "partial", "paid"] | None = None
    partner_id: Id | None = None


class PaymentIn(In):
    amount: PositiveMoney = Field(description="In the invoice's currency")
    paid_on: Day | None = None
    method: Text(32, 1) = "bank"


class PaymentOut(Out):
    id: int
    number: str
    invoice_id: int
    amount: Decimal
    paid_on: dt.date
    method: str
    currency: str
    exchange_rate: Decimal
    amount_currency: Decimal


class AccountOut(Out):
    code: str
    name: str
    type: str


class JournalLineIn(In):
    account: Text(16, 1)
    debit: Money = Decimal("0")
    credit: Money = Decimal("0")
    partner_id: Id | None = None


class JournalEntryIn(In):
    memo: Text(300, 1)
    date: Day | None = None
    lines: list[JournalLineIn] = Field(min_length=2, max_length=200)


class JournalLineOut(Out):
    account_code: str
    partner_id: int | None
    debit: Decimal
    credit: Decimal
    currency: str
    amount_currency: Decimal = Field(description="Signed, in `currency`: debit positive, credit negative")


class JournalEntryOut(Out):
    id: int
    number: str
    date: dt.date
    memo: str
    source: str
    reverses_id: int | None
    created_by: str
    lines: list[JournalLineOut]


class JournalQuery(PageQuery):
    source: Text(64, 1) | None = Field(None, description="Source starts with, e.g. 'invoice:'")
    account: Text(16, 1) | None = Field(None, description="Only entries with a line on this account, e.g. '1122'")
    date_from: Day | None = None
    date_to: Day | None = None


class ReverseIn(In):
    memo: Text(300) = ""
    date: Day | None = None


# ---- reports -------------------------------------------------------------------------------

class AsOfQuery(In):
    as_of: Day | None = None


class TrialBalanceQuery(In):
    as_of: Day | None = None
    date_from: Day | None = None  # only movements from this day (e.g. one month's: date_from .. as_of)


class PeriodQuery(In):
    date_from: Day | None = None
    date_to: Day | None = None


class AgingQuery(In):
    kind: Literal["customer", "supplier"] = "customer"
    as_of: Day | None = None


# ---- audit and system ------------------------------------------------------------------------

class AuditOut(Out):
    id: int
    at: dt.datetime
    actor: str
    action: str
    entity: str
    entity_id: str
    before: dict | None
    after: dict | None


class AuditQuery(PageQuery):
    entity: Text(64, 1) | None = None
    actor: Text(64, 1) | None = None
    action: Literal["create", "update", "delete", "login", "logout", "login_failed"] | None = None


class MaintenanceIn(In):
    enabled: bool
    reason: Text(200) = ""


class MaintenanceOut(Out):
    enabled: bool
    reason: str


# ---- e-commerce import ------------------------------------------------------------------------

class ImportLineIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    sku: Text(64, 1)
    quantity: Quantity
    unit_price: Money | None = None
    discount_percent: Percent = Decimal("0")


class ImportOrderIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    external_id: Text(64, 1)
    customer_code: Text(32, 1)
    lines: list[dict] = Field(min_length=1, max_length=500, description="ImportLine objects")
    notes: Text(1000) = ""


class ImportBatchIn(In):
    channel: Annotated[str, Field(min_length=1, max_length=32, pattern=r"^[a-z0-9_-]+$")]
    warehouse_id: Id
    confirm: bool = Field(False, description="Confirm each accepted order")
    orders: list[dict] = Field(min_length=1, max_length=1000, description="ImportOrder objects; each is "
                               "validated on its own so one bad order does not reject the batch")


class ImportResultOut(Out):
    external_id: str | None
    status: Literal["accepted", "duplicate", "rejected"]
    order_id: int | None = None
    order_number: str | None = None
    reason: str | None = None


class ImportBatchOut(Out):
    channel: str
    accepted: int
    duplicates: int
    rejected: int
    results: list[ImportResultOut]
