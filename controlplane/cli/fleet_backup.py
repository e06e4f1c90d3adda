"""erpctl fleet backup: a backup of the fleet's database taken once through the first app host's erpctl and
verified (playbooks/backup.yml); progress per host on stderr, recorded in the evidence log (fleet_backup)."""

from __future__ import annotations

import click

from ..errors import RemoteCommandFailed, VerificationFailed
from ..remote import playbook
from .fleet_common import fleet_options, installation
from .fleet_deploy import render as render_recap
from .options import emit, json_option, state, target_options


def render(result: dict) -> str:
    b = result["reported"]
    if not b.get("backup"):
        return render_recap(result)
    verified = "verified" if b.get("verified") else "FAILED verification"
    return "\n".join([f"backup {b['backup'][:12]} of the fleet's database (through {b['host']}) into "
                      f"{b['repository']}: {b['size_bytes']} bytes, {b['bytes_added']} added; {verified} "
                      f"through L{b['verified_level']}", *(f"  {s}" for s in b.get("verification") or []),
                      render_recap(result)])


def outcome(result: dict) -> Exception | None:
    """The error for the run (None when a verified backup was reported)."""
    b, failed = result["reported"], playbook.failure(result)
    if b.get("backup") and b.get("verified") is False:
        return VerificationFailed(f"backup {b['backup'][:12]} of the fleet's database failed its verification "
                                  f"(L{b['verified_level']}); the site kept serving",
                                  fix="Do not restore it. The play's output names the failed level; 'erpctl backup "
                                      "verify' on the first app host says more, then run 'erpctl fleet backup' again.")
    if failed is None and not b.get("backup"):
        return RemoteCommandFailed("backup.yml reported no backup (no app host matched the inventory and --limit)",
                                   fix="Name an app host in the inventory's app group (and in --limit, if given).")
    return failed


@click.command(name="backup")
@target_options
@fleet_options
@json_option
@click.option("--verify", "level", type=click.IntRange(1, 4), default=1, show_default=True, metavar="LEVEL",
              help="Verify the new backup up to this level: 1 its chunks read back, authenticated and hashed "
                   "(quick); 2 restored and the engine's checks pass; 3 row counts, checksums and invariants; "
                   "4 an ERP serves it.")
@click.option("--playbooks-dir", metavar="DIR", help="The Ansible project (ansible.cfg, roles). Default: the "
                                                     "playbooks shipped with erpctl. [env ERPCTL_FLEET_PLAYBOOKS_DIR]")
def backup(data_dir, database_url, limit, level, playbooks_dir, **fleet_opts):
    """Back up the fleet's database once, through the first app host, and verify it (backup.yml).

    The first app host's 'erpctl backup create' takes it into the repository the inventory names
    (erp_backup_repo; default the installation's own) while the ERP keeps serving, then 'erpctl backup
    verify --level LEVEL' checks it. The backup id, its size and the verification are reported and
    recorded in the evidence log (fleet_backup). Exit 28 when the backup failed its verification.
    """
    inst = installation(data_dir, database_url, playbooks_dir=playbooks_dir, **fleet_opts)
    result = playbook.run(inst, "backup.yml", limit=limit, echo=not state().json,
                          extra_vars={"erp_backup_verify_level": level}, kind="fleet_backup")
    failed = outcome(result)
    if not state().json:
        result.pop("output")
    emit({**result, "backup": result["reported"].get("backup"), "ok": failed is None,
          "exit_code": failed.exit_code if failed else 0}, render(result))
    if failed is not None:
        raise failed
