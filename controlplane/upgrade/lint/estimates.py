"""Row estimates: how big each table of a live database is, and which tables count as large.

The rewrite rules (volatile-default, column-type-change, table-rebuild) and the allow-full-update
marker depend on a table's size: an error above the row threshold, a warning when it is unknown.
"""

from __future__ import annotations

import sqlite3
import urllib.parse
from dataclasses import dataclass
from pathlib import Path

from sqlalchemy import text
from sqlalchemy.engine import make_url

from erp_core.ops import make_engine, normalise_url
from erp_core.errors import ValidationFailed


@dataclass(frozen=True)
class TableSizes:
    """Rows per table (lower-cased names; None: no target database given) and the threshold above
    which a table is large."""

    rows: dict[str, int] | None
    large_rows: int

    @classmethod
    def of(cls, rows: dict[str, int] | None, large_rows: int) -> TableSizes:
        return cls(None if rows is None else {k.lower(): int(v) for k, v in rows.items()}, large_rows)

    def rows_of(self, table: str | None) -> int | None:
        if self.rows is None or table is None:
            return None
        return self.rows.get(table.lower())


def row_estimates(database_url: str) -> tuple[dict[str, int], str]:
    """Approximate rows per table of a database, and where the numbers come from.

    SQLite: sqlite_stat1 (written by ANALYZE) where it has the table, else count(*).
    PostgreSQL: pg_class.reltuples; a table never analyzed has no estimate and is left out.
    """
    url = make_url(normalise_url(database_url))
    backend = url.get_backend_name()
    if backend == "sqlite":
        if not url.database or url.database == ":memory:":
            raise ValidationFailed("row estimates need a database file, not an in-memory SQLite database",
                                   fix="Pass --data-dir (or a sqlite:///path URL) of the installation.")
        return _sqlite_estimates(Path(url.database))
    if backend == "postgresql":
        engine = make_engine(str(url.render_as_string(hide_password=False)), pool_size=1, max_overflow=0)
        try:
            with engine.connect() as c:
                got = c.execute(text(
                    "SELECT c.relname, c.reltuples FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
                    "WHERE c.relkind IN ('r', 'p') AND n.nspname = ANY (current_schemas(false))")).all()
        finally:
            engine.dispose()
        return {name: int(n) for name, n in got if n is not None and n >= 0}, "pg_class.reltuples"
    raise ValidationFailed(f"row estimates are not supported for {backend} databases",
                           fix="Use SQLite or PostgreSQL, or lint without a target database (size "
                               "findings are then warnings).")


def _sqlite_estimates(path: Path) -> tuple[dict[str, int], str]:
    uri = f"file:{urllib.parse.quote(str(path))}?mode=ro"
    conn = sqlite3.connect(uri, uri=True)
    try:
        tables = [r[0] for r in conn.execute(
            "SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%'")]
        stat: dict[str, int] = {}
        has_stat = conn.execute(
            "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'sqlite_stat1'").fetchone() is not None
        if has_stat:
            for tbl, value in conn.execute("SELECT tbl, stat FROM sqlite_stat1"):
                first = str(value or "").split(" ", 1)[0]
                if first.isdigit():
                    stat[tbl] = max(stat.get(tbl, 0), int(first))
        out = {}
        for t in tables:
            if t in stat:
                out[t] = stat[t]
            else:
                quoted = '"' + t.replace('"', '""') + '"'
                out[t] = conn.execute(f"SELECT count(*) FROM {quoted}").fetchone()[0]  # noqa: S608 - catalog name
    finally:
        conn.close()
    return out, ("sqlite_stat1, else count(*)" if has_stat else "count(*)")

