"""The database engine's own integrity check, in full (the db_integrity probe runs the quick one):

    SQLite       PRAGMA integrity_check on a read-only connection: every page, every index against its
                 table, every constraint the file format knows
    PostgreSQL   every table of the schema read in full (a damaged heap page fails the read), the
                 database's data-checksum failures (pg_stat_database), and amcheck's bt_index_check on
                 every B-tree index where the amcheck extension is installed

Nothing is written. A database that cannot be opened at all is DatabaseUnavailable (exit 12); one that
opens and fails a check is IntegrityFailed (exit 93), with each problem named.
"""

from __future__ import annotations

import sqlite3
import time
from pathlib import Path

from sqlalchemy import create_engine, text
from sqlalchemy.exc import DBAPIError
from sqlalchemy.pool import NullPool

from .config import Target
from .errors import DatabaseUnavailable, IntegrityFailed

MAX_PROBLEMS = 50


def check(target: Target) -> dict:
    """{"backend", "ok", "problems", "checked", "seconds"}; raises IntegrityFailed when not ok."""
    t0 = time.perf_counter()
    path = target.sqlite_path
    if path is not None:
        result = _sqlite(path)
    else:
        result = _postgresql(target.database_url)
    result["seconds"] = round(time.perf_counter() - t0, 3)
    if result["problems"]:
        raise IntegrityFailed(f"the database failed its integrity check: {result['problems'][0]}"
                              + (f" (and {len(result['problems']) - 1} more: erpctl --json erp integrity lists them)"
                                 if len(result["problems"]) > 1 else ""),
                              fix="Follow the DatabaseCorrupted runbook: keep the damaged database aside, restore "
                                  "the last verified backup (erpctl backup restore --dry-run lists what it "
                                  "discards).", **result)
    return result


def _sqlite(path: Path) -> dict:
    if not Path(path).exists():
        raise DatabaseUnavailable(f"no SQLite database at {path}", fix="Restore it (the DatabaseCorrupted runbook).")
    try:
        conn = sqlite3.connect(f"file:{Path(path).resolve()}?mode=ro", uri=True, timeout=30)
        try:
            rows = [ln for r in conn.execute("PRAGMA integrity_check").fetchall() for ln in str(r[0]).splitlines()
                    if not ln.startswith("*** ")]
            tables = conn.execute("SELECT count(*) FROM sqlite_master WHERE type = 'table'").fetchone()[0]
        finally:
            conn.close()
    except sqlite3.DatabaseError as exc:  # "file is not a database", "database disk image is malformed"
        return {"backend": "sqlite", "ok": False, "problems": [f"{exc}"], "checked": {}}
    problems = [] if rows == ["ok"] else rows[:MAX_PROBLEMS]
    return {"backend": "sqlite", "ok": not problems, "problems": problems,
            "checked": {"check": "PRAGMA integrity_check", "tables": tables}}


def _postgresql(url: str) -> dict:
    engine = create_engine(url, poolclass=NullPool)
    problems: list[str] = []
    checked = {"tables": 0, "indexes": 0, "amcheck": False}
    try:
        with engine.connect() as c:
            tables = c.execute(text("SELECT c.relname FROM pg_catalog.pg_class c JOIN pg_catalog.pg_namespace n "
                                    "ON n.oid = c.relnamespace WHERE n.nspname = current_schema() AND c.relkind = 'r' "
                                    "ORDER BY 1")).scalars().all()
            for table in tables:
                try:
                    with c.begin_nested():
                        c.execute(text(f'SELECT count(*) FROM "{table}"'))  # noqa: S608 - names from the catalog
                    checked["tables"] += 1
                except DBAPIError as exc:
                    problems.append(f"table {table}: {str(exc.orig).strip()}")
            failures = c.execute(text("SELECT coalesce(checksum_failures, 0) FROM pg_stat_database "
                                      "WHERE datname = current_database()")).scalar()
            if failures:
                problems.append(f"{failures} data checksum failure(s) recorded for this database (pg_stat_database)")
            checked["amcheck"] = bool(c.execute(text("SELECT 1 FROM pg_extension WHERE extname = 'amcheck'")).scalar())
            if checked["amcheck"]:
                problems += _amcheck(c, checked)
    except DBAPIError as exc:
        raise DatabaseUnavailable(f"the database did not answer: {str(exc.orig).strip()}",
                                  fix="Bring the database back first (the ErpDatabaseDown runbook).") from None
    finally:
        engine.dispose()
    return {"backend": "postgresql", "ok": not problems, "problems": problems[:MAX_PROBLEMS], "checked": checked}


def _amcheck(c, checked: dict) -> list[str]:
    problems = []
    indexes = c.execute(text("SELECT i.indexrelid::regclass::text FROM pg_index i "
                             "JOIN pg_class t ON t.oid = i.indrelid "
                             "JOIN pg_namespace n ON n.oid = t.relnamespace JOIN pg_class ic ON ic.oid = i.indexrelid "
                             "JOIN pg_am am ON am.oid = ic.relam WHERE n.nspname = current_schema() "
                             "AND am.amname = 'btree' ORDER BY 1")).scalars().all()
    for index in indexes:
        try:
            with c.begin_nested():
                c.execute(text("SELECT bt_index_check(CAST(:i AS regclass))"), {"i": index})
            checked["indexes"] += 1
        except DBAPIError as exc:
            problems.append(f"index {index}: {str(exc.orig).strip()}")
    return problems
