"""erpctl fleet status: each host's roles, reachability, load, free disk and current release."""

from __future__ import annotations

import click

from ..remote import fleet
from .fleet_common import finish, fleet_options, installation, run
from .options import json_option, target_options


@click.command(name="status")
@target_options
@fleet_options
@json_option
def status(data_dir, database_url, limit, **fleet_opts):
    """Each host: its roles, whether it answers, its load, free disk in erp_root and current release."""
    results = run(installation(data_dir, database_url, **fleet_opts), limit, fleet.STATUS_SCRIPT)
    lines = [f"  {'host':<16}{'roles':<22}{'state':<18}{'load':<16}{'free disk':>12}  release"]
    for r in results:
        facts = fleet.parse_status(r.get("stdout", ""))
        r["facts"] = facts
        free = facts.get("disk_free_bytes", "")
        free = f"{int(free) / 2**30:.1f} GiB" if free.isdigit() else "-"
        lines.append(f"  {r['host']:<16}{','.join(r['roles']) or '-':<22}{r['outcome']:<18}"
                     f"{facts.get('load', '-'):<16}{free:>12}  {facts.get('release') or '-'}")
    finish(results, "\n".join(lines))
