"""erpctl upgrade status: the upgrade in progress (stage, rows/s, ETA) or the last one."""

from __future__ import annotations

import click

from ..errors import UpgradeInterrupted
from ..upgrade import state
from .options import emit, json_option, target, target_options
from .upgrade_common import render_summary


def render(r: dict) -> str:
    if r["status"] == "none":
        last = r.get("last")
        return "no upgrade in progress" + (f"; the last one:\n{render_summary(last)}" if last else "")
    text = render_summary(r)
    runner = r.get("runner") or {}
    if r.get("interrupted"):
        text += (f"\n  interrupted: {r['interrupted']}; nothing works on it now."
                 f"\n  next: '{r['next'][0]}' continues it, '{r['next'][1]}' undoes it")
    elif r.get("alive"):
        text += f"\n  running: pid {runner.get('pid')} ('erpctl upgrade {runner.get('command')}') on {runner.get('host')}"
    elif r.get("alive") is None and r["status"] in state.WORKING:
        text += f"\n  cannot tell whether it still runs: {r['liveness']}"
    if r.get("maintenance_set_by_upgrade"):
        text += "\n  the ERP is in maintenance mode for this upgrade: resume or rollback clears it"
    return text


@click.command()
@target_options
@json_option
def status(data_dir, database_url):
    """Show the upgrade in progress: its stage, backfill rows/s and ETA, whether the process running it
    is alive; or the last finished one. Exits 47 when the upgrade was interrupted (its process is gone):
    'erpctl upgrade resume' continues it, 'erpctl upgrade rollback' undoes it."""
    r = state.status(target(data_dir, database_url).data_dir)
    emit(r, render(r))
    if r.get("interrupted"):
        raise UpgradeInterrupted(f"upgrade {r['id']} at stage {r['stage']} was interrupted: {r['interrupted']}",
                                 fix=f"Run '{r['next'][0]}' to continue it or '{r['next'][1]}' to undo it.",
                                 next=r["next"])
