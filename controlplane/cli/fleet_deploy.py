"""erpctl fleet deploy: run a playbook of the fleet's Ansible project (site.yml by default) with
ansible-playbook; progress per host on stderr, the recap per host, recorded in the evidence log."""

from __future__ import annotations

import click

from ..remote import playbook
from .fleet_common import fleet_options, installation
from .options import emit, json_option, state, target_options


def render(r: dict) -> str:
    lines = [f"{r['playbook']}{' (check mode: nothing changed)' if r['check'] else ''}: exit {r['returncode']}, "
             f"{r['changed']} change(s)"]
    for host, c in r["hosts"].items():
        lines.append(f"  {host:<16} " + " ".join(f"{k}={v}" for k, v in c.items()))
    return "\n".join(lines)


@click.command(name="deploy")
@target_options
@fleet_options
@json_option
@click.option("--playbook", "playbook_", default="site.yml", show_default=True, help="The playbook of the project to run.")
@click.option("--check", is_flag=True, help="Ansible's check mode: report what would change, change nothing.")
@click.option("--playbooks-dir", metavar="DIR", help="The Ansible project (ansible.cfg, roles). Default: the "
                                                     "playbooks shipped with erpctl. [env ERPCTL_FLEET_PLAYBOOKS_DIR]")
def deploy(data_dir, database_url, limit, playbook_, check, playbooks_dir, **fleet_opts):
    """Run a playbook (site.yml by default) on the fleet with ansible-playbook: strict host keys, key login."""
    inst = installation(data_dir, database_url, playbooks_dir=playbooks_dir, **fleet_opts)
    result = playbook.run(inst, playbook_, check=check, limit=limit, echo=not state().json)
    failed = playbook.failure(result)
    if not state().json:
        result.pop("output")
    emit({**result, "ok": failed is None, "exit_code": failed.exit_code if failed else 0}, render(result))
    if failed is not None:
        raise failed
