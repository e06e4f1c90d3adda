"""The backfills of a staged upgrade (declared by backfill-stage migrations; see erp_core.backfill)
and demo data."""

from __future__ import annotations

from ..backfill import Backfill, BatchResult, backfills, checkpoint, key_bounds, remaining, rows_done, run_batch
from ..db import Database
from ..seed import has_sales_orders, seed
from ..services import periods

__all__ = ["Backfill", "BatchResult", "backfills", "checkpoint", "key_bounds", "remaining", "rows_done",
           "run_batch", "seed", "has_sales_orders", "complete_period_balances"]


def complete_period_balances(url: str) -> int | None:
    """Build the ledger period balances if they are not complete yet (a database migrated with
    history); returns the balances written, None when they were complete already."""
    db = Database(url)
    try:
        with db.session(write=False) as s:
            if periods.complete(s):
                return None
        with db.session(actor="erpctl") as s:
            return periods.rebuild(s)
    finally:
        db.dispose()
