"""expand for release 1.1 (third step): each product's stock value, folded search keys, service users, codes unique in any case

Revision ID: 0006
Revises: 0005 (the period balances)

It comes after 0002 and 0005 and before the backfill 0003 in the chain (stages in order: expand, expand,
backfill, contract), so one staged upgrade from release 1.0 runs it with 0002.

- products.stock_value (money, default 0): what is on hand of the product is worth, the share of the
  Inventory account the services keep with every stock change (erp_core.services.stock); filled with
  on hand x average cost, rounded to the cent;
- products.search_text and partners.search_text: SKU or code and name folded (erp_core.domain.search:
  accents dropped, case folded) so a search finds the same rows on SQLite and PostgreSQL; filled here;
- users.service (default false): the users of operators' tools, which the API does not change;
- unique indexes on lower(sku), lower(partners.code), lower(warehouses.code): 'p-1' can no longer
  stand beside 'P-1'. Refused, changing nothing, while such duplicates exist (the error lists them).

Master data only (one row per product, partner or warehouse): the fills run in this migration. Release
1.0 keeps working on the result (every new column has a default); what it writes meanwhile is not
folded or valued, so run the upgrade's stages back to back.
"""
from alembic import op
import sqlalchemy as sa

from erp_core.domain import search

revision = '0006'
down_revision = '0005'
branch_labels = None
depends_on = None

stage = "expand"

# table -> the code column that must be unique in any case
CODES = {"products": "sku", "partners": "code", "warehouses": "code"}
FILL_STOCK_VALUE = ("UPDATE products SET stock_value = ROUND(avg_cost * COALESCE((SELECT SUM(l.quantity) "
                    "FROM stock_levels l WHERE l.product_id = products.id), 0), 2)")
FILL_PRODUCT_KEY = "UPDATE products SET search_text = :key WHERE id = :id"
FILL_PARTNER_KEY = "UPDATE partners SET search_text = :key WHERE id = :id"


def _refuse_duplicate_codes(conn) -> None:
    found = []
    for table, col in CODES.items():
        rows = conn.execute(sa.text(f"SELECT lower({col}) AS code, COUNT(*) AS n FROM {table} "
                                    f"GROUP BY lower({col}) HAVING COUNT(*) > 1 ORDER BY 1")).all()
        found += [f"{table}.{col} '{r.code}' ({r.n} rows)" for r in rows]
    if found:
        raise RuntimeError("codes that differ only in case must become unique before this migration: "
                           + ", ".join(found[:20]) + (" ..." if len(found) > 20 else "")
                           + "; rename all but one of each (PATCH the product, partner or warehouse) and "
                             "run the migration again; nothing was changed")


def upgrade():
    conn = op.get_bind()
    _refuse_duplicate_codes(conn)
    op.add_column("products", sa.Column("stock_value", sa.Numeric(precision=18, scale=2), nullable=False,
                                        server_default="0"))
    op.add_column("products", sa.Column("search_text", sa.Text(), nullable=True))
    op.add_column("partners", sa.Column("search_text", sa.Text(), nullable=True))
    op.add_column("users", sa.Column("service", sa.Boolean(), nullable=False, server_default=sa.false()))
    conn.execute(sa.text(FILL_STOCK_VALUE))  # lint: allow-full-update master data, one row per product
    products = [{"id": r.id, "key": search.key(r.sku, r.name)}
                for r in conn.execute(sa.text("SELECT id, sku, name FROM products"))]
    partners = [{"id": r.id, "key": search.key(r.code, r.name)}
                for r in conn.execute(sa.text("SELECT id, code, name FROM partners"))]
    if products:
        conn.execute(sa.text(FILL_PRODUCT_KEY), products)  # lint: allow-full-update master data, by id
    if partners:
        conn.execute(sa.text(FILL_PARTNER_KEY), partners)  # lint: allow-full-update master data, by id
    for table, col in CODES.items():
        op.create_index(f"uq_{table}_{col}_any_case", table, [sa.text(f"lower({col})")], unique=True)


def downgrade():
    for table, col in CODES.items():
        op.drop_index(f"uq_{table}_{col}_any_case", table_name=table)
    op.drop_column("users", "service")
    op.drop_column("partners", "search_text")
    op.drop_column("products", "search_text")
    op.drop_column("products", "stock_value")
