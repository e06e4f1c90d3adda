"""Warehouses, the stock-move ledger, on-hand cache, reorder rules, stocktakes."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal

from sqlalchemy import CheckConstraint, ForeignKey, Integer, String, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column, relationship

from .base import Base, Qty, UnitCost, UTCDateTime, added_in_1_1, utcnow


class Warehouse(Base):
    __tablename__ = "warehouses"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    code: Mapped[str] = mapped_column(String(16), unique=True)
    name: Mapped[str] = mapped_column(String(100))
    address: Mapped[str | None] = mapped_column(String(300))


class Lot(Base):
    """A batch of one product: created by each receipt (and by a stocktake gain); stock that predates
    lot tracking sits in the product's opening lot (domain.lots.opening_lot_number). What a lot holds in
    a warehouse is the sum of its moves in minus its moves out."""

    __tablename__ = "lots"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    product_id: Mapped[int] = mapped_column(ForeignKey("products.id"), index=True)
    number: Mapped[str] = mapped_column(String(64), unique=True)
    received_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)
    reference: Mapped[str] = mapped_column(String(64), default="")


class StockMove(Base):
    """Append-only ledger. A move leaves from_warehouse and/or enters to_warehouse
    (None means outside: a supplier, a customer, or a stocktake adjustment), and moves one lot."""

    __tablename__ = "stock_moves"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    product_id: Mapped[int] = mapped_column(ForeignKey("products.id"), index=True)
    from_warehouse_id: Mapped[int | None] = mapped_column(ForeignKey("warehouses.id"))
    to_warehouse_id: Mapped[int | None] = mapped_column(ForeignKey("warehouses.id"))
    quantity: Mapped[Decimal] = mapped_column(Qty)
    unit_cost: Mapped[Decimal] = mapped_column(UnitCost)
    kind: Mapped[str] = mapped_column(String(16))
    state: Mapped[str] = mapped_column(String(16), default="done")
    reference: Mapped[str] = mapped_column(String(64), default="")
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow, index=True)
    # A real foreign key on PostgreSQL; on SQLite a trigger checks it (SQLite cannot drop a column
    # that is in a foreign key, and the rollback of release 1.1 drops this one).
    lot_id: Mapped[int] = added_in_1_1(ForeignKey("lots.id"), index=True)
    __table_args__ = (
        CheckConstraint("quantity > 0", name="positive_qty"),
        CheckConstraint("unit_cost >= 0", name="cost"),
        CheckConstraint("from_warehouse_id IS NOT NULL OR to_warehouse_id IS NOT NULL", name="has_side"),
        CheckConstraint("kind IN ('receipt','delivery','transfer','adjustment')", name="kind"),
        CheckConstraint("state = 'done'", name="state"),
    )


class StockLevel(Base):
    """On-hand cache, updated in the same transaction as each move."""

    __tablename__ = "stock_levels"
    product_id: Mapped[int] = mapped_column(ForeignKey("products.id"), primary_key=True)
    warehouse_id: Mapped[int] = mapped_column(ForeignKey("warehouses.id"), primary_key=True)
    quantity: Mapped[Decimal] = mapped_column(Qty, default=Decimal("0"))
    __table_args__ = (CheckConstraint("quantity >= 0", name="not_negative"),)


class ReorderRule(Base):
    __tablename__ = "reorder_rules"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    product_id: Mapped[int] = mapped_column(ForeignKey("products.id"))
    warehouse_id: Mapped[int] = mapped_column(ForeignKey("warehouses.id"))
    min_quantity: Mapped[Decimal] = mapped_column(Qty)
    reorder_quantity: Mapped[Decimal] = mapped_column(Qty)
    __table_args__ = (
        UniqueConstraint("product_id", "warehouse_id", name="uq_reorder_rule"),
        CheckConstraint("min_quantity >= 0 AND reorder_quantity > 0", name="quantities"),
    )


class Stocktake(Base):
    __tablename__ = "stocktakes"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    number: Mapped[str] = mapped_column(String(32), unique=True)
    warehouse_id: Mapped[int] = mapped_column(ForeignKey("warehouses.id"))
    state: Mapped[str] = mapped_column(String(16), default="draft")
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)
    posted_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime)
    lines: Mapped[list["StocktakeLine"]] = relationship(order_by="StocktakeLine.id", cascade="all, delete-orphan")
    __table_args__ = (CheckConstraint("state IN ('draft','posted','cancelled')", name="state"),)


class StocktakeLine(Base):
    __tablename__ = "stocktake_lines"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    stocktake_id: Mapped[int] = mapped_column(ForeignKey("stocktakes.id", ondelete="CASCADE"))
    product_id: Mapped[int] = mapped_column(ForeignKey("products.id"))
    counted_quantity: Mapped[Decimal] = mapped_column(Qty)
    expected_quantity: Mapped[Decimal | None] = mapped_column(Qty)
    __table_args__ = (
        UniqueConstraint("stocktake_id", "product_id", name="uq_stocktake_line"),
        CheckConstraint("counted_quantity >= 0", name="counted"),
    )
