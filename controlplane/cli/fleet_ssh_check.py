"""erpctl fleet ssh-check: log in to every host (strict host keys, key-based login), run nothing."""

from __future__ import annotations

import click

from .fleet_common import finish, fleet_options, installation, run
from .options import json_option, target_options


@click.command(name="ssh-check")
@target_options
@fleet_options
@json_option
def ssh_check(data_dir, database_url, limit, **fleet_opts):
    """Log in to each host over SSH: its key checked against the known-hosts file, key-based login."""
    results = run(installation(data_dir, database_url, **fleet_opts), limit, None)
    lines = [f"{r['host']:<16} {r['outcome']:<17} {r.get('fingerprint', '')}" for r in results]
    finish(results, "\n".join(lines))
