"""erpctl upgrade rollback: back to the release and schema before the upgrade."""

from __future__ import annotations

import click

from ..upgrade import engine
from .options import emit, json_option, target_options
from .upgrade_common import erp_options, options, render_summary


def render(r: dict) -> str:
    rb = r.get("rollback") or {}
    lines = [render_summary(r)]
    if "rows_kept" in rb:
        lines.append("  rows kept: " + ", ".join(f"{t} {n}" for t, n in rb["rows_kept"].items()))
    if "restored" in rb:
        lines.append(f"  restored backup {rb['restored'][:8]}; {rb['lost']['count']} write(s) after it were lost")
    return "\n".join(lines)


@click.command()
@click.option("--restore-backup", is_flag=True,
              help="After contract: restore the pre-upgrade backup, accepting the loss of the writes made since "
                   "(without it, the command lists them and changes nothing).")
@erp_options
@target_options
@json_option
def rollback(restore_backup, **kw):
    """Before contract: migrate the schema down to the old release's and serve it again, keeping every row.
    After contract: restore the pre-upgrade backup (with --restore-backup), naming the writes that loses."""
    r = engine.rollback(options(**kw), restore_backup=restore_backup)
    emit(r, render(r))
