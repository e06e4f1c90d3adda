"""erpctl fleet exec: run a shell command on the hosts; recorded in the evidence log."""

from __future__ import annotations

import click

from ..remote import fleet
from .fleet_common import finish, fleet_options, installation, run
from .options import json_option, target_options


def render(results: list[dict]) -> str:
    out = []
    for r in results:
        said = f"exit {r['exit_code']}" if r.get("exit_code") is not None else r.get("error", "")
        out.append(f"== {r['host']} ({r['outcome']}, {said})")
        out.extend(x.rstrip("\n") for x in (r.get("stdout"), r.get("stderr")) if x)
    return "\n".join(out)


@click.command(name="exec")
@target_options
@fleet_options
@json_option
@click.argument("command")
def exec_(data_dir, database_url, limit, command, **fleet_opts):
    """Run COMMAND (a shell command) on each host, in its erp_root; per-host exit codes and output."""
    inst = installation(data_dir, database_url, **fleet_opts)
    results = run(inst, limit, command)
    entry = fleet.record(inst, "fleet_exec", command, results, inst.get("fleet_parallel"))
    finish(results, render(results), {"command": command, "evidence_seq": entry.get("seq")})
