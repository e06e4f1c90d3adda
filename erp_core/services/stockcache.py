"""The on-hand cache (stock_levels) rebuilt from the stock-move ledger: the repair for the
on_hand_matches_moves invariant.

The done moves are the record (append-only, immutable); stock_levels is a cache of their sum per product
and warehouse, kept by the stock services in the same transaction as each move. When it differs (an edit
behind the ERP's back, a bug, a damaged copy) it is rewritten from the moves. Nothing else is cached from
the moves: what a lot holds is computed from them (services/stock.lot_balances), and a product's average
cost is a running figure of its receipts, not a sum the moves define.

Lock order. The stock services lock their products' rows, then stock_levels rows (the conditional UPDATE
of _take_on_hand and _add_on_hand), then insert their stock_moves (services/stock.py states the rule).
The rebuild takes the same order for whole tables on PostgreSQL: products in EXCLUSIVE mode (no stock
writer can lock a product, readers go on), stock_levels in EXCLUSIVE mode, then stock_moves in SHARE
mode (no move can be inserted). A writer that has already updated a stock_levels row is waited for
(its moves commit with it); one that has not waits for the rebuild. So no move lands between the sums
being read and the cache being written. On SQLite the write transaction (BEGIN IMMEDIATE) holds the
database's one write lock from its start. The rebuild writes only in maintenance mode, read in the same
transaction after the locks: the ERP's users meet a read-only ERP rather than waiting writes.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from decimal import Decimal

from sqlalchemy import insert, text, update
from sqlalchemy.orm import Session

from ..errors import Conflict, MaintenanceRequired
from ..invariants import from_thousandths, on_hand_against_moves, stock_ref
from ..models import StockLevel
from . import audit, maintenance


@dataclass(frozen=True)
class Correction:
    """One on-hand row to rewrite: `old` is None when there is no stock_levels row."""

    product_id: int
    warehouse_id: int
    ref: str
    old: Decimal | None
    new: Decimal

    def as_dict(self) -> dict:
        return {"product_id": self.product_id, "warehouse_id": self.warehouse_id, "ref": self.ref,
                "old": None if self.old is None else str(self.old), "new": str(self.new)}


def differences(s: Session) -> list[Correction]:
    """Every on-hand row that differs from its done moves, as the correction that fixes it. Refused
    (Conflict, nothing to rewrite) when the moves themselves are wrong: a product or warehouse that
    does not exist, or more taken out of a warehouse than came in."""
    found, broken = [], []
    for r in s.execute(on_hand_against_moves()):
        c = Correction(r.product_id, r.warehouse_id, stock_ref(r),
                       from_thousandths(r.on_hand) if r.levels else None, from_thousandths(r.moved))
        found.append(c)
        if r.sku is None or r.code is None:
            broken.append(f"{c.ref}: a missing product or warehouse")
        elif c.new < 0:
            broken.append(f"{c.ref}: the done moves take out {-c.new} more than came in")
    if broken:
        raise Conflict("the stock moves themselves are inconsistent, so the on-hand figures cannot be rebuilt "
                       f"from them: {'; '.join(broken[:10])}{' ...' if len(broken) > 10 else ''}.",
                       fix="This is not a cache problem: restore the last backup whose invariants are clean, "
                           "or have the warehouse post the missing moves; nothing was changed.")
    return found


def digest(corrections: list[Correction]) -> str:
    """SHA-256 of the corrections (canonical JSON): the same in the audit log and the operator's record."""
    canonical = json.dumps([c.as_dict() for c in corrections], sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(canonical.encode()).hexdigest()


def lock_stock(s: Session) -> None:
    """Stop every stock writer for the rest of the transaction, in the stock services' order (above)."""
    if s.get_bind().dialect.name == "postgresql":
        s.execute(text("LOCK TABLE products IN EXCLUSIVE MODE"))
        s.execute(text("LOCK TABLE stock_levels IN EXCLUSIVE MODE"))
        s.execute(text("LOCK TABLE stock_moves IN SHARE MODE"))


def rebuild(s: Session, *, apply: bool) -> dict:
    """The on-hand rows that differ from the done moves ({"corrections", "count", "digest", "applied"});
    with apply, rewritten in this transaction (locks first, maintenance mode required), each correction
    written in the audit log. Without apply nothing is locked or written."""
    if apply:
        lock_stock(s)
        if not maintenance.state(s)["enabled"]:
            raise MaintenanceRequired(
                "the stock cache is rebuilt only while the ERP is in maintenance mode (read-only): users "
                "posting stock during the rebuild would wait on it; nothing was changed.",
                fix="Switch maintenance mode on first ('erpctl erp maintenance on'), or look without changing "
                    "anything with --dry-run.")
    found = differences(s)
    sha = digest(found)
    if apply:
        for c in found:
            _rewrite(s, c, sha)
        s.flush()
    return {"corrections": [c.as_dict() for c in found], "count": len(found), "digest": sha, "applied": apply}


def _rewrite(s: Session, c: Correction, sha: str) -> None:
    key = dict(product_id=c.product_id, warehouse_id=c.warehouse_id)
    if c.old is None:
        s.execute(insert(StockLevel).values(**key, quantity=c.new))
    else:
        s.execute(update(StockLevel).where(StockLevel.product_id == c.product_id,
                                           StockLevel.warehouse_id == c.warehouse_id).values(quantity=c.new))
    audit.record(s, "update" if c.old is not None else "create", StockLevel.__tablename__,
                 f"{c.product_id},{c.warehouse_id}",
                 before=None if c.old is None else {"quantity": str(c.old)},
                 after={"quantity": str(c.new), "reason": f"stock cache rebuilt from the done moves ({c.ref})",
                        "repair_digest": sha})
