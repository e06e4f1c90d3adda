"""expand: multi-factor login (TOTP secrets, recovery codes, login challenges)

Revision ID: 0008
Revises: 0007 (expand steps come before release 1.1's backfill 0003)

Additive only: three new tables, nothing in an existing one changes. Earlier releases ignore them (a
user they log in has no second factor to give); the downgrade drops them.

- user_mfa: one row per user with a TOTP secret (encrypted with the field key); confirmed_at is empty
  while the enrolment waits for its first code; last_step is the time step of the last code accepted
  (a code is never accepted twice);
- mfa_recovery_codes: ten one-time codes per enrolled user, argon2id hashes, used_at once used;
- mfa_challenges: what a login holds between the password and the code (hashed, short-lived, once).
"""
from alembic import op
import sqlalchemy as sa

revision = '0008'
down_revision = '0007'
branch_labels = None
depends_on = None

stage = "expand"

WHEN = sa.DateTime(timezone=True)


def upgrade():
    op.create_table(
        "user_mfa",
        sa.Column("user_id", sa.Integer(), sa.ForeignKey("users.id", name="fk_user_mfa_user_id_users"),
                  nullable=False),
        sa.Column("secret", sa.String(length=512), nullable=False),
        sa.Column("created_at", WHEN, nullable=False),
        sa.Column("confirmed_at", WHEN, nullable=True),
        sa.Column("last_step", sa.BigInteger(), nullable=True),
        sa.PrimaryKeyConstraint("user_id", name="pk_user_mfa"),
    )
    op.create_table(
        "mfa_recovery_codes",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("user_id", sa.Integer(), sa.ForeignKey("users.id", name="fk_mfa_recovery_codes_user_id_users"),
                  nullable=False),
        sa.Column("code_hash", sa.String(length=255), nullable=False),
        sa.Column("created_at", WHEN, nullable=False),
        sa.Column("used_at", WHEN, nullable=True),
        sa.PrimaryKeyConstraint("id", name="pk_mfa_recovery_codes"),
    )
    op.create_index("ix_mfa_recovery_codes_user_id", "mfa_recovery_codes", ["user_id"])
    op.create_table(
        "mfa_challenges",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("token_hash", sa.String(length=64), nullable=False),
        sa.Column("user_id", sa.Integer(), sa.ForeignKey("users.id", name="fk_mfa_challenges_user_id_users"),
                  nullable=False),
        sa.Column("purpose", sa.String(length=8), nullable=False),
        sa.Column("created_at", WHEN, nullable=False),
        sa.Column("expires_at", WHEN, nullable=False),
        sa.Column("used", sa.Boolean(), nullable=False, server_default=sa.false()),
        sa.PrimaryKeyConstraint("id", name="pk_mfa_challenges"),
        sa.UniqueConstraint("token_hash", name="uq_mfa_challenges_token_hash"),
        sa.CheckConstraint("purpose IN ('code','enrol')", name="ck_mfa_challenges_purpose"),
    )


def downgrade():
    op.drop_table("mfa_challenges")
    op.drop_index("ix_mfa_recovery_codes_user_id", table_name="mfa_recovery_codes")
    op.drop_table("mfa_recovery_codes")
    op.drop_table("user_mfa")
