"""The backfills of a staged upgrade (declared by backfill-stage migrations; see erp_core.backfill)
and demo data."""

from __future__ import annotations

from ..backfill import Backfill, BatchResult, backfills, checkpoint, key_bounds, remaining, rows_done, run_batch
from ..seed import has_sales_orders, seed

__all__ = ["Backfill", "BatchResult", "backfills", "checkpoint", "key_bounds", "remaining", "rows_done",
           "run_batch", "seed", "has_sales_orders"]
