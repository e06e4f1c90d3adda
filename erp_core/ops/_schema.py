"""Schema revision, the migrations this code ships with their stages, and running them."""

from __future__ import annotations

from sqlalchemy import inspect, select

from ..models import SchemaMigration
from ._bind import session_on

__all__ = ["applied_migrations"]


def applied_migrations(bind) -> list[dict]:
    """Each migration applied to the database with its recorded stage, oldest first:
    [{"revision", "stage", "applied_at"}]; [] on a database that records none."""
    if not inspect(bind).has_table(SchemaMigration.__tablename__):
        return []
    with session_on(bind) as s:
        rows = s.scalars(select(SchemaMigration).order_by(SchemaMigration.applied_at)).all()
        return [{"revision": r.revision, "stage": r.stage, "applied_at": r.applied_at} for r in rows]
