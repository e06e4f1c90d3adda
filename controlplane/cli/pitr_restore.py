"""erpctl pitr restore: restore the cluster to a time or to just before a transaction, into a scratch
directory on a scratch port, and prove it with the verification ladder (L1-L4)."""

from __future__ import annotations

import click

from ..backup.verify import default_field_key
from ..pitr import restore as pitr_restore
from .options import emit, json_option, target_options
from .pitr_common import open_pitr


def render(out: dict) -> str:
    what = out.get("to") or (f"just before transaction {out['before_xid']}" if "before_xid" in out
                             else "the end of the archive")
    head = (f"restored to {what} from backup {out['backup']}: pgBackRest restore {out['restore_seconds']} s, "
            f"recovery {out['recovery_seconds']} s")
    lines = [head]
    for l in out["verification"]["levels"]:
        outcome = "ok" if l["ok"] else "FAILED"
        lines.append(f"  L{l['level']} {l['name']:<11}{outcome:<8}{l['duration_seconds']:>8.2f}s  {l['summary']}")
    if out["kept"]:
        lines.append(f"kept running: {out['database_url']} (data {out['pg_data']}); docs/pitr.md says how to put it "
                     "in the live cluster's place")
    else:
        lines.append("the restored cluster was removed (--keep leaves it running)")
    return "\n".join(lines)


def level_option(fn):
    return click.option("--level", type=click.IntRange(1, 4), default=4, show_default=True,
                        help="Verification ladder levels to run on the restored cluster: 1 repository, 2 engine, "
                             "3 content, 4 service.")(fn)


@click.command(name="restore")
@target_options
@click.option("--to", "to", metavar="TIME", help="Recover up to this time (ISO 8601 with a zone); writes after it "
                                                  "are not restored.")
@click.option("--before-xid", metavar="XID", help="Recover up to just before this transaction (it is not restored).")
@click.option("--set", "backup_set", metavar="LABEL",
              help="The backup to start from (default: the newest that ended before the target; 'erpctl pitr "
                   "status' lists them).")
@level_option
@click.option("--keep", is_flag=True, help="Leave the restored cluster running (when it passed) for the operator.")
@click.option("--port", type=int, help="Port of the restored cluster (default: a free one).")
@json_option
def restore(data_dir, database_url, to, before_xid, backup_set, level, keep, port):
    """Restore to --to TIME or --before-xid XID into a scratch cluster and verify it (nothing live changes)."""
    if to is None and before_xid is None:
        raise click.UsageError("give --to TIME or --before-xid XID ('erpctl pitr verify' restores to the end "
                               "of the archive)")
    inst, cfg = open_pitr(data_dir, database_url)
    out = pitr_restore.restore(inst.data_dir, cfg, to=to, before_xid=before_xid, level=level, keep=keep, port=port,
                               backup_set=backup_set, field_key=default_field_key(inst))
    emit(out, render(out))
