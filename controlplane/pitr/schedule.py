"""The scheduler's jobs (controlplane/scheduler.py) for point-in-time recovery and the standby, under
`erpctl up`; present only where they apply:

    pitr.backup               cron:15 1 * * 0     a full pgBackRest backup      } when 'erpctl pitr setup'
    pitr.backup.diff          cron:15 1 * * 1-6   a differential one            } was run on this data
    pitr.verify               cron:0 5 * * 0      'erpctl pitr verify' (L1-L4)  } directory
    fleet.replication_check   1m                  'erpctl fleet failover --check': the standby's lag
                                                  recorded, the figure a failover reports when the
                                                  primary is already gone (when the inventory has a
                                                  primary and a standby database host)

Schedules are changed like every job's (ERPCTL_SCHEDULE_PITR_BACKUP, [schedule] in erpctl.toml).
"""

from __future__ import annotations

from .. import layout
from ..scheduler import Job, JobContext

DEFAULT_SCHEDULES = {
    "pitr.backup": "cron:15 1 * * 0",
    "pitr.backup.diff": "cron:15 1 * * 1-6",
    "pitr.verify": "cron:0 5 * * 0",
    "fleet.replication_check": "1m",
}


def _pitr_jobs(context: JobContext) -> list[Job]:
    from ..backup.verify import default_field_key
    from . import pgbackrest, restore
    from .config import load

    def backup(kind: str):
        return lambda: pgbackrest.backup(load(context.data_dir), context.data_dir, kind)

    def verify():
        return restore.restore(context.data_dir, load(context.data_dir), field_key=default_field_key(context.target))

    return [Job("pitr.backup", backup("full"), DEFAULT_SCHEDULES["pitr.backup"], "full pgBackRest backup"),
            Job("pitr.backup.diff", backup("diff"), DEFAULT_SCHEDULES["pitr.backup.diff"],
                "differential pgBackRest backup"),
            Job("pitr.verify", verify, DEFAULT_SCHEDULES["pitr.verify"],
                "restore the newest backup and the archive into a scratch cluster, L1-L4")]


def _has_standby(context: JobContext) -> bool:
    from ..remote import inventory

    try:
        hosts = inventory.load(context.installation.get("fleet_inventory"))
    except Exception:  # noqa: BLE001 - no usable inventory: no standby to watch
        return False
    roles = {h.vars.get("pg_role") for h in hosts if "database" in h.groups}
    return {"primary", "standby"} <= roles


def scheduled_jobs(context: JobContext) -> list[Job]:
    jobs = _pitr_jobs(context) if layout.path(context.data_dir, "pitr").exists() else []
    if _has_standby(context):
        from . import failover

        jobs.append(Job("fleet.replication_check", lambda: failover.check(context.installation),
                        DEFAULT_SCHEDULES["fleet.replication_check"], "measure and record the standby's lag"))
    return jobs
