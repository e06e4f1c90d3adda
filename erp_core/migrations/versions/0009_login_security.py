"""expand: login security — forced password change, session details, login throttling

Revision ID: 0009
Revises: 0008 (expand steps come before release 1.1's backfill 0003)

Additive only, every new column with a server default (or nullable), so an earlier release keeps
inserting users and tokens:
- users.must_change_password (default false): set by an administrator's reset; the user must choose
  a new password before anything else;
- api_tokens.last_seen_at, remote_addr, user_agent: what "my sessions" lists;
- login_throttle: failed-login counters per client address, per account and per both
  (erp_core/services/throttle.py).
"""
from alembic import op
import sqlalchemy as sa

revision = '0009'
down_revision = '0008'
branch_labels = None
depends_on = None

stage = "expand"


def upgrade():
    op.add_column("users", sa.Column("must_change_password", sa.Boolean(), nullable=False,
                                     server_default=sa.false()))
    op.add_column("api_tokens", sa.Column("last_seen_at", sa.DateTime(timezone=True), nullable=True))
    op.add_column("api_tokens", sa.Column("remote_addr", sa.String(length=64), nullable=False, server_default=""))
    op.add_column("api_tokens", sa.Column("user_agent", sa.String(length=200), nullable=False, server_default=""))
    op.create_table(
        "login_throttle",
        sa.Column("key", sa.String(length=160), nullable=False),
        sa.Column("failures", sa.Integer(), nullable=False),
        sa.Column("blocked_until", sa.DateTime(timezone=True), nullable=True),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("key", name="pk_login_throttle"),
    )
    op.create_index("ix_login_throttle_updated_at", "login_throttle", ["updated_at"])


def downgrade():
    op.drop_index("ix_login_throttle_updated_at", table_name="login_throttle")
    op.drop_table("login_throttle")
    # plain DROP COLUMNs (SQLite >= 3.35 as PostgreSQL): no table rebuild, the schema is 0007's exactly
    for table, column in (("api_tokens", "user_agent"), ("api_tokens", "remote_addr"),
                          ("api_tokens", "last_seen_at"), ("users", "must_change_password")):
        op.execute(f"ALTER TABLE {table} DROP COLUMN {column}")
