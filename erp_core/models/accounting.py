"""Chart of accounts, journal entries (immutable once posted), invoices, bills, payments."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal

from sqlalchemy import BigInteger, CheckConstraint, Date, ForeignKey, Index, Integer, String
from sqlalchemy.orm import Mapped, mapped_column, relationship

from ..domain.money import COMPANY_CURRENCY, round_money
from .base import Base, CurrencyCode, Money, Rate, UTCDateTime, added_in_1_1, same_as, utcnow


class Account(Base):
    __tablename__ = "accounts"
    code: Mapped[str] = mapped_column(String(16), primary_key=True)
    name: Mapped[str] = mapped_column(String(100))
    type: Mapped[str] = mapped_column(String(16))
    __table_args__ = (
        CheckConstraint("type IN ('asset','liability','equity','income','expense')", name="type"),
    )


class JournalEntry(Base):
    """Posted on creation; database triggers refuse UPDATE and DELETE. Corrections are reversals."""

    __tablename__ = "journal_entries"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    number: Mapped[str] = mapped_column(String(32), unique=True)
    date: Mapped[dt.date] = mapped_column(Date, index=True)
    memo: Mapped[str] = mapped_column(String(300))
    source: Mapped[str] = mapped_column(String(64), index=True)
    reverses_id: Mapped[int | None] = mapped_column(ForeignKey("journal_entries.id"), unique=True)
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)
    created_by: Mapped[str] = mapped_column(String(64), default="")
    lines: Mapped[list["JournalLine"]] = relationship(order_by="JournalLine.id")


def _signed(context) -> Decimal:
    p = context.get_current_parameters()
    return (p.get("debit") or Decimal("0")) - (p.get("credit") or Decimal("0"))


class JournalLine(Base):
    __tablename__ = "journal_lines"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    entry_id: Mapped[int] = mapped_column(ForeignKey("journal_entries.id"), index=True)
    account_code: Mapped[str] = mapped_column(ForeignKey("accounts.code"), index=True)
    partner_id: Mapped[int | None] = mapped_column(ForeignKey("partners.id"))
    debit: Mapped[Decimal] = mapped_column(Money, default=Decimal("0"))
    credit: Mapped[Decimal] = mapped_column(Money, default=Decimal("0"))
    currency: Mapped[str] = added_in_1_1(CurrencyCode, default=COMPANY_CURRENCY)
    # signed, in `currency`: debit positive, credit negative
    amount_currency: Mapped[Decimal] = added_in_1_1(Money, default=_signed)
    __table_args__ = (
        CheckConstraint("debit >= 0 AND credit >= 0", name="not_negative"),
        CheckConstraint("(debit = 0) <> (credit = 0)", name="one_side"),
    )


class LedgerPeriodBalance(Base):
    """Debits and credits of one account in one month (period 'YYYY-MM'), in whole cents: a cache of
    the journal lines kept by a database trigger on their insert (same transaction), so reports sum
    months instead of lines. Complete once the system setting PERIOD_BALANCES_KEY says so."""

    __tablename__ = "ledger_period_balances"
    account_code: Mapped[str] = mapped_column(String(16), primary_key=True)  # a code of accounts (no FK:
    period: Mapped[str] = mapped_column(String(7), primary_key=True)         # a cache, as stock_levels' sums)
    debit_cents: Mapped[int] = mapped_column(BigInteger, default=0)
    credit_cents: Mapped[int] = mapped_column(BigInteger, default=0)


class Invoice(Base):
    """A customer invoice (kind 'customer') or a supplier bill (kind 'supplier')."""

    __tablename__ = "invoices"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    number: Mapped[str] = mapped_column(String(32), unique=True)
    kind: Mapped[str] = mapped_column(String(16))
    partner_id: Mapped[int] = mapped_column(ForeignKey("partners.id"), index=True)
    sales_order_id: Mapped[int | None] = mapped_column(ForeignKey("sales_orders.id"), unique=True)
    purchase_order_id: Mapped[int | None] = mapped_column(ForeignKey("purchase_orders.id"), unique=True)
    supplier_reference: Mapped[str | None] = mapped_column(String(64))
    issue_date: Mapped[dt.date] = mapped_column(Date, index=True)
    due_date: Mapped[dt.date] = mapped_column(Date, index=True)
    net_total: Mapped[Decimal] = mapped_column(Money)
    tax_total: Mapped[Decimal] = mapped_column(Money)
    gross_total: Mapped[Decimal] = mapped_column(Money)
    amount_paid: Mapped[Decimal] = mapped_column(Money, default=Decimal("0"))
    state: Mapped[str] = mapped_column(String(16), default="open")
    journal_entry_id: Mapped[int | None] = mapped_column(ForeignKey("journal_entries.id"))  # none if zero
    currency: Mapped[str] = added_in_1_1(CurrencyCode, default=COMPANY_CURRENCY)
    exchange_rate: Mapped[Decimal] = added_in_1_1(Rate, default=Decimal("1"))
    net_total_currency: Mapped[Decimal] = added_in_1_1(Money, default=same_as("net_total"))
    tax_total_currency: Mapped[Decimal] = added_in_1_1(Money, default=same_as("tax_total"))
    gross_total_currency: Mapped[Decimal] = added_in_1_1(Money, default=same_as("gross_total"))
    payments: Mapped[list["Payment"]] = relationship(order_by="Payment.id")
    __table_args__ = (
        CheckConstraint("kind IN ('customer','supplier')", name="kind"),
        Index("ix_invoices_kind_state", "kind", "state"),  # aging reads the open ones, not all history
        CheckConstraint("state IN ('open','partial','paid')", name="state"),
        CheckConstraint("amount_paid >= 0 AND amount_paid <= gross_total", name="paid"),
        CheckConstraint("(kind = 'customer' AND sales_order_id IS NOT NULL AND purchase_order_id IS NULL)"
                        " OR (kind = 'supplier' AND purchase_order_id IS NOT NULL AND sales_order_id IS NULL)",
                        name="source"),
    )

    @property
    def outstanding(self) -> Decimal:
        """What is left to pay (company currency): gross less payments and what credit or debit notes settled
        (Invoice.credited, models.returns)."""
        return self.gross_total - (self.amount_paid or Decimal("0")) - round_money(Decimal(str(self.credited or 0)))


class Payment(Base):
    __tablename__ = "payments"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    number: Mapped[str] = mapped_column(String(32), unique=True)
    invoice_id: Mapped[int] = mapped_column(ForeignKey("invoices.id"), index=True)
    amount: Mapped[Decimal] = mapped_column(Money)
    paid_on: Mapped[dt.date] = mapped_column(Date)
    method: Mapped[str] = mapped_column(String(32), default="bank")
    journal_entry_id: Mapped[int] = mapped_column(ForeignKey("journal_entries.id"))
    currency: Mapped[str] = added_in_1_1(CurrencyCode, default=COMPANY_CURRENCY)
    exchange_rate: Mapped[Decimal] = added_in_1_1(Rate, default=Decimal("1"))
    amount_currency: Mapped[Decimal] = added_in_1_1(Money, default=same_as("amount"))
    __table_args__ = (CheckConstraint("amount > 0", name="positive"),)
