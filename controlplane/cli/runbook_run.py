"""erpctl runbook run NAME: run a runbook step by step, with a log."""

from __future__ import annotations

import click

from .options import json_option, target_options
from .runbook_common import installation, interactive, reporter, runbooks_option


@click.command()
@click.argument("name")
@target_options
@runbooks_option
@click.option("--dry-run", is_flag=True, help="Print each step and what it would run (variables substituted); "
                                              "run nothing, record nothing.")
@click.option("--yes", is_flag=True, help="Confirm every confirm block of this run (its resumes included).")
@click.option("--param", "params", multiple=True, metavar="NAME=VALUE",
              help="A variable for the blocks (e.g. ERP_TOKEN=...); repeatable. Values of names containing TOKEN, "
                   "PASSWORD, PASSPHRASE, SECRET or KEY are masked in output and the evidence log.")
@json_option
def run(name, data_dir, database_url, runbooks_dir, dry_run, yes, params):
    """Run a runbook step by step, with a log.

    Each step is shown, then its ```erpctl lines (this erpctl) and ```sh blocks (sh -eu) run with
    ERPCTL_DATA_DIR, ERPCTL_DATABASE_URL, ERP_URL and OPS_URL (where erpctl up serves or last served) set.
    A confirm block asks first (--yes answers for the whole run); without a terminal and --yes the run
    pauses (exit 61). A manual step waits for 'done' on a terminal; without one the run pauses (exit 62):
    `erpctl runbook resume RUN_ID --done` goes on. A failing Confirm or Check recovery command is a
    finding and the run goes on; a failing Recover command stops it (exit 60). Exit 0 when recovered
    (every Check recovery command exited 0), 63 when not. --json: one JSON object a line (runbooks/README.md).
    """
    from ..runbook import engine
    from ..runbook.environment import installation_env, parse_params
    from ..runbook.parse import find

    values = parse_params(params)
    inst = installation(data_dir, database_url, runbooks_dir)
    rb = find(inst.get("runbooks_dir"), name)
    if dry_run:
        return engine.plan(rb, {**installation_env(inst), **values}, reporter())
    return engine.start(inst, rb, values, reporter(), yes=yes, interactive=interactive())
