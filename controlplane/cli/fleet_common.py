"""What the fleet commands share: the inventory and SSH options, the run over the hosts, rendering."""

from __future__ import annotations

import sys

import click

from ..remote import fleet
from .options import emit, state, target

def fleet_options(fn):
    """--inventory, --known-hosts, --identity, timeouts, --parallel and --limit."""
    opts = [
        click.option("--limit", metavar="HOSTS", help="Comma-separated host or group names (app, database, "
                                                      "loadbalancer, backup). Default: every host."),
        click.option("--parallel", type=int, metavar="N", help="Hosts worked on at once (at least 1). Default 10. "
                                                               "[env ERPCTL_FLEET_PARALLEL; erpctl.toml [fleet] parallel]"),
        click.option("--command-timeout", type=float, metavar="SECONDS",
                     help="Time a command may run on a host. Default 300. [env ERPCTL_FLEET_COMMAND_TIMEOUT]"),
        click.option("--connect-timeout", type=float, metavar="SECONDS",
                     help="SSH connect and login timeout. Default 10. [env ERPCTL_FLEET_CONNECT_TIMEOUT]"),
        click.option("--identity", metavar="FILE", help="Private key to log in with (key-based login only). "
                                                        "[env ERPCTL_FLEET_IDENTITY_FILE]"),
        click.option("--known-hosts", metavar="FILE", help="Known-hosts file the host keys are checked against. "
                                                           "Default: fleet/known_hosts in the data directory."),
        click.option("--inventory", metavar="FILE", help="Ansible YAML inventory. Default: fleet/inventory.yml "
                                                         "in the data directory. [env ERPCTL_FLEET_INVENTORY]"),
    ]
    for opt in opts:
        fn = opt(fn)
    return fn


def installation(data_dir, database_url, inventory=None, known_hosts=None, identity=None, connect_timeout=None,
                 command_timeout=None, parallel=None, playbooks_dir=None):
    return target(data_dir, database_url, fleet_inventory=inventory, fleet_known_hosts=known_hosts,
                  fleet_identity_file=identity, fleet_connect_timeout=connect_timeout,
                  fleet_command_timeout=command_timeout, fleet_parallel=parallel, fleet_playbooks_dir=playbooks_dir)


def _progress(result: dict) -> None:
    """Each host's outcome as it comes, on a terminal (the result at the end says it all again)."""
    if not state().json and sys.stderr.isatty():
        line = f"{result['host']:<16} {result['outcome']:<17} {result['seconds']:>7.2f}s"
        if result["outcome"] != "ok":
            line += f"  {result.get('error', '')}"
        click.echo(line, err=True)


def run(inst, limit: str | None, command: str | None) -> list[dict]:
    """Every selected host's result (progress per host on stderr on a terminal run)."""
    return fleet.on_hosts(fleet.hosts(inst, limit), fleet.access(inst), command, inst.get("fleet_parallel"),
                          progress=_progress)


def finish(results: list[dict], human: str, extra: dict | None = None) -> None:
    """Print the results; raise the error whose exit code says the worst thing that happened."""
    failed = fleet.failure(results)
    emit({**(extra or {}), "ok": failed is None, "exit_code": failed.exit_code if failed else 0, "hosts": results},
         human)
    if failed is not None:
        raise failed
