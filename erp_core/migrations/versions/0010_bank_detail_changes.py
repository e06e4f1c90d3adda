"""expand: bank-detail changes waiting for a second finance user (four-eyes); the field key's KDF salt

Revision ID: 0010
Revises: 0009 (expand steps come before release 1.1's backfill 0003)

Additive only; earlier releases ignore both. A new table bank_detail_changes (a partner's requested bank
account, encrypted and bound to its row, with who asked, who decided and the state), and the system setting
field_key_kdf: a random salt and the scrypt parameters a passphrase field key is stretched with for the
values release 1.1 seals bound to their row (erp_core.crypto's v2 format; written only after the contract
step 0004, when release 1.0 no longer runs on the database).
"""
import datetime as dt
import json

from alembic import op
import sqlalchemy as sa

from erp_core import crypto

revision = '0010'
down_revision = '0009'
branch_labels = None
depends_on = None

stage = "expand"

KDF_KEY = "field_key_kdf"


def upgrade():
    op.create_table(
        "bank_detail_changes",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("partner_id", sa.Integer(), nullable=False),
        sa.Column("old_value", sa.String(length=512), nullable=True),
        sa.Column("new_value", sa.String(length=512), nullable=True),
        sa.Column("state", sa.String(length=16), nullable=False, server_default="pending"),
        sa.Column("note", sa.String(length=500), nullable=True),
        sa.Column("requested_by", sa.String(length=64), nullable=False),
        sa.Column("requested_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("decided_by", sa.String(length=64), nullable=True),
        sa.Column("decided_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("reason", sa.String(length=500), nullable=True),
        sa.CheckConstraint("state IN ('pending', 'approved', 'rejected')", name=op.f("ck_bank_detail_changes_state")),
        sa.CheckConstraint("decided_by IS NULL OR decided_by <> requested_by",
                           name=op.f("ck_bank_detail_changes_four_eyes")),
        sa.CheckConstraint("(state = 'pending') = (decided_by IS NULL)", name=op.f("ck_bank_detail_changes_decided")),
        sa.ForeignKeyConstraint(["partner_id"], ["partners.id"],
                                name=op.f("fk_bank_detail_changes_partner_id_partners")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_bank_detail_changes")),
    )
    op.create_index(op.f("ix_bank_detail_changes_partner_id"), "bank_detail_changes", ["partner_id"])
    settings = sa.table("system_settings", sa.column("key"), sa.column("value"), sa.column("updated_at"))
    bind = op.get_bind()
    if bind.execute(sa.select(settings.c.key).where(settings.c.key == KDF_KEY)).first() is None:
        op.execute(settings.insert().values(key=KDF_KEY, value=json.dumps(crypto.new_kdf()),
                                            updated_at=dt.datetime.now(dt.timezone.utc)))


def downgrade():
    # only before the contract step (0004), when no value is sealed with the KDF yet: 1.0's exact state
    op.execute(sa.text("DELETE FROM system_settings WHERE key = :k").bindparams(k=KDF_KEY))  # lint: allow-full-update small-table
    op.drop_index(op.f("ix_bank_detail_changes_partner_id"), table_name="bank_detail_changes")
    op.drop_table("bank_detail_changes")
