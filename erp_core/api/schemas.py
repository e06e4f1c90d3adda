"""Request and response schemas. They validate requests and generate the OpenAPI document."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal
from typing import Annotated, Generic, Literal, TypeVar

from pydantic import AfterValidator, BaseModel, ConfigDict, Field

MAX_ID = 2**31 - 1


def _clean_text(value: str) -> str:
    if "\x00" in value:
        raise ValueError("must not contain NUL characters")
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        raise ValueError("must be valid Unicode text") from None
    return value


def Text(max_length: int, min_length: int = 0):
    return Annotated[str, Field(min_length=min_length, max_length=max_length), AfterValidator(_clean_text)]


Id = Annotated[int, Field(ge=1, le=MAX_ID)]
Code = Annotated[str, Field(min_length=1, max_length=32, pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]*$")]
Money = Annotated[Decimal, Field(ge=0, le=Decimal("999999999999.99"), decimal_places=2)]
PositiveMoney = Annotated[Decimal, Field(gt=0, le=Decimal("999999999999.99"), decimal_places=2)]
Quantity = Annotated[Decimal, Field(gt=0, le=Decimal("999999999"), decimal_places=3)]
Count = Annotated[Decimal, Field(ge=0, le=Decimal("999999999"), decimal_places=3)]
Percent = Annotated[Decimal, Field(ge=0, le=100, decimal_places=2)]
Day = Annotated[dt.date, Field(ge=dt.date(1970, 1, 1), le=dt.date(9999, 12, 31))]

T = TypeVar("T")


class In(BaseModel):
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)


class Out(BaseModel):
    model_config = ConfigDict(from_attributes=True)


class Page(Out, Generic[T]):
    items: list[T]
    total: int
    limit: int
    offset: int


class PageQuery(In):
    limit: int = Field(50, ge=1, le=200, description="Rows per page (1-200)")
    offset: int = Field(0, ge=0, le=MAX_ID, description="Rows to skip")


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


class TokenOut(Out):
    token: str
    token_type: Literal["Bearer"] = "Bearer"
    expires_at: dt.datetime
    username: str
    role: str


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
    role: Role | None = None
    active: bool | None = None
    full_name: Text(120) | None = None


# ---- partners ------------------------------------------------------------------------------

class PartnerIn(In):
    code: Code
    name: Text(200, 1)
    is_customer: bool = False
    is_supplier: bool = False
    email: Text(200) | None = None
    address: Text(500) | None = None
    tax_id: Text(64) | None = None
    bank_account: Text(64) | None = None
    phone: Text(32) | None = None
    payment_terms_days: int = Field(30, ge=0, le=365)


class PartnerPatch(In):
    name: Text(200, 1) | None = None
    is_customer: bool | None = None
    is_supplier: bool | None = None
    email: Text(200) | None = None
    address: Text(500) | None = None
    tax_id: Text(64) | None = None
    bank_account: Text(64) | None = None
    phone: Text(32) | None = None
    payment_terms_days: int | None = Field(None, ge=0, le=365)
    active: bool | None = None


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
    q: Text(100) | None = Field(None, description="Name or code contains")


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
    name: Text(200, 1) | None = None
    unit: Text(16, 1) | None = None
    sale_price: Money | None = None
    tax_code: Text(16, 1) | None = None
    active: bool | None = None


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
    q: Text(100) | None = Field(None, description="SKU or name contains")
    active: bool | None = None


class TaxRateOut(Out):
    code: str
    name: str
    rate_percent: Decimal


class WarehouseIn(In):
    code: Code
    name: Text(100, 1)
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


class OrderLineOut(Out):
    id: int
    product_id: int
    quantity: Decimal
    unit_price: Decimal
    discount_percent: Decimal
    tax_rate_percent: Decimal
    net_amount: Decimal
    tax_amount: Decimal


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


class SalesOrderOut(OrderOut):
    channel: str
    external_id: str | None


class PurchaseOrderOut(OrderOut):
    pass


class OrderQuery(PageQuery):
    state: Text(16) | None = None
    partner_id: Id | None = None


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
    state: str


class InvoiceQuery(PageQuery):
    kind: Literal["customer", "supplier"] | None = None
    state: Literal["open", "partial", "paid"] | None = None
    partner_id: Id | None = None


class PaymentIn(In):
    amount: PositiveMoney
    paid_on: Day | None = None
    method: Text(32, 1) = "bank"


class PaymentOut(Out):
    id: int
    number: str
    invoice_id: int
    amount: Decimal
    paid_on: dt.date
    method: str


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
    source: Text(64) | None = Field(None, description="Source starts with, e.g. 'invoice:'")
    date_from: Day | None = None
    date_to: Day | None = None


class ReverseIn(In):
    memo: Text(300) = ""
    date: Day | None = None


# ---- reports -------------------------------------------------------------------------------

class AsOfQuery(In):
    as_of: Day | None = None


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
    entity: Text(64) | None = None
    actor: Text(64) | None = None
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
