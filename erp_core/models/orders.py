"""Sales and purchase orders with their lines."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal

from sqlalchemy import CheckConstraint, ForeignKey, Integer, String, UniqueConstraint
from sqlalchemy.orm import Mapped, declared_attr, mapped_column, relationship

from ..domain.states import PURCHASE_ORDER, SALES_ORDER
from ..domain.money import COMPANY_CURRENCY
from .base import Base, CurrencyCode, Money, Percent, Qty, Rate, UTCDateTime, added_in_1_1, same_as, utcnow


def _state_check(machine):
    states = ",".join(f"'{s}'" for s in machine.states)
    return CheckConstraint(f"state IN ({states})", name="state")


class _LineColumns:
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    product_id: Mapped[int] = mapped_column(ForeignKey("products.id"))
    quantity: Mapped[Decimal] = mapped_column(Qty)
    unit_price: Mapped[Decimal] = mapped_column(Money)
    discount_percent: Mapped[Decimal] = mapped_column(Percent, default=Decimal("0"))
    tax_rate_percent: Mapped[Decimal] = mapped_column(Percent)
    net_amount: Mapped[Decimal] = mapped_column(Money)
    tax_amount: Mapped[Decimal] = mapped_column(Money)
    # in the order's currency (the columns above are in company currency)
    unit_price_currency: Mapped[Decimal] = added_in_1_1(Money, default=same_as("unit_price"))
    net_amount_currency: Mapped[Decimal] = added_in_1_1(Money, default=same_as("net_amount"))
    tax_amount_currency: Mapped[Decimal] = added_in_1_1(Money, default=same_as("tax_amount"))

    @declared_attr.directive
    def __table_args__(cls):
        return (
            CheckConstraint("quantity > 0", name="qty"),
            CheckConstraint("unit_price >= 0", name="price"),
            CheckConstraint("discount_percent >= 0 AND discount_percent <= 100", name="discount"),
        )


class _OrderColumns:
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    number: Mapped[str] = mapped_column(String(32), unique=True)
    partner_id: Mapped[int] = mapped_column(ForeignKey("partners.id"), index=True)
    warehouse_id: Mapped[int] = mapped_column(ForeignKey("warehouses.id"))
    state: Mapped[str] = mapped_column(String(16), default="draft", index=True)
    net_total: Mapped[Decimal] = mapped_column(Money, default=Decimal("0"))
    tax_total: Mapped[Decimal] = mapped_column(Money, default=Decimal("0"))
    gross_total: Mapped[Decimal] = mapped_column(Money, default=Decimal("0"))
    notes: Mapped[str] = mapped_column(String(1000), default="")
    order_date: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow, index=True)
    created_by: Mapped[str] = mapped_column(String(64), default="")
    currency: Mapped[str] = added_in_1_1(CurrencyCode, default=COMPANY_CURRENCY)
    exchange_rate: Mapped[Decimal] = added_in_1_1(Rate, default=Decimal("1"))
    net_total_currency: Mapped[Decimal] = added_in_1_1(Money, default=same_as("net_total"))
    tax_total_currency: Mapped[Decimal] = added_in_1_1(Money, default=same_as("tax_total"))
    gross_total_currency: Mapped[Decimal] = added_in_1_1(Money, default=same_as("gross_total"))


class SalesOrder(_OrderColumns, Base):
    __tablename__ = "sales_orders"
    channel: Mapped[str] = mapped_column(String(32), default="direct")
    external_id: Mapped[str | None] = mapped_column(String(64))
    lines: Mapped[list["SalesOrderLine"]] = relationship(order_by="SalesOrderLine.id", cascade="all, delete-orphan")
    __table_args__ = (
        _state_check(SALES_ORDER),
        UniqueConstraint("channel", "external_id", name="uq_sales_external"),
    )


class SalesOrderLine(_LineColumns, Base):
    __tablename__ = "sales_order_lines"
    order_id: Mapped[int] = mapped_column(ForeignKey("sales_orders.id", ondelete="CASCADE"), index=True)


class PurchaseOrder(_OrderColumns, Base):
    __tablename__ = "purchase_orders"
    lines: Mapped[list["PurchaseOrderLine"]] = relationship(order_by="PurchaseOrderLine.id", cascade="all, delete-orphan")
    __table_args__ = (_state_check(PURCHASE_ORDER),)


class PurchaseOrderLine(_LineColumns, Base):
    __tablename__ = "purchase_order_lines"
    order_id: Mapped[int] = mapped_column(ForeignKey("purchase_orders.id", ondelete="CASCADE"), index=True)
