"""Products, tax rates, per-customer price lists."""

from __future__ import annotations

from decimal import Decimal

from sqlalchemy import Boolean, CheckConstraint, ForeignKey, Integer, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from .base import Base, Money, Percent, Qty, UnitCost, added_later_in_1_1, search_key_of


class TaxRate(Base):
    __tablename__ = "tax_rates"
    code: Mapped[str] = mapped_column(String(16), primary_key=True)
    name: Mapped[str] = mapped_column(String(64))
    rate_percent: Mapped[Decimal] = mapped_column(Percent)
    __table_args__ = (CheckConstraint("rate_percent >= 0 AND rate_percent <= 100", name="range"),)


class Product(Base):
    __tablename__ = "products"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    sku: Mapped[str] = mapped_column(String(64), unique=True)
    name: Mapped[str] = mapped_column(String(200), index=True)
    unit: Mapped[str] = mapped_column(String(16), default="pcs")
    sale_price: Mapped[Decimal] = mapped_column(Money)
    tax_code: Mapped[str] = mapped_column(ForeignKey("tax_rates.code"))
    avg_cost: Mapped[Decimal] = mapped_column(UnitCost, default=Decimal("0"))
    costing: Mapped[str] = mapped_column(String(16), default="moving_average")
    active: Mapped[bool] = mapped_column(Boolean, default=True)
    # what is on hand is worth (the Inventory account's share of the product), see services.stock
    stock_value: Mapped[Decimal] = added_later_in_1_1(Money, server_default="0")  # read when needed, not on INSERT
    search_text: Mapped[str] = added_later_in_1_1(Text, default=search_key_of("sku", "name"))
    __mapper_args__ = {"eager_defaults": False}
    __table_args__ = (
        CheckConstraint("sale_price >= 0", name="price"),
        CheckConstraint("avg_cost >= 0", name="cost"),
        CheckConstraint("costing = 'moving_average'", name="costing"),
    )


class PriceList(Base):
    __tablename__ = "price_lists"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(100), unique=True)
    partner_id: Mapped[int | None] = mapped_column(ForeignKey("partners.id"), unique=True)


class PriceListItem(Base):
    __tablename__ = "price_list_items"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    price_list_id: Mapped[int] = mapped_column(ForeignKey("price_lists.id", ondelete="CASCADE"))
    product_id: Mapped[int] = mapped_column(ForeignKey("products.id"))
    unit_price: Mapped[Decimal] = mapped_column(Money)
    min_quantity: Mapped[Decimal] = mapped_column(Qty, default=Decimal("0"))
    __table_args__ = (
        UniqueConstraint("price_list_id", "product_id", "min_quantity", name="uq_price_item"),
        CheckConstraint("unit_price >= 0", name="price"),
    )
