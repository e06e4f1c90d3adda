"""erpctl erp integrity: the database engine's full integrity check."""

from __future__ import annotations

import click

from .. import integrity
from .options import emit, json_option, target, target_options


def render(r: dict) -> str:
    what = ", ".join(f"{k} {v}" for k, v in r["checked"].items())
    return f"ok: the {r['backend']} database passed its integrity check ({what}; {r['seconds']} s)"


@click.command("integrity")
@target_options
@json_option
def integrity_(data_dir, database_url):
    """Run the database engine's full integrity check: SQLite integrity_check, PostgreSQL tables, amcheck.

    Read-only: SQLite PRAGMA integrity_check; PostgreSQL every table read in full, the data-checksum failures,
    and amcheck on every B-tree index where the extension is installed. Exit 0 when intact, 93 naming the
    problems, 12 when the database cannot be opened."""
    result = integrity.check(target(data_dir, database_url))
    emit(result, render(result))
