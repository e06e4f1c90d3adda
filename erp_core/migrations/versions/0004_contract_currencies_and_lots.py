"""contract for release 1.1: the new columns become required; compatibility with 1.0 ends

Revision ID: 0004
Revises: 0003

Refuses to run while a backfill still has pending rows. Then:
- PostgreSQL: each new column gets CHECK (column IS NOT NULL) NOT VALID and VALIDATE CONSTRAINT, each
  in its own short transaction (validation scans without blocking writes), then, in the migration's
  transaction, SET NOT NULL (no scan: the valid check proves it) and the checks are dropped; the
  stock_moves.lot_id foreign key is validated the same way. A run killed after validating leaves only
  valid checks behind, which the next run reuses.
- SQLite (which cannot make a column NOT NULL without rewriting its table): BEFORE INSERT and BEFORE
  UPDATE triggers trg_<table>_not_null_insert / _update refuse an empty new column.
- The compatibility triggers and erp_backfill_progress are dropped, and journal_lines and stock_moves
  are wholly append-only again (0001's triggers).
- What release 1.0 wrote after 0006 gets its values: each product's stock value again on hand x average
  cost (1.0's receipts and deliveries did not keep it), and the search keys of the partners and products
  it created (erp_core.domain.search).
"""
from alembic import op
import sqlalchemy as sa

from erp_core.backfill import backfills, remaining
from erp_core.domain import search
from erp_core.db import migration_module

revision = '0004'
down_revision = '0003'
branch_labels = None
depends_on = None

stage = "contract"

_expand = migration_module("0002")
NEW_COLUMNS = {table: _expand.columns(table) for table in _expand.NEW_COLUMNS}


def _sqlite() -> bool:
    return op.get_bind().dialect.name == "sqlite"


def _check_name(table: str, col: str) -> str:
    return f"ck_{table}_{col}_not_null"[:63]


def upgrade():
    conn = op.get_bind()
    unfilled = [f"{bf.name} ({n} rows)" for bf in backfills() if (n := remaining(conn, bf))]
    if unfilled:
        raise RuntimeError("the backfill is not complete: " + ", ".join(unfilled)
                           + "; run the backfill stage (erp_core.backfill) before the contract step")
    if _sqlite():
        _not_null_triggers()
    else:
        with op.get_context().autocommit_block():
            for table, cols in NEW_COLUMNS.items():
                for col in cols:
                    name = _check_name(table, col)
                    exists = conn.exec_driver_sql(
                        "SELECT 1 FROM pg_constraint WHERE conname = %(n)s AND conrelid = %(t)s::regclass",
                        {"n": name, "t": table}).scalar()
                    if not exists:
                        conn.exec_driver_sql(f"ALTER TABLE {table} ADD CONSTRAINT {name} "
                                             f"CHECK ({col} IS NOT NULL) NOT VALID")
                    conn.exec_driver_sql(f"ALTER TABLE {table} VALIDATE CONSTRAINT {name}")
            conn.exec_driver_sql("ALTER TABLE stock_moves VALIDATE CONSTRAINT fk_stock_moves_lot_id_lots")
        for table, cols in NEW_COLUMNS.items():
            op.execute(f"ALTER TABLE {table} " + ", ".join(f"ALTER COLUMN {c} SET NOT NULL" for c in cols))
            op.execute(f"ALTER TABLE {table} "
                       + ", ".join(f"DROP CONSTRAINT {_check_name(table, c)}" for c in cols))
    _expand.drop_compat_triggers()
    _expand.restore_append_only_triggers()
    op.drop_table('erp_backfill_progress')
    _values_of_1_0_writes(conn)


REVALUE_STOCK = ("UPDATE products SET stock_value = ROUND(avg_cost * COALESCE((SELECT SUM(l.quantity) "
                 "FROM stock_levels l WHERE l.product_id = products.id), 0), 2)")
PRODUCT_KEY = "UPDATE products SET search_text = :key WHERE id = :id"
PARTNER_KEY = "UPDATE partners SET search_text = :key WHERE id = :id"


def _values_of_1_0_writes(conn) -> None:
    conn.execute(sa.text(REVALUE_STOCK))  # lint: allow-full-update master data, one row per product
    products = [{"id": r.id, "key": search.key(r.sku, r.name)} for r in conn.execute(
        sa.text("SELECT id, sku, name FROM products WHERE search_text IS NULL"))]
    partners = [{"id": r.id, "key": search.key(r.code, r.name)} for r in conn.execute(
        sa.text("SELECT id, code, name FROM partners WHERE search_text IS NULL"))]
    if products:
        conn.execute(sa.text(PRODUCT_KEY), products)  # lint: allow-full-update master data, by id
    if partners:
        conn.execute(sa.text(PARTNER_KEY), partners)  # lint: allow-full-update master data, by id


def downgrade():
    _expand.create_progress_table()
    _expand.fill_once_append_only_triggers()
    _expand.create_compat_triggers()
    if _sqlite():
        for table in NEW_COLUMNS:
            op.execute(f"DROP TRIGGER IF EXISTS trg_{table}_not_null_insert")
            op.execute(f"DROP TRIGGER IF EXISTS trg_{table}_not_null_update")
        return
    for table, cols in NEW_COLUMNS.items():
        op.execute(f"ALTER TABLE {table} " + ", ".join(f"ALTER COLUMN {c} DROP NOT NULL" for c in cols))
    # 0003 had the foreign key not yet validated
    op.execute("ALTER TABLE stock_moves DROP CONSTRAINT fk_stock_moves_lot_id_lots")
    op.execute("ALTER TABLE stock_moves ADD CONSTRAINT fk_stock_moves_lot_id_lots "
               "FOREIGN KEY (lot_id) REFERENCES lots (id) NOT VALID")


def _not_null_triggers():
    for table, cols in NEW_COLUMNS.items():
        empty = " OR ".join(f"NEW.{c} IS NULL" for c in cols)
        message = f"NOT NULL constraint failed: {table}.{'/'.join(cols)} must all be set"
        op.execute(f"CREATE TRIGGER trg_{table}_not_null_insert BEFORE INSERT ON {table} WHEN {empty} "
                   f"BEGIN SELECT RAISE(ABORT, '{message}'); END")
        op.execute(f"CREATE TRIGGER trg_{table}_not_null_update BEFORE UPDATE OF {', '.join(cols)} ON {table} "
                   f"WHEN {empty} BEGIN SELECT RAISE(ABORT, '{message}'); END")
