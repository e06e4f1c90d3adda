"""Alembic environment: online migrations only; every applied migration records its stage."""

from alembic import context
from sqlalchemy import inspect

from erp_core.db import STAGES, make_engine
from erp_core.models import Base, SchemaMigration
from erp_core.models.base import utcnow

config = context.config


def _record_stage(ctx, step, heads, run_args):
    script = step.up_revision if step.is_upgrade else None
    conn = ctx.connection
    if not inspect(conn).has_table("erp_schema_migrations"):
        return
    table = SchemaMigration.__table__
    if step.is_upgrade:
        stage = getattr(script.module, "stage", None)
        if stage not in STAGES:
            raise RuntimeError(f"migration {script.revision} declares no stage (one of {STAGES})")
        conn.execute(table.insert().values(revision=script.revision, stage=stage, applied_at=utcnow()))
    else:
        conn.execute(table.delete().where(table.c.revision == step.up_revision_id))
    # A caller's hook, run inside the migration's own transaction after it did its work: the control
    # plane makes a migration fail (or dies) here to prove that nothing of it survives.
    on_applied = config.attributes.get("on_applied")
    if on_applied is not None:
        on_applied(step.up_revision_id if step.is_upgrade else step.down_revision_ids)


def run_migrations_online():
    connectable = config.attributes.get("connection")
    if connectable is not None:
        _run(connectable)
        return
    engine = make_engine(config.get_main_option("sqlalchemy.url"))
    with engine.connect() as connection:
        _run(connection)
    engine.dispose()


def _run(connection):
    sqlite = connection.dialect.name == "sqlite"
    if sqlite:
        # a migration writes: take SQLite's write lock when it begins (db.py's "begin" event)
        connection.execution_options(erp_write=True)
    context.configure(
        connection=connection,
        target_metadata=Base.metadata,
        on_version_apply=_record_stage,
        render_as_batch=sqlite,
        compare_type=True,
        # Each migration, its alembic_version update and its erp_schema_migrations row commit together
        # or not at all, on both engines: SQLite's DDL is transactional too (the engine issues BEGIN
        # itself, see db.py), so a migration killed midway leaves nothing of itself behind.
        transaction_per_migration=True,
        transactional_ddl=True,
    )
    with context.begin_transaction():
        context.run_migrations()


if context.is_offline_mode():
    raise SystemExit("offline (SQL script) migrations are not supported; run against a database")
run_migrations_online()
