"""The backup jobs of the scheduler (controlplane/scheduler.py) under `erpctl up`.

    backup.create        cron:0 2 * * *    take a backup of the ERP database
    backup.verify        cron:30 3 * * *   the ladder up to [backup] verify_level (3) on the newest
                                           backup of every source
    backup.restore_test  cron:0 4 * * 0    a restore test: the newest backup restored into a scratch
                                           location and verified up to [backup] restore_test_level
                                           (4: an ERP serves it); results 'backup.restore_test'
    backup.prune         off               [backup.retention] in erpctl.toml turns it on (cron:0 5 * * *)

Schedules are changed like every job's (ERPCTL_SCHEDULE_BACKUP_CREATE="cron:0 */6 * * *", or the
[schedule] table of erpctl.toml). The repository and its key are the installation's, resolved as for
every erpctl command (controlplane/installation.py): env ERPCTL_BACKUP_REPO, else [backup] repo in
erpctl.toml, else the data directory's backup.json, else file://<data dir>/backups; the key is env
ERPCTL_BACKUP_PASSPHRASE, or a key file (env ERPCTL_BACKUP_KEY_FILE, else [backup] key_file).

    [backup]
    repo = "s3://erp-backups/prod"
    verify_level = 3
    restore_test_level = 4
    [backup.retention]
    keep_daily = 14
    keep_weekly = 8
    keep_monthly = 12

A job that fails raises, so the scheduler records it failed (results 'scheduler.backup.*'); the
operations themselves record their own results and evidence (backup.create, backup.verify.L<n>,
backup.restore_test, backup.prune).
"""

from __future__ import annotations

import logging

from ..errors import SettingInvalid, VerificationFailed
from ..scheduler import Job, JobContext, ScheduleInvalid
from . import access, restore, retention, verify

log = logging.getLogger("controlplane.backup.schedule")

DEFAULT_SCHEDULES = {
    "backup.create": "cron:0 2 * * *",
    "backup.verify": "cron:30 3 * * *",
    "backup.restore_test": "cron:0 4 * * 0",
    "backup.prune": "off",
}
PRUNE_WHEN_RETENTION = "cron:0 5 * * *"


def repo_url(context: JobContext) -> str:
    return context.installation.get("backup_repo")


def open_repo(context: JobContext):
    return access.open_repo(context.installation)


def _level(context: JobContext, name: str) -> int:
    try:
        return context.installation.get(name)
    except SettingInvalid as exc:
        raise ScheduleInvalid(exc.detail, fix=exc.fix) from None


def _retention(context: JobContext):
    try:
        return retention.configured(context.installation)
    except SettingInvalid as exc:
        raise ScheduleInvalid(exc.detail, fix=exc.fix) from None


# ---- the jobs ----------------------------------------------------------------------------------

def create_backup(context: JobContext) -> dict:
    manifest = access.open_for_backup(context.installation).create_backup(context.target)
    return {"backup": manifest.id, "bytes_added": manifest.bytes_added}


def verify_latest(context: JobContext, level: int) -> list[dict]:
    repo = open_repo(context)
    out = [verify.verify_backup(repo, b, level, target=context.target).as_dict()
           for b in verify.select_backups(repo, all_latest=True)]
    failed = [v for v in out if not v["ok"]]
    if failed:
        raise VerificationFailed(f"{len(failed)} backup(s) failed verification; {failed[0]['backup'][:8]} at "
                                 f"L{failed[0]['failed_level']}: {failed[0]['failure']}")
    return out


def restore_test(context: JobContext, level: int) -> dict:
    repo = open_repo(context)
    backup_id = verify.select_backups(repo, source=context.target.display_url)[0]
    v = restore.restore_test(context.target, repo, backup_id, level=level)
    if not v.ok:
        raise VerificationFailed(f"the restore test of backup {v.backup[:8]} failed at L{v.failed.level}: "
                                 f"{v.failed.summary}")
    return v.as_dict()


def prune(context: JobContext, policy) -> dict:
    return open_repo(context).prune(policy, data_dir=context.data_dir).as_dict()


def scheduled_jobs(context: JobContext) -> list[Job]:
    verify_level = _level(context, "backup_verify_level")
    test_level = _level(context, "backup_restore_test_level")
    policy = _retention(context)
    return [
        Job("backup.create", lambda: create_backup(context), DEFAULT_SCHEDULES["backup.create"],
            "back up the ERP database"),
        Job("backup.verify", lambda: verify_latest(context, verify_level), DEFAULT_SCHEDULES["backup.verify"],
            f"verify the newest backups through L{verify_level}"),
        Job("backup.restore_test", lambda: restore_test(context, test_level),
            DEFAULT_SCHEDULES["backup.restore_test"], f"restore test of the newest backup (L{test_level})"),
        Job("backup.prune", (lambda: prune(context, policy)) if policy else (lambda: None),
            PRUNE_WHEN_RETENTION if policy else DEFAULT_SCHEDULES["backup.prune"],
            "apply the retention policy ([backup.retention])"),
    ]


__all__ = ["DEFAULT_SCHEDULES", "repo_url", "scheduled_jobs"]

