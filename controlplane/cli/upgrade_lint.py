"""erpctl upgrade lint: refuse dangerous migrations before they run."""

from __future__ import annotations

from pathlib import Path

import click

from erp_core.ops import MIGRATIONS_DIR

from .. import erp_admin
from ..errors import MigrationLintFailed
from ..upgrade.lint import DEFAULT_LARGE_ROWS, lint_report, row_estimates
from .options import emit, json_option, target, target_options

SHOWN_IN_ERROR = 10


def render(r: dict) -> str:
    est = r["row_estimates"]
    sizes = (f"row estimates from {est['database']} ({est['source']}, {est['tables']} tables)" if est
             else "no row estimates (size findings are warnings; pass --data-dir or --database-url)")
    lines = [f"migrations: {r['versions_dir']}  ({len(r['migrations'])} migration(s); {sizes}; "
             f"large: more than {r['large_rows']:,} rows)"]
    for f in r["findings"]:
        rev = f" (revision {f['revision']})" if f["revision"] else ""
        lines.append(f"{f['path']}:{f['line']}: {f['severity']} [{f['rule']}]{rev} {f['message']}")
        lines.append(f"    fix: {f['fix']}")
    lines.append(f"{r['errors']} error(s), {r['warnings']} warning(s)")
    return "\n".join(lines)


@click.command()
@click.option("--versions-dir", metavar="DIR", type=click.Path(file_okay=True, path_type=Path),
              help="The Alembic versions directory to check. Default: the ERP's own migrations.")
@click.option("--large-rows", type=click.IntRange(min=0), default=DEFAULT_LARGE_ROWS, show_default=True,
              help="A table with more rows than this is large: rewriting it is an error.")
@target_options
@json_option
def lint(versions_dir, large_rows, data_dir, database_url):
    """Check migrations against the staged-upgrade rules, without running them.

    Refused: data updates not batched by key range (declare an erp_core.backfill Backfill instead),
    volatile defaults, column type changes and table rebuilds on large tables, DDL in a backfill
    migration, data changes in expand or contract migrations, a missing stage, and a contract
    ordered before the backfill it depends on.

    Given a target database (--data-dir or --database-url), table sizes come from it (SQLite:
    sqlite_stat1, else count(*); PostgreSQL: pg_class.reltuples) and rewriting a large table is an
    error; without one it is a warning. Exits 0 when there are no errors (warnings are listed), 40
    otherwise.
    """
    directory = versions_dir or MIGRATIONS_DIR / "versions"
    rows, estimates = None, None
    if data_dir or database_url:
        t = target(data_dir, database_url)
        erp_admin.require_database(t)
        rows, source = row_estimates(t.database_url)
        estimates = {"database": t.display_url, "source": source, "tables": len(rows)}
    report = lint_report(directory, rows=rows, large_rows=large_rows)
    result = report.as_dict()
    result["row_estimates"] = estimates
    emit(result, render(result))
    errors = report.errors
    if errors:
        listed = "; ".join(f"{f.path}:{f.line} [{f.rule}] {f.message}" for f in errors[:SHOWN_IN_ERROR])
        more = f"; and {len(errors) - SHOWN_IN_ERROR} more" if len(errors) > SHOWN_IN_ERROR else ""
        raise MigrationLintFailed(
            f"{len(errors)} migration error(s): {listed}{more}",
            fix="Change each migration as its finding's fix says (all findings are listed on stdout), then run "
                "'erpctl upgrade lint' again.",
            errors=[f.as_dict() for f in errors])
