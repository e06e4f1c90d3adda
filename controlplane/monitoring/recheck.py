"""What `erpctl status` checks again before it answers: the monitoring jobs (the probes, the invariants
check) whose latest recorded run failed. A failure recorded by the scheduler was true at that run (up to
a minute ago for a probe, ten for the invariants check, less while it retries); the on-call engineer
who has just fixed it asks whether it is still failing. So each such job runs again now, in the status's
process, with the installation's settings (those the running `erpctl up` recorded), and is recorded as
the scheduler records a run (controlplane/scheduler.record_run): a job still failing stays flagged with
its fresh error, one that recovered is no longer flagged, and the metrics (and the alerts on them) follow.
Jobs that recorded no failure are not run (`erpctl status --no-recheck` runs none)."""

from __future__ import annotations

import logging
from concurrent.futures import ThreadPoolExecutor

from .. import results, scheduler
from ..config import Target
from ..errors import SettingInvalid
from . import jobs, probes

log = logging.getLogger("controlplane.monitoring")


class StatusContext(scheduler.JobContext):
    """The jobs' context in `erpctl status`: its Installation (what `erpctl up` recorded counts)."""

    def __init__(self, inst, erp_url: str):
        super().__init__(Target(inst.data_dir, inst.database_url), erp_url, {}, dict(inst.environ))
        self._inst = inst

    @property
    def installation(self):
        return self._inst


def failing(recorded: dict) -> list[str]:
    """The monitoring jobs whose latest run failed: it raised (scheduler.<id>), or the probe it ran failed
    (probe.<name>, which is also the probe job's id)."""
    out = []
    for job_id in jobs.DEFAULT_SCHEDULES:
        ran = recorded.get(scheduler.RESULT_PREFIX + job_id)
        probe = recorded.get(job_id) if job_id.startswith("probe.") else None
        if (ran and not ran.ok) or (probe and not probe.ok):
            out.append(job_id)
    return out


def recheck(inst, erp_url: str) -> dict[str, bool]:
    """Run again every monitoring job whose latest run failed, at the same time; {job id: it succeeded}.
    Nothing runs when the settings the jobs need are invalid (the status flags those)."""
    wanted = failing(results.read(inst.data_dir))
    if not wanted:
        return {}
    try:
        by_id = {j.id: j for j in jobs.scheduled_jobs(StatusContext(inst, erp_url))}
    except SettingInvalid as exc:
        log.warning("no recheck: a setting is invalid", extra={"error": str(exc)})
        return {}
    quiet = probes.log  # the status shows each result: no log line of it too
    level, quiet.level = quiet.level, logging.ERROR
    try:
        with ThreadPoolExecutor(len(wanted)) as pool:
            return dict(zip(wanted, pool.map(lambda job_id: _run(inst.data_dir, by_id[job_id]), wanted)))
    finally:
        quiet.setLevel(level)


def _run(data_dir, job: scheduler.Job) -> bool:
    error, value, seconds = scheduler.execute(job, log_failure=False)
    try:
        scheduler.record_run(data_dir, job.id, error, seconds)
    except OSError as exc:  # a full disk: the status still says what it found
        log.warning("a recheck could not be recorded", extra={"job": job.id, "error": str(exc)})
    return error is None and not (job.failed and job.failed(value))
