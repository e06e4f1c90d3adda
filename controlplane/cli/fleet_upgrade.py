"""erpctl fleet upgrade: the rolling upgrade of the app hosts behind HAProxy (playbooks/upgrade.yml) with
ansible-playbook; progress per host on stderr, the recap per host, recorded in the evidence log."""

from __future__ import annotations

import re

import click

from ..errors import FleetUpgradeRolledBack
from ..remote import playbook
from .fleet_common import fleet_options, installation
from .fleet_deploy import render
from .options import emit, json_option, state, target_options

VERSION = re.compile(r"^[0-9][0-9A-Za-z.+_-]{0,63}$")
PUT_BACK = "every app host serves its previous release again"
FAILED_STEP = re.compile(r"the rolling upgrade to \S+ failed \((?P<why>.*?)\); every app host")


def outcome(result: dict) -> tuple[Exception | None, bool]:
    """The error for the run (None when it succeeded) and whether the play put the old release back."""
    failed = playbook.failure(result)
    put_back = failed is not None and not result["host_key_refused"] and PUT_BACK in result["output"]
    if put_back:
        m = FAILED_STEP.search(result["output"])
        failed = FleetUpgradeRolledBack(
            f"the rolling upgrade to {result['extra_vars']['erp_release_version']} failed"
            f"{f' ({m[1]})' if m else ''}; every app host serves its previous release again",
            fix="The play's output above names the failed task and its message; fix it, then run "
                "'erpctl fleet upgrade' again.")
    return failed, put_back


@click.command(name="upgrade")
@target_options
@fleet_options
@json_option
@click.option("--to", "to_version", required=True, metavar="VERSION",
              help="The release to upgrade the app hosts to (its signed wheel: the inventory's erp_release_wheel).")
@click.option("--playbooks-dir", metavar="DIR", help="The Ansible project (ansible.cfg, roles). Default: the "
                                                     "playbooks shipped with erpctl. [env ERPCTL_FLEET_PLAYBOOKS_DIR]")
def upgrade(data_dir, database_url, limit, to_version, playbooks_dir, **fleet_opts):
    """Upgrade the app hosts to release VERSION, one at a time behind HAProxy (upgrade.yml).

    Each host is drained in HAProxy, switched, and put back once it is ready on VERSION; the first
    host runs the staged migration ('erpctl upgrade apply', stopping before contract: both releases
    serve side by side). On any failure every app host gets its previous release back, the staged
    migration is rolled back (no row lost), and the command exits 104. Each run is recorded in the
    evidence log (fleet_upgrade: hosts, changes, result).
    """
    if not VERSION.match(to_version):
        raise click.BadParameter(f"{to_version!r} is not a release version (e.g. 1.1.0)", param_hint="--to")
    inst = installation(data_dir, database_url, playbooks_dir=playbooks_dir, **fleet_opts)
    result = playbook.run(inst, "upgrade.yml", limit=limit, echo=not state().json,
                          extra_vars={"erp_release_version": to_version}, kind="fleet_upgrade")
    failed, put_back = outcome(result)
    if not state().json:
        result.pop("output")
    emit({**result, "to": to_version, "put_back": put_back, "ok": failed is None,
          "exit_code": failed.exit_code if failed else 0}, render(result))
    if failed is not None:
        raise failed
