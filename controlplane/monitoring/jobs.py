"""The monitoring jobs of the scheduler: the five probes and the invariants check.

Thresholds are the installation's settings (controlplane/installation.py): the environment, else
the [probes] table of erpctl.toml, else the defaults:

    ERPCTL_PROBE_BACKUP_MAX_AGE_SECONDS   backup_max_age_seconds   26 h
    ERPCTL_PROBE_DISK_MIN_FREE_BYTES      disk_min_free_bytes      1 GiB
    ERPCTL_PROBE_HTTP_TIMEOUT_SECONDS     http_timeout_seconds     5

`erpctl up` records the values it uses in runtime.json, so `erpctl status` judges by the same ones.
Every one of these jobs is retried soon after a failed run (controlplane/scheduler.py: a probe that found
a problem, an invariants check that could not run), so a recovery shows within seconds.
"""

from __future__ import annotations

import logging

from .. import erp_admin
from ..errors import SettingInvalid
from ..scheduler import Job, JobContext, ScheduleInvalid
from . import probes
from .credentials import probe_login

log = logging.getLogger("controlplane.monitoring")

INVARIANTS_KEY = erp_admin.INVARIANTS_KEY
DEFAULT_SCHEDULES = {
    "probe.readyz": "15s",
    "probe.business": "1m",
    "probe.db_integrity": "5m",
    "probe.backup_freshness": "1m",
    "probe.disk_headroom": "1m",
    "invariants": "10m",  # a 600 MB database checks in ~10 s of CPU: under 2 % of a core
}
THRESHOLDS = ("backup_max_age_seconds", "disk_min_free_bytes", "http_timeout_seconds")  # [probes] keys


def threshold(name: str, installation) -> float:
    """A probe threshold of the installation (setting probe_<name>); exit 2 naming a bad value."""
    try:
        return installation.get("probe_" + name)
    except SettingInvalid as exc:
        raise ScheduleInvalid(exc.detail, fix=exc.fix) from None


def make_probes(context: JobContext) -> list:
    inst = context.installation
    timeout = threshold("http_timeout_seconds", inst)
    return [
        probes.ReadyzProbe(context.erp_url, timeout=timeout),
        probes.BusinessProbe(context.erp_url, lambda: probe_login(context.data_dir), timeout=max(timeout, 10)),
        probes.DbIntegrityProbe(context.target.database_url),
        probes.BackupFreshnessProbe(context.data_dir, threshold("backup_max_age_seconds", inst)),
        probes.DiskHeadroomProbe(context.data_dir, threshold("disk_min_free_bytes", inst)),
    ]


def check_invariants(context: JobContext) -> dict:
    """erp_core.invariants.check_all on the ERP's database; the count is the exporter's
    erpctl_invariant_violations."""
    result = erp_admin.check(context.target)
    erp_admin.record_check(context.target, result)
    violations = result["violations"]
    if violations:
        log.warning("invariant violations", extra={"count": len(violations), "first": violations[:3]})
    return result


def scheduled_jobs(context: JobContext) -> list[Job]:
    jobs = []
    for probe in make_probes(context):
        jid = "probe." + probe.name
        jobs.append(Job(jid, lambda p=probe: probes.run(p, context.data_dir), DEFAULT_SCHEDULES[jid],
                        f"probe {probe.name}", run_at_start=True, retry=True, failed=lambda r: not r.ok))
    jobs.append(Job(INVARIANTS_KEY, lambda: check_invariants(context), DEFAULT_SCHEDULES[INVARIANTS_KEY],
                    "business invariants (erp_core.invariants)", run_at_start=True, retry=True))
    return jobs
