"""Customers and suppliers; tax id, bank account and phone are encrypted at rest."""

from __future__ import annotations

import datetime as dt

from sqlalchemy import Boolean, CheckConstraint, ForeignKey, Integer, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from .base import Base, Encrypted, UTCDateTime, added_later_in_1_1, search_key_of, utcnow


class Partner(Base):
    __tablename__ = "partners"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    code: Mapped[str] = mapped_column(String(32), unique=True)
    name: Mapped[str] = mapped_column(String(200), index=True)
    is_customer: Mapped[bool] = mapped_column(Boolean, default=False)
    is_supplier: Mapped[bool] = mapped_column(Boolean, default=False)
    email: Mapped[str | None] = mapped_column(String(200))
    address: Mapped[str | None] = mapped_column(String(500))
    tax_id: Mapped[str | None] = mapped_column(Encrypted)
    bank_account: Mapped[str | None] = mapped_column(Encrypted)
    phone: Mapped[str | None] = mapped_column(Encrypted)
    payment_terms_days: Mapped[int] = mapped_column(Integer, default=30)
    active: Mapped[bool] = mapped_column(Boolean, default=True)
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)
    search_text: Mapped[str] = added_later_in_1_1(Text, default=search_key_of("code", "name"))
    __table_args__ = (
        CheckConstraint("is_customer OR is_supplier", name="has_kind"),
        CheckConstraint("payment_terms_days >= 0", name="terms"),
    )


class BankDetailChange(Base):
    """A change of a partner's bank account asked by one finance user, in effect only once another approves it
    (four-eyes). Both values are encrypted and bound to this row; the partner keeps the old one meanwhile."""

    __tablename__ = "bank_detail_changes"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    partner_id: Mapped[int] = mapped_column(ForeignKey("partners.id"), index=True)
    old_value: Mapped[str | None] = mapped_column(Encrypted)
    new_value: Mapped[str | None] = mapped_column(Encrypted)
    state: Mapped[str] = mapped_column(String(16), default="pending")
    note: Mapped[str | None] = mapped_column(String(500))
    requested_by: Mapped[str] = mapped_column(String(64))
    requested_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)
    decided_by: Mapped[str | None] = mapped_column(String(64))
    decided_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime)
    reason: Mapped[str | None] = mapped_column(String(500))
    __table_args__ = (
        CheckConstraint("state IN ('pending', 'approved', 'rejected')", name="state"),
        CheckConstraint("decided_by IS NULL OR decided_by <> requested_by", name="four_eyes"),
        CheckConstraint("(state = 'pending') = (decided_by IS NULL)", name="decided"),
    )
