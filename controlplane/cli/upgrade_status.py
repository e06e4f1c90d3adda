"""erpctl upgrade status: the upgrade in progress (stage, rows/s, ETA) or the last one."""

from __future__ import annotations

import click

from ..upgrade import state
from .options import emit, json_option, target, target_options
from .upgrade_common import render_summary


def render(r: dict) -> str:
    if r["status"] == "none":
        last = r.get("last")
        return "no upgrade in progress" + (f"; the last one:\n{render_summary(last)}" if last else "")
    text = render_summary(r)
    if r.get("maintenance_set_by_upgrade"):
        text += "\n  the ERP is in maintenance mode for this upgrade: resume or rollback clears it"
    return text


@click.command()
@target_options
@json_option
def status(data_dir, database_url):
    """Show the upgrade in progress: its stage, backfill rows/s and ETA; or the last finished one."""
    r = state.status(target(data_dir, database_url).data_dir)
    emit(r, render(r))
