"""expand for release 1.1: document currencies, lots, backfill checkpoints, 1.0 compatibility triggers

Revision ID: 0002
Revises: 0001

Additive only; release 1.0 keeps working on the result:
- new nullable columns: currency, exchange_rate and amounts in document currency on orders, order
  lines, invoices and payments; currency and signed amount_currency on journal lines; lot_id on stock
  moves (indexed; a foreign key on PostgreSQL, added NOT VALID and validated by the contract step; on
  SQLite a trigger checks it, since SQLite cannot drop a column that is in a foreign key);
- the lots table and erp_backfill_progress (checkpoints of erp_core.backfill);
- compatibility triggers trg_<table>_compat_1_0: a row inserted without the new columns (as release
  1.0 inserts) gets them filled: company currency, rate 1, document amounts = company amounts, the
  product's opening lot (created when missing);
- the append-only triggers of journal_lines and stock_moves let the new columns be filled once, while
  they are empty, and refuse every other change as before.
"""
from alembic import op
import sqlalchemy as sa

from erp_core.domain.lots import OPENING_PREFIX
from erp_core.domain.money import COMPANY_CURRENCY

revision = '0002'
down_revision = '0001'
branch_labels = None
depends_on = None

stage = "expand"

CURRENCY = sa.String(length=3)
RATE = sa.Numeric(precision=18, scale=6)
MONEY = sa.Numeric(precision=18, scale=2)

# table -> [(column, type, how a 1.0 row fills it)]; fills are SQL over the row's columns, with {r}
# standing for the row ("" inside an UPDATE of the table, "NEW." in a PostgreSQL row trigger).
_HEADER = [("currency", CURRENCY, f"'{COMPANY_CURRENCY}'"), ("exchange_rate", RATE, "1"),
           ("net_total_currency", MONEY, "{r}net_total"), ("tax_total_currency", MONEY, "{r}tax_total"),
           ("gross_total_currency", MONEY, "{r}gross_total")]
_LINE = [("unit_price_currency", MONEY, "{r}unit_price"), ("net_amount_currency", MONEY, "{r}net_amount"),
         ("tax_amount_currency", MONEY, "{r}tax_amount")]
NEW_COLUMNS = {
    "sales_orders": _HEADER,
    "purchase_orders": _HEADER,
    "invoices": _HEADER,
    "sales_order_lines": _LINE,
    "purchase_order_lines": _LINE,
    "payments": [("currency", CURRENCY, f"'{COMPANY_CURRENCY}'"), ("exchange_rate", RATE, "1"),
                 ("amount_currency", MONEY, "{r}amount")],
    "journal_lines": [("currency", CURRENCY, f"'{COMPANY_CURRENCY}'"),
                      ("amount_currency", MONEY, "{r}debit - {r}credit")],
    "stock_moves": [("lot_id", sa.Integer(), None)],  # the product's opening lot, see OPENING_LOT
}

# 0001's columns of the append-only tables whose new columns may be filled once.
APPEND_ONLY_OLD_COLUMNS = {
    "journal_lines": ("id", "entry_id", "account_code", "partner_id", "debit", "credit"),
    "stock_moves": ("id", "product_id", "from_warehouse_id", "to_warehouse_id", "quantity", "unit_cost", "kind",
                    "state", "reference", "created_at"),
}

OPENING_NUMBER = "'" + OPENING_PREFIX + "' || {r}product_id"
OPENING_LOT = "(SELECT lots.id FROM lots WHERE lots.number = " + OPENING_NUMBER + ")"


def columns(table: str) -> list[str]:
    return [name for name, _type, _fill in NEW_COLUMNS[table]]


def pending(table: str) -> str:
    """SQL: this row still has an empty new column."""
    return " OR ".join(f"{c} IS NULL" for c in columns(table))


def set_clause(table: str) -> str:
    """SQL SET body that fills the empty new columns of a 1.0 row (and leaves filled ones alone)."""
    if table == "stock_moves":
        return "lot_id = COALESCE(lot_id, " + OPENING_LOT.format(r="stock_moves.") + ")"
    return ", ".join(f"{c} = COALESCE({c}, {fill.format(r='')})" for c, _t, fill in NEW_COLUMNS[table])


def create_opening_lots_of_range() -> str:
    """SQL: the opening lot of each product moved in the key range (:lo, :hi], when it has none yet; one
    pass over the range. Ranges are filled in key order, so a product's lot is made in the range of its
    first move, and dated by it."""
    number = OPENING_NUMBER.format(r="m.")
    return (f"INSERT INTO lots (product_id, number, received_at, reference) "
            f"SELECT m.product_id, {number}, MIN(m.created_at), 'opening balance' FROM stock_moves m "
            f"WHERE m.id > :lo AND m.id <= :hi AND m.lot_id IS NULL GROUP BY m.product_id "
            f"HAVING NOT EXISTS (SELECT 1 FROM lots WHERE lots.number = {number}) "
            f"ON CONFLICT (number) DO NOTHING")


def create_opening_lots(row: str, where: str) -> str:
    """SQL: the opening lot of each product of the `row` rows selected by `where`, when it has none yet
    (dated by the product's first move)."""
    number = OPENING_NUMBER.format(r=row)
    return (f"INSERT INTO lots (product_id, number, received_at, reference) "
            f"SELECT DISTINCT {row}product_id, {number}, "
            f"(SELECT MIN(x.created_at) FROM stock_moves x WHERE x.product_id = {row}product_id), "
            f"'opening balance' {where} "
            f"AND NOT EXISTS (SELECT 1 FROM lots WHERE lots.number = {number}) "
            f"ON CONFLICT (number) DO NOTHING")


def _sqlite() -> bool:
    return op.get_bind().dialect.name == "sqlite"


def upgrade():
    op.create_table('lots',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('product_id', sa.Integer(), nullable=False),
    sa.Column('number', sa.String(length=64), nullable=False),
    sa.Column('received_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('reference', sa.String(length=64), nullable=False),
    sa.ForeignKeyConstraint(['product_id'], ['products.id'], name=op.f('fk_lots_product_id_products')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_lots')),
    sa.UniqueConstraint('number', name=op.f('uq_lots_number'))
    )
    op.create_index(op.f('ix_lots_product_id'), 'lots', ['product_id'], unique=False)
    create_progress_table()
    for table, cols in NEW_COLUMNS.items():
        for name, type_, _fill in cols:
            op.add_column(table, sa.Column(name, type_, nullable=True))
    op.create_index(op.f('ix_stock_moves_lot_id'), 'stock_moves', ['lot_id'], unique=False)
    if _sqlite():
        for event, when in (("INSERT", "INSERT"), ("UPDATE", "UPDATE OF lot_id")):
            op.execute(f"CREATE TRIGGER trg_stock_moves_lot_fk_{event.lower()} BEFORE {when} ON stock_moves "
                       "WHEN NEW.lot_id IS NOT NULL AND NOT EXISTS (SELECT 1 FROM lots WHERE lots.id = NEW.lot_id) "
                       "BEGIN SELECT RAISE(ABORT, 'FOREIGN KEY constraint failed: stock_moves.lot_id has no lots row'); "
                       "END")
    else:
        op.execute("ALTER TABLE stock_moves ADD CONSTRAINT fk_stock_moves_lot_id_lots "
                   "FOREIGN KEY (lot_id) REFERENCES lots (id) NOT VALID")
    fill_once_append_only_triggers()
    create_compat_triggers()


def downgrade():
    drop_compat_triggers()
    restore_append_only_triggers()
    if _sqlite():
        op.execute("DROP TRIGGER IF EXISTS trg_stock_moves_lot_fk_insert")
        op.execute("DROP TRIGGER IF EXISTS trg_stock_moves_lot_fk_update")
    else:
        op.execute("ALTER TABLE stock_moves DROP CONSTRAINT IF EXISTS fk_stock_moves_lot_id_lots")
    op.drop_index(op.f('ix_stock_moves_lot_id'), table_name='stock_moves')
    for table, cols in reversed(list(NEW_COLUMNS.items())):
        for name, _type, _fill in reversed(cols):
            op.execute(f"ALTER TABLE {table} DROP COLUMN {name}")
    op.drop_table('erp_backfill_progress')
    op.drop_index(op.f('ix_lots_product_id'), table_name='lots')
    op.drop_table('lots')


def create_progress_table():
    op.create_table('erp_backfill_progress',
    sa.Column('name', sa.String(length=128), nullable=False),
    sa.Column('last_key', sa.BigInteger(), nullable=False),
    sa.Column('rows_done', sa.BigInteger(), nullable=False),
    sa.Column('updated_at', sa.DateTime(timezone=True), nullable=False),
    sa.PrimaryKeyConstraint('name', name=op.f('pk_erp_backfill_progress'))
    )


# ---- compatibility with release 1.0 ------------------------------------------------------------

def create_compat_triggers():
    """Rows inserted without the new columns (by release 1.0) get them filled."""
    for table in NEW_COLUMNS:
        if _sqlite():
            body = f"UPDATE {table} SET {set_clause(table)} WHERE id = NEW.id;"
            if table == "stock_moves":
                body = create_opening_lots("NEW.", "WHERE NEW.lot_id IS NULL") + "; " + body
            when = " OR ".join(f"NEW.{c} IS NULL" for c in columns(table))
            op.execute(f"CREATE TRIGGER trg_{table}_compat_1_0 AFTER INSERT ON {table} WHEN {when} "
                       f"BEGIN {body} END")
            continue
        if table == "stock_moves":
            body = ("IF NEW.lot_id IS NULL THEN "
                    f"IF NOT EXISTS (SELECT 1 FROM lots WHERE lots.number = {OPENING_NUMBER.format(r='NEW.')}) THEN "
                    "INSERT INTO lots (product_id, number, received_at, reference) VALUES (NEW.product_id, "
                    f"{OPENING_NUMBER.format(r='NEW.')}, COALESCE((SELECT MIN(x.created_at) FROM stock_moves x "
                    "WHERE x.product_id = NEW.product_id), NEW.created_at), 'opening balance') "
                    "ON CONFLICT (number) DO NOTHING; END IF; "
                    f"NEW.lot_id := {OPENING_LOT.format(r='NEW.')}; END IF;")
        else:
            body = " ".join(f"NEW.{c} := COALESCE(NEW.{c}, {fill.format(r='NEW.')});"
                            for c, _t, fill in NEW_COLUMNS[table])
        op.execute(f"CREATE FUNCTION erp_compat_1_0_{table}() RETURNS trigger AS $$ BEGIN {body} RETURN NEW; END "
                   "$$ LANGUAGE plpgsql")
        op.execute(f"CREATE TRIGGER trg_{table}_compat_1_0 BEFORE INSERT ON {table} "
                   f"FOR EACH ROW EXECUTE FUNCTION erp_compat_1_0_{table}()")


def drop_compat_triggers():
    for table in NEW_COLUMNS:
        if _sqlite():
            op.execute(f"DROP TRIGGER IF EXISTS trg_{table}_compat_1_0")
        else:
            op.execute(f"DROP TRIGGER IF EXISTS trg_{table}_compat_1_0 ON {table}")
            op.execute(f"DROP FUNCTION IF EXISTS erp_compat_1_0_{table}()")


# ---- append-only tables: the new columns may be filled once ------------------------------------

def fill_once_append_only_triggers():
    """Replace 0001's refuse-every-update trigger of journal_lines and stock_moves by one that refuses
    an update of any 1.0 column, and one that lets a new column change only from NULL."""
    if _sqlite():
        for table, old in APPEND_ONLY_OLD_COLUMNS.items():
            new = columns(table)
            op.execute(f"DROP TRIGGER trg_{table}_no_update")
            op.execute(f"CREATE TRIGGER trg_{table}_no_update BEFORE UPDATE OF {', '.join(old)} ON {table} "
                       f"BEGIN SELECT RAISE(ABORT, '{table} is append-only: correct by reversal'); END")
            changed = " OR ".join(f"(OLD.{c} IS NOT NULL AND NEW.{c} IS NOT OLD.{c})" for c in new)
            op.execute(f"CREATE TRIGGER trg_{table}_fill_once BEFORE UPDATE OF {', '.join(new)} ON {table} "
                       f"WHEN {changed} BEGIN SELECT RAISE(ABORT, '{table} is append-only: a column added by "
                       "release 1.1 may only be filled while it is empty'); END")
        return
    op.execute(
        "CREATE FUNCTION erp_refuse_change_but_fill() RETURNS trigger AS $$ "
        "DECLARE old_row jsonb; new_row jsonb; col text; BEGIN "
        "IF TG_OP = 'DELETE' THEN RAISE EXCEPTION '% is append-only: correct by reversal', TG_TABLE_NAME; END IF; "
        "old_row := to_jsonb(OLD); new_row := to_jsonb(NEW); "
        "FOREACH col IN ARRAY TG_ARGV LOOP "
        "IF old_row -> col <> 'null'::jsonb AND (old_row -> col) IS DISTINCT FROM (new_row -> col) THEN "
        "RAISE EXCEPTION '% is append-only: a column added by release 1.1 may only be filled while it is "
        "empty (%)', TG_TABLE_NAME, col; END IF; "
        "old_row := old_row - col; new_row := new_row - col; END LOOP; "
        "IF old_row IS DISTINCT FROM new_row THEN "
        "RAISE EXCEPTION '% is append-only: correct by reversal', TG_TABLE_NAME; END IF; "
        "RETURN NEW; END $$ LANGUAGE plpgsql")
    for table in APPEND_ONLY_OLD_COLUMNS:
        args = ", ".join(f"'{c}'" for c in columns(table))
        op.execute(f"DROP TRIGGER trg_{table}_append_only ON {table}")
        op.execute(f"CREATE TRIGGER trg_{table}_append_only BEFORE UPDATE OR DELETE ON {table} "
                   f"FOR EACH ROW EXECUTE FUNCTION erp_refuse_change_but_fill({args})")


def restore_append_only_triggers():
    """0001's triggers of journal_lines and stock_moves, exactly."""
    for table in APPEND_ONLY_OLD_COLUMNS:
        if _sqlite():
            op.execute(f"DROP TRIGGER IF EXISTS trg_{table}_fill_once")
            op.execute(f"DROP TRIGGER IF EXISTS trg_{table}_no_update")
            op.execute(f"CREATE TRIGGER trg_{table}_no_update BEFORE UPDATE ON {table} "
                       f"BEGIN SELECT RAISE(ABORT, '{table} is append-only: correct by reversal'); END")
        else:
            op.execute(f"DROP TRIGGER IF EXISTS trg_{table}_append_only ON {table}")
            op.execute(f"CREATE TRIGGER trg_{table}_append_only BEFORE UPDATE OR DELETE ON {table} "
                       "FOR EACH ROW EXECUTE FUNCTION erp_refuse_change()")
    if not _sqlite():
        op.execute("DROP FUNCTION IF EXISTS erp_refuse_change_but_fill()")
