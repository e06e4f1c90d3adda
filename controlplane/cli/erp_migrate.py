"""erpctl erp migrate: bring the database schema up to this code's revision."""

from __future__ import annotations

import click

from .. import erp_admin
from .options import emit, json_option, target, target_options


def render(r: dict) -> str:
    lines = [f"database: {r['database']}",
             f"revision: {r['from_revision'] or '(empty database)'} -> {r['to_revision']}  ({r['note']})"]
    for m in r["migrations"]:
        lines.append(f"  {m['revision']:<24} {m['stage'] or '?':<9} {m['state']:<16} {m['doc'] or ''}")
    return "\n".join(lines)


@click.command()
@target_options
@json_option
def migrate(data_dir, database_url):
    """Migrate the ERP database to this code's schema revision.

    Prints the revision before and after and each migration with its stage (expand, backfill,
    contract). A new SQLite database is created in the data directory.
    """
    result = erp_admin.migrate_database(target(data_dir, database_url))
    emit(result, render(result))
