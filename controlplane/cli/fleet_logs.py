"""erpctl fleet logs: the last lines of each host's erpctl up log."""

from __future__ import annotations

import click

from ..remote import fleet
from .fleet_common import finish, fleet_options, installation, run
from .fleet_exec import render
from .options import json_option, target_options


@click.command(name="logs")
@target_options
@fleet_options
@json_option
@click.option("--lines", "-n", type=click.IntRange(1, 100000), default=50, show_default=True,
              help="Lines of each host's log.")
def logs(data_dir, database_url, limit, lines, **fleet_opts):
    """The last lines of the erpctl up log in each host's erp_root."""
    results = run(installation(data_dir, database_url, **fleet_opts), limit, fleet.logs_command(lines))
    finish(results, render(results))
