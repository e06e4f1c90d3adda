"""erpctl runbook resume RUN_ID: go on with a paused or interrupted runbook run."""

from __future__ import annotations

import click

from .options import json_option, target_options
from .runbook_common import installation, interactive, reporter


@click.command()
@click.argument("run_id")
@target_options
@click.option("--yes", is_flag=True, help="Confirm every confirm block from here on.")
@click.option("--done", is_flag=True, help="The manual step the run waits at is done.")
@json_option
def resume(run_id, data_dir, database_url, yes, done):
    """Go on with a paused or interrupted runbook run, with the parameters it started with.

    A run waiting for a confirmation goes on with --yes (or a yes typed on a terminal); one waiting at a
    manual step with --done (or 'done' typed). A run that was killed runs the step it was in again from
    its start. Exit codes as for `erpctl runbook run`; 66 when the run has finished, runs elsewhere, or
    its runbook changed.
    """
    from ..runbook import engine

    inst = installation(data_dir, database_url)
    return engine.resume(inst, run_id, reporter(), yes=yes, done=done, interactive=interactive())
