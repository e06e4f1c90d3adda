"""expand: ledger period balances (account x month), kept by a trigger on journal line inserts; an
index of invoices by kind and state (aging reads the open ones)

Revision ID: 0005
Revises: 0002

Additive only; the previous release keeps working on the result (the trigger keeps the balances of
the lines it posts). A new table ledger_period_balances (account_code, period 'YYYY-MM', debit_cents,
credit_cents) and a trigger trg_journal_lines_period that adds each inserted line to its account's
month, in the inserting transaction. On a database without journal lines the balances are complete
at once (system setting ledger_period_balances = complete); on one with history they are built by
erp_core.services.periods.rebuild (`erpctl erp repair`), and until then the reports sum the lines.
"""
from alembic import op
import sqlalchemy as sa

revision = '0005'
down_revision = '0002'
branch_labels = None
depends_on = None

stage = "expand"

PERIOD_BALANCES_KEY = "ledger_period_balances"

_SQLITE_TRIGGER = """
CREATE TRIGGER trg_journal_lines_period AFTER INSERT ON journal_lines BEGIN
    INSERT INTO ledger_period_balances (account_code, period, debit_cents, credit_cents)
    SELECT NEW.account_code, substr(e.date, 1, 7), CAST(ROUND(NEW.debit * 100) AS INTEGER),
           CAST(ROUND(NEW.credit * 100) AS INTEGER)
    FROM journal_entries e WHERE e.id = NEW.entry_id
    ON CONFLICT (account_code, period) DO UPDATE SET debit_cents = debit_cents + excluded.debit_cents,
                                                     credit_cents = credit_cents + excluded.credit_cents;
END"""

_PG_FUNCTION = """
CREATE OR REPLACE FUNCTION erp_journal_lines_period() RETURNS trigger AS $$
BEGIN
    INSERT INTO ledger_period_balances (account_code, period, debit_cents, credit_cents)
    SELECT NEW.account_code, to_char(e.date, 'YYYY-MM'), ROUND(NEW.debit * 100)::bigint,
           ROUND(NEW.credit * 100)::bigint
    FROM journal_entries e WHERE e.id = NEW.entry_id
    ON CONFLICT (account_code, period) DO UPDATE
        SET debit_cents = ledger_period_balances.debit_cents + EXCLUDED.debit_cents,
            credit_cents = ledger_period_balances.credit_cents + EXCLUDED.credit_cents;
    RETURN NULL;
END $$ LANGUAGE plpgsql"""


def upgrade():
    op.create_table(
        "ledger_period_balances",
        sa.Column("account_code", sa.String(length=16), nullable=False),
        sa.Column("period", sa.String(length=7), nullable=False),
        sa.Column("debit_cents", sa.BigInteger(), nullable=False),
        sa.Column("credit_cents", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("account_code", "period", name=op.f("pk_ledger_period_balances")),
    )
    op.create_index("ix_invoices_kind_state", "invoices", ["kind", "state"])
    if op.get_bind().dialect.name == "sqlite":
        op.execute(_SQLITE_TRIGGER)
    else:
        op.execute(_PG_FUNCTION)
        op.execute("CREATE TRIGGER trg_journal_lines_period AFTER INSERT ON journal_lines "
                   "FOR EACH ROW EXECUTE FUNCTION erp_journal_lines_period()")
    if op.get_bind().execute(sa.text("SELECT id FROM journal_lines LIMIT 1")).first() is None:
        op.execute(f"INSERT INTO system_settings (key, value, updated_at) "
                   f"VALUES ('{PERIOD_BALANCES_KEY}', 'complete', CURRENT_TIMESTAMP)")


def downgrade():
    op.execute("DROP TRIGGER IF EXISTS trg_journal_lines_period" +
               ("" if op.get_bind().dialect.name == "sqlite" else " ON journal_lines"))
    if op.get_bind().dialect.name != "sqlite":
        op.execute("DROP FUNCTION IF EXISTS erp_journal_lines_period()")
    op.execute(f"DELETE FROM system_settings WHERE key = '{PERIOD_BALANCES_KEY}'")  # lint: allow-full-update small-table
    op.drop_table("ledger_period_balances")
    op.drop_index("ix_invoices_kind_state", table_name="invoices")
