"""Customer and supplier returns, their lines, and the credit and debit notes they issue."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal

from sqlalchemy import CheckConstraint, Date, ForeignKey, Integer, String, func, select
from sqlalchemy.orm import Mapped, column_property, mapped_column, relationship

from ..domain.money import COMPANY_CURRENCY
from ..domain.states import RETURN
from .accounting import Invoice
from .base import Base, CurrencyCode, Money, Qty, Rate, UnitCost, UTCDateTime, utcnow


class Return(Base):
    """Goods coming back from a customer (kind 'customer', against a sales order) or going back to a
    supplier (kind 'supplier', against a purchase order): draft, then posted (immutable)."""

    __tablename__ = "returns"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    number: Mapped[str] = mapped_column(String(32), unique=True)
    kind: Mapped[str] = mapped_column(String(16))
    partner_id: Mapped[int] = mapped_column(ForeignKey("partners.id"), index=True)
    sales_order_id: Mapped[int | None] = mapped_column(ForeignKey("sales_orders.id"), index=True)
    purchase_order_id: Mapped[int | None] = mapped_column(ForeignKey("purchase_orders.id"), index=True)
    warehouse_id: Mapped[int] = mapped_column(ForeignKey("warehouses.id"))
    state: Mapped[str] = mapped_column(String(16), default="draft", index=True)
    reason: Mapped[str] = mapped_column(String(500), default="")
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)
    created_by: Mapped[str] = mapped_column(String(64), default="")
    posted_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime)
    stock_entry_id: Mapped[int | None] = mapped_column(ForeignKey("journal_entries.id"))
    lines: Mapped[list["ReturnLine"]] = relationship(order_by="ReturnLine.id", cascade="all, delete-orphan")
    __table_args__ = (
        CheckConstraint(f"state IN ({','.join(repr(s) for s in RETURN.states)})", name="state"),
        CheckConstraint("(kind = 'customer' AND sales_order_id IS NOT NULL AND purchase_order_id IS NULL)"
                        " OR (kind = 'supplier' AND purchase_order_id IS NOT NULL AND sales_order_id IS NULL)",
                        name="source"),
    )


class ReturnLine(Base):
    """One order line's returned quantity; unit_cost is the cost the goods moved at (set when posted)."""

    __tablename__ = "return_lines"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    return_id: Mapped[int] = mapped_column(ForeignKey("returns.id", ondelete="CASCADE"), index=True)
    order_line_id: Mapped[int] = mapped_column(Integer, index=True)  # of the return's sales or purchase order
    product_id: Mapped[int] = mapped_column(ForeignKey("products.id"))
    quantity: Mapped[Decimal] = mapped_column(Qty)
    unit_cost: Mapped[Decimal | None] = mapped_column(UnitCost)
    net_amount: Mapped[Decimal] = mapped_column(Money, default=Decimal("0"))
    tax_amount: Mapped[Decimal] = mapped_column(Money, default=Decimal("0"))
    net_amount_currency: Mapped[Decimal] = mapped_column(Money, default=Decimal("0"))
    tax_amount_currency: Mapped[Decimal] = mapped_column(Money, default=Decimal("0"))
    __table_args__ = (
        CheckConstraint("quantity > 0", name="qty"),
        CheckConstraint("unit_cost IS NULL OR unit_cost >= 0", name="cost"),
    )


class CreditNote(Base):
    """A credit note (kind 'credit': to a customer, numbered CN...) or debit note (kind 'debit': to a
    supplier, DN...): the negative of its invoice for the returned lines, in the invoice's currency and
    rate. `applied` (company currency) is what settled the invoice; gross - applied is the partner's
    balance the other way (a customer's credit, what a supplier owes back)."""

    __tablename__ = "credit_notes"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    number: Mapped[str] = mapped_column(String(32), unique=True)
    kind: Mapped[str] = mapped_column(String(16))
    return_id: Mapped[int] = mapped_column(ForeignKey("returns.id"), unique=True)
    invoice_id: Mapped[int] = mapped_column(ForeignKey("invoices.id"), index=True)
    partner_id: Mapped[int] = mapped_column(ForeignKey("partners.id"), index=True)
    issue_date: Mapped[dt.date] = mapped_column(Date, index=True)
    currency: Mapped[str] = mapped_column(CurrencyCode, default=COMPANY_CURRENCY)
    exchange_rate: Mapped[Decimal] = mapped_column(Rate, default=Decimal("1"))
    net_total: Mapped[Decimal] = mapped_column(Money)
    tax_total: Mapped[Decimal] = mapped_column(Money)
    gross_total: Mapped[Decimal] = mapped_column(Money)
    net_total_currency: Mapped[Decimal] = mapped_column(Money)
    tax_total_currency: Mapped[Decimal] = mapped_column(Money)
    gross_total_currency: Mapped[Decimal] = mapped_column(Money)
    applied: Mapped[Decimal] = mapped_column(Money, default=Decimal("0"))
    applied_currency: Mapped[Decimal] = mapped_column(Money, default=Decimal("0"))
    journal_entry_id: Mapped[int | None] = mapped_column(ForeignKey("journal_entries.id"))
    __table_args__ = (
        CheckConstraint("kind IN ('credit','debit')", name="kind"),
        CheckConstraint("net_total >= 0 AND tax_total >= 0 AND gross_total = net_total + tax_total", name="totals"),
        CheckConstraint("applied >= 0 AND applied <= gross_total", name="applied"),
        CheckConstraint("applied_currency >= 0 AND applied_currency <= gross_total_currency", name="applied_currency"),
    )

    @property
    def unapplied(self) -> Decimal:
        """The partner's balance this note leaves (company currency)."""
        return self.gross_total - self.applied


# What an invoice's notes settled of it (company currency): loaded when read (a release 1.1 table, added by
# migration 0011), part of Invoice.outstanding.
Invoice.credited = column_property(
    select(func.coalesce(func.sum(CreditNote.applied), 0)).where(CreditNote.invoice_id == Invoice.id)
    .correlate_except(CreditNote).scalar_subquery(), deferred=True)
