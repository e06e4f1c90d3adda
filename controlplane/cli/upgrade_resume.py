"""erpctl upgrade resume: continue an interrupted upgrade, or run its contract stage."""

from __future__ import annotations

import click

from ..upgrade import engine
from .options import emit, json_option, target_options
from .upgrade_common import erp_options, options, render_summary


@click.command()
@click.option("--confirm-contract", is_flag=True, help="Run the contract stage (the point of no return).")
@click.option("--stall-budget-ms", type=click.FloatRange(1), help="Longest a writer may wait for a backfill batch.")
@erp_options
@target_options
@json_option
def resume(confirm_contract, stall_budget_ms, **kw):
    """Continue the upgrade from its last finished stage (a backfill from its last checkpoint)."""
    r = engine.resume(options(**kw, confirm_contract=confirm_contract, stall_budget_ms=stall_budget_ms))
    emit(r, render_summary(r))
