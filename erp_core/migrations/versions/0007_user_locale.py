"""expand: each user's language for the web pages (users.locale)

Revision ID: 0007
Revises: 0006 (expand steps come before release 1.1's backfill 0003)

Additive only: a nullable column; empty means "the browser's language". Earlier releases ignore it.
"""
from alembic import op
import sqlalchemy as sa

revision = '0007'
down_revision = '0006'
branch_labels = None
depends_on = None

stage = "expand"


def upgrade():
    op.add_column("users", sa.Column("locale", sa.String(length=16), nullable=True))


def downgrade():
    # a plain DROP COLUMN (SQLite >= 3.35 as PostgreSQL): no table rebuild, the schema is 0006's exactly
    op.execute("ALTER TABLE users DROP COLUMN locale")
