"""erpctl fleet restore: restore a backup to the fleet's database behind HAProxy (playbooks/restore.yml): every
app host drained and stopped, the fail-closed restore run once through the first app host, every host started,
readiness-gated and put back; recorded in the evidence log (fleet_restore)."""

from __future__ import annotations

import json
import re

import click

from ..errors import FleetRestoreFailed, FleetRestoreNotConfirmed
from ..remote import playbook
from .fleet_common import fleet_options, installation
from .fleet_deploy import render as render_recap
from .options import emit, json_option, state, target_options

BACKUP_ID = re.compile(r"^(latest|[0-9a-f]{4,64})$")
FATAL = re.compile(r"^fatal: \[(?P<host>[^\]]+)\]: FAILED! => (?P<json>\{.*\})$", re.M)


def first_failure(output: str) -> str | None:
    """The first failed task's host and what it said (an erpctl error's detail when it was one)."""
    m = FATAL.search(output)
    try:
        said = json.loads(m["json"]) if m else None
    except ValueError:
        return None
    if said is None:
        return None
    text = (said.get("stderr") or said.get("msg") or "").strip()
    try:
        text = json.loads(text.splitlines()[-1])["error"]["detail"]
    except (ValueError, KeyError, IndexError, TypeError):
        pass
    return f"{m['host']}: {' '.join(str(text).split())[:400]}"


def render(result: dict) -> str:
    r = result["reported"]
    if not r.get("restored"):
        return render_recap(result)
    return "\n".join([f"restored backup {r['backup'][:12]} ({r['backup_time']}) through {r['host']}, verified through "
                      f"L{r['verified_through']}, {r['swap']}; discarded {r['discarded_writes']} write(s) made since "
                      f"it (their list on {r['host']}: {r['discarded_list']})",
                      f"  serving again behind HAProxy: {', '.join(r.get('serving') or [])}", render_recap(result)])


def outcome(result: dict) -> Exception | None:
    """The error for the run (None when the backup was restored and every host serves again)."""
    r, failed = result["reported"], playbook.failure(result)
    if failed is None and r.get("restored") and r.get("serving"):
        return None
    if failed is None:
        failed = FleetRestoreFailed("restore.yml restored nothing (no app host matched the inventory and --limit)",
                                    fix="Name the app hosts in the inventory's app group (and in --limit, if given).")
    why = first_failure(result["output"]) or failed.detail
    if not r.get("drained"):  # refused before any host was drained: the site serves as before
        return FleetRestoreFailed(f"the fleet restore was refused before any host was drained ({why}); "
                                  "nothing was changed", fix=failed.fix)
    return FleetRestoreFailed(
        f"the fleet restore of backup {str(r.get('backup'))[:12]} failed ({why}); every app host is left drained in "
        "HAProxy: none serves a database that was not restored and verified",
        fix="The play's output names the failed task. On the first app host 'erpctl backup restore --recover' "
            "finishes or rolls back an interrupted restore; fix the cause, then run 'erpctl fleet restore' again "
            "(or 'erpctl fleet deploy' to serve the database as it is).")


@click.command(name="restore")
@click.argument("backup_id", metavar="[ID]", default="latest")
@target_options
@fleet_options
@json_option
@click.option("--yes", is_flag=True, help="Replace the fleet's live database (required: nothing is done without it).")
@click.option("--discard-writes", type=click.IntRange(min=0), metavar="N",
              help="Confirm that the restore discards at most N writes made since the backup (the number 'erpctl "
                   "backup restore ID --dry-run' shows); refused when there are more. Default: as many as there are, "
                   "counted with every ERP stopped (--yes accepts the loss).")
@click.option("--playbooks-dir", metavar="DIR", help="The Ansible project (ansible.cfg, roles). Default: the "
                                                     "playbooks shipped with erpctl. [env ERPCTL_FLEET_PLAYBOOKS_DIR]")
def restore(data_dir, database_url, limit, backup_id, yes, discard_writes, playbooks_dir, **fleet_opts):
    """Restore backup ID (default: the latest) to the fleet's database behind HAProxy (restore.yml).

    Every app host is drained in HAProxy and its ERP stopped; the first app host's 'erpctl backup restore'
    (verified through L3 in a scratch database, swapped in atomically) runs once; every ERP is started,
    readiness-gated on the release it served and put back in HAProxy. On any failure every app host is left
    drained (exit 57): none serves a database that was not restored and verified. Without --yes nothing is
    done (exit 56). Recorded in the evidence log (fleet_restore).
    """
    if not BACKUP_ID.match(backup_id):
        raise click.BadParameter(f"{backup_id!r} is not a backup id (hex, at least 4 digits) or 'latest'",
                                 param_hint="ID")
    if not yes:
        raise FleetRestoreNotConfirmed(f"restoring backup {backup_id} replaces the live database of every app host, "
                                       "discarding the writes made since it; nothing was changed",
                                       fix=f"Check the backup ('erpctl backup list' on the first app host), then run "
                                           f"'erpctl fleet restore {backup_id} --yes'.")
    inst = installation(data_dir, database_url, playbooks_dir=playbooks_dir, **fleet_opts)
    extra = {"erp_restore_backup": backup_id, "erp_restore_confirm": True}
    if discard_writes is not None:
        extra["erp_restore_discard_writes"] = discard_writes
    result = playbook.run(inst, "restore.yml", limit=limit, echo=not state().json, extra_vars=extra,
                          kind="fleet_restore")
    failed = outcome(result)
    if not state().json:
        result.pop("output")
    drained = failed is not None and bool(result["reported"].get("drained"))
    emit({**result, "backup": result["reported"].get("backup"), "left_drained": drained, "ok": failed is None,
          "exit_code": failed.exit_code if failed else 0}, render(result))
    if failed is not None:
        raise failed
