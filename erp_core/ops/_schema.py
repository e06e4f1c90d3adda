"""Schema revision, the migrations this code ships with their stages, and running them."""

from __future__ import annotations

from sqlalchemy import inspect, select

from ..models import SchemaMigration
from ._bind import session_on

__all__ = ["applied_migrations", "sqlite_file_revision"]


def sqlite_file_revision(conn) -> str | None:
    """current_revision through a standard-library sqlite3 connection (an SQLite file read without
    SQLAlchemy, e.g. a snapshot opened immutable); None when never migrated."""
    if not conn.execute("SELECT 1 FROM sqlite_schema WHERE type = 'table' AND name = 'alembic_version'").fetchone():
        return None
    row = conn.execute("SELECT version_num FROM alembic_version").fetchone()
    return row[0] if row else None


def applied_migrations(bind) -> list[dict]:
    """Each migration applied to the database with its recorded stage, oldest first:
    [{"revision", "stage", "applied_at"}]; [] on a database that records none."""
    if not inspect(bind).has_table(SchemaMigration.__tablename__):
        return []
    with session_on(bind) as s:
        rows = s.scalars(select(SchemaMigration).order_by(SchemaMigration.applied_at)).all()
        return [{"revision": r.revision, "stage": r.stage, "applied_at": r.applied_at} for r in rows]
