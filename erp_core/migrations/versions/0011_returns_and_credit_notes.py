"""expand: customer and supplier returns, their lines, credit and debit notes; account 6402

Revision ID: 0011
Revises: 0010 (expand steps come before release 1.1's backfill 0003)

Additive only; earlier releases ignore all of it. New tables returns, return_lines and credit_notes (a
return's quantities are positive, its state draft, posted or cancelled; a note's totals add up and what it
applies to its invoice lies between zero and its gross), and the account 6402 Purchase price differences
that a supplier return books the gap between the billed price and the goods' average cost to.
That a return takes back no more than was delivered (or received) and not yet returned is the
service's rule (erp_core.services.returns), checked under the order's row lock.
"""
from alembic import op
import sqlalchemy as sa

revision = '0011'
down_revision = '0010'
branch_labels = None
depends_on = None

stage = "expand"

PRICE_DIFFERENCE = {"code": "6402", "name": "Purchase price differences", "type": "expense"}


def _money(name, nullable=False):
    return sa.Column(name, sa.Numeric(precision=18, scale=2, asdecimal=True), nullable=nullable)


def upgrade():
    op.create_table(
        "returns",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("number", sa.String(length=32), nullable=False),
        sa.Column("kind", sa.String(length=16), nullable=False),
        sa.Column("partner_id", sa.Integer(), nullable=False),
        sa.Column("sales_order_id", sa.Integer(), nullable=True),
        sa.Column("purchase_order_id", sa.Integer(), nullable=True),
        sa.Column("warehouse_id", sa.Integer(), nullable=False),
        sa.Column("state", sa.String(length=16), nullable=False),
        sa.Column("reason", sa.String(length=500), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("created_by", sa.String(length=64), nullable=False),
        sa.Column("posted_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("stock_entry_id", sa.Integer(), nullable=True),
        sa.CheckConstraint("state IN ('draft','posted','cancelled')", name=op.f("ck_returns_state")),
        sa.CheckConstraint("(kind = 'customer' AND sales_order_id IS NOT NULL AND purchase_order_id IS NULL)"
                           " OR (kind = 'supplier' AND purchase_order_id IS NOT NULL AND sales_order_id IS NULL)",
                           name=op.f("ck_returns_source")),
        sa.ForeignKeyConstraint(["partner_id"], ["partners.id"], name=op.f("fk_returns_partner_id_partners")),
        sa.ForeignKeyConstraint(["sales_order_id"], ["sales_orders.id"],
                                name=op.f("fk_returns_sales_order_id_sales_orders")),
        sa.ForeignKeyConstraint(["purchase_order_id"], ["purchase_orders.id"],
                                name=op.f("fk_returns_purchase_order_id_purchase_orders")),
        sa.ForeignKeyConstraint(["warehouse_id"], ["warehouses.id"], name=op.f("fk_returns_warehouse_id_warehouses")),
        sa.ForeignKeyConstraint(["stock_entry_id"], ["journal_entries.id"],
                                name=op.f("fk_returns_stock_entry_id_journal_entries")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_returns")),
        sa.UniqueConstraint("number", name=op.f("uq_returns_number")),
    )
    for column in ("partner_id", "sales_order_id", "purchase_order_id", "state"):
        op.create_index(op.f(f"ix_returns_{column}"), "returns", [column])
    op.create_table(
        "return_lines",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("return_id", sa.Integer(), nullable=False),
        sa.Column("order_line_id", sa.Integer(), nullable=False),
        sa.Column("product_id", sa.Integer(), nullable=False),
        sa.Column("quantity", sa.Numeric(precision=18, scale=3, asdecimal=True), nullable=False),
        sa.Column("unit_cost", sa.Numeric(precision=18, scale=4, asdecimal=True), nullable=True),
        _money("net_amount"), _money("tax_amount"), _money("net_amount_currency"), _money("tax_amount_currency"),
        sa.CheckConstraint("quantity > 0", name=op.f("ck_return_lines_qty")),
        sa.CheckConstraint("unit_cost IS NULL OR unit_cost >= 0", name=op.f("ck_return_lines_cost")),
        sa.ForeignKeyConstraint(["return_id"], ["returns.id"], name=op.f("fk_return_lines_return_id_returns"),
                                ondelete="CASCADE"),
        sa.ForeignKeyConstraint(["product_id"], ["products.id"], name=op.f("fk_return_lines_product_id_products")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_return_lines")),
    )
    op.create_index(op.f("ix_return_lines_return_id"), "return_lines", ["return_id"])
    op.create_index(op.f("ix_return_lines_order_line_id"), "return_lines", ["order_line_id"])
    op.create_table(
        "credit_notes",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("number", sa.String(length=32), nullable=False),
        sa.Column("kind", sa.String(length=16), nullable=False),
        sa.Column("return_id", sa.Integer(), nullable=False),
        sa.Column("invoice_id", sa.Integer(), nullable=False),
        sa.Column("partner_id", sa.Integer(), nullable=False),
        sa.Column("issue_date", sa.Date(), nullable=False),
        sa.Column("currency", sa.String(length=3), nullable=False),
        sa.Column("exchange_rate", sa.Numeric(precision=18, scale=6, asdecimal=True), nullable=False),
        _money("net_total"), _money("tax_total"), _money("gross_total"),
        _money("net_total_currency"), _money("tax_total_currency"), _money("gross_total_currency"),
        _money("applied"), _money("applied_currency"),
        sa.Column("journal_entry_id", sa.Integer(), nullable=True),
        sa.CheckConstraint("kind IN ('credit','debit')", name=op.f("ck_credit_notes_kind")),
        sa.CheckConstraint("net_total >= 0 AND tax_total >= 0 AND gross_total = net_total + tax_total",
                           name=op.f("ck_credit_notes_totals")),
        sa.CheckConstraint("applied >= 0 AND applied <= gross_total", name=op.f("ck_credit_notes_applied")),
        sa.CheckConstraint("applied_currency >= 0 AND applied_currency <= gross_total_currency",
                           name=op.f("ck_credit_notes_applied_currency")),
        sa.ForeignKeyConstraint(["return_id"], ["returns.id"], name=op.f("fk_credit_notes_return_id_returns")),
        sa.ForeignKeyConstraint(["invoice_id"], ["invoices.id"], name=op.f("fk_credit_notes_invoice_id_invoices")),
        sa.ForeignKeyConstraint(["partner_id"], ["partners.id"], name=op.f("fk_credit_notes_partner_id_partners")),
        sa.ForeignKeyConstraint(["journal_entry_id"], ["journal_entries.id"],
                                name=op.f("fk_credit_notes_journal_entry_id_journal_entries")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_credit_notes")),
        sa.UniqueConstraint("number", name=op.f("uq_credit_notes_number")),
        sa.UniqueConstraint("return_id", name=op.f("uq_credit_notes_return_id")),
    )
    for column in ("invoice_id", "partner_id", "issue_date"):
        op.create_index(op.f(f"ix_credit_notes_{column}"), "credit_notes", [column])
    accounts = sa.table("accounts", sa.column("code"), sa.column("name"), sa.column("type"))
    if op.get_bind().execute(sa.select(accounts.c.code).where(accounts.c.code == PRICE_DIFFERENCE["code"])).first() is None:
        op.bulk_insert(accounts, [PRICE_DIFFERENCE])


def downgrade():
    # journal lines on 6402 exist only once returns were posted, and those refuse the downgrade anyway
    op.execute(sa.text("DELETE FROM accounts WHERE code = :c").bindparams(c=PRICE_DIFFERENCE["code"]))  # lint: allow-full-update small-table
    for column in ("invoice_id", "partner_id", "issue_date"):
        op.drop_index(op.f(f"ix_credit_notes_{column}"), table_name="credit_notes")
    op.drop_table("credit_notes")
    op.drop_index(op.f("ix_return_lines_order_line_id"), table_name="return_lines")
    op.drop_index(op.f("ix_return_lines_return_id"), table_name="return_lines")
    op.drop_table("return_lines")
    for column in ("partner_id", "sales_order_id", "purchase_order_id", "state"):
        op.drop_index(op.f(f"ix_returns_{column}"), table_name="returns")
    op.drop_table("returns")
