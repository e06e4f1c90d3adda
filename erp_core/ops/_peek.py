"""Quick reads of an SQLite database through the standard library's sqlite3: the same answers as
through a Database, without loading SQLAlchemy or the models (~250 ms of a command's start-up)."""

from __future__ import annotations

import sqlite3
from pathlib import Path
from urllib.parse import quote

from ..stored import MAINTENANCE_KEY, SchemaStatus, judge_schema, maintenance_from_value

__all__ = ["sqlite_file_revision", "sqlite_maintenance"]


def sqlite_file_revision(conn) -> str | None:
    """current_revision through a standard-library sqlite3 connection (an SQLite file read without
    SQLAlchemy, e.g. a snapshot opened immutable); None when never migrated."""
    if not conn.execute("SELECT 1 FROM sqlite_schema WHERE type = 'table' AND name = 'alembic_version'").fetchone():
        return None
    row = conn.execute("SELECT version_num FROM alembic_version").fetchone()
    return row[0] if row else None


def sqlite_maintenance(path: str | Path) -> tuple[SchemaStatus, dict | None]:
    """(the schema status, {"enabled", "reason"}) of the SQLite database at `path`, read in one
    transaction; the state is None when the database is not migrated (the switch is read on any migrated
    schema, an older or mid-upgrade one too: it is one row of system_settings since the first migration). sqlite3.Error when it cannot be
    read; a missing file is not created."""
    conn = sqlite3.connect(f"file:{quote(str(path))}?mode=rw", uri=True, timeout=30, isolation_level=None)
    try:
        conn.execute("BEGIN")
        status = judge_schema(sqlite_file_revision(conn), lambda: conn.execute(
            "SELECT revision, stage FROM erp_schema_migrations ORDER BY applied_at").fetchall())
        if status.current is None:
            return status, None
        row = conn.execute("SELECT value FROM system_settings WHERE key = ?", (MAINTENANCE_KEY,)).fetchone()
        return status, maintenance_from_value(row[0] if row else None)
    finally:
        conn.close()
