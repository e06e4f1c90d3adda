"""backfill for release 1.1: fill the new columns of the rows written before the expand step

Revision ID: 0003
Revises: 0011 (release 1.1's last expand step)

Data only. The backfills below are run in key-range batches by erp_core.backfill, each batch with
its checkpoint in erp_backfill_progress; an operator's tool may run them batch by batch while release
1.0 serves (its new rows are filled by 0002's compatibility triggers), and this migration then
finds nothing left. On a small database `upgrade()` simply runs them all.
"""
from alembic import op

from erp_core.backfill import Backfill, remaining, run_all
from erp_core.db import migration_module

revision = '0003'
down_revision = '0011'
branch_labels = None
depends_on = None

stage = "backfill"

_expand = migration_module("0002")


def _fill(table: str, what: str, prepare: str | None = None) -> Backfill:
    return Backfill(name=f"{table}.{what}", table=table, key="id", columns=tuple(_expand.columns(table)),
                    pending=_expand.pending(table), set_clause=_expand.set_clause(table), prepare=prepare)


# In order: documents, their lines, payments, the ledger, the stock moves (which need opening lots).
BACKFILLS = [
    _fill("sales_orders", "currency_amounts"),
    _fill("purchase_orders", "currency_amounts"),
    _fill("invoices", "currency_amounts"),
    _fill("sales_order_lines", "currency_amounts"),
    _fill("purchase_order_lines", "currency_amounts"),
    _fill("payments", "currency_amounts"),
    _fill("journal_lines", "currency_amounts"),
    _fill("stock_moves", "opening_lot",
          prepare=_expand.create_opening_lots_of_range()),
]


def upgrade():
    conn = op.get_bind()
    for bf in BACKFILLS:
        run_all(conn, bf)
        left = remaining(conn, bf)
        if left:
            raise RuntimeError(f"backfill {bf.name} left {left} rows of {bf.table} unfilled")


def downgrade():
    pass  # data only: the filled values are valid at 0002 too
