"""Repairs of derived data from its source of truth, for operators: the on-hand cache from the moves."""

from __future__ import annotations

from ..services import stockcache as _stockcache

__all__ = ["repair_stock_cache"]


def repair_stock_cache(s, *, apply: bool) -> dict:
    """The on-hand rows (stock_levels) that differ from the sum of their done stock moves, rebuilt from
    the moves when `apply` (in the session's transaction, effective when it commits): {"corrections":
    [{"product_id", "warehouse_id", "ref", "old", "new"}], "count", "digest", "applied"}. With apply the
    stock tables are locked first (PostgreSQL: the stock services' order), the ERP must be in maintenance
    mode (MaintenanceRequired otherwise) and each correction is written in the audit log with the digest.
    Conflict, and nothing changed, when the moves themselves are inconsistent (more out than in, a
    missing product or warehouse). On SQLite pass a write session (it takes the write lock first)."""
    return _stockcache.rebuild(s, apply=apply)
