"""Monitoring under `erpctl up`: the probe user and the webhook token (created on first start), the
runtime record `erpctl status` finds the ERP and the probes' thresholds by, and the scheduler with
its jobs."""

from __future__ import annotations

import datetime as dt
import logging
import os

from .. import procs, results, scheduler
from ..installation import Installation, RuntimeRecord
from . import credentials

log = logging.getLogger("controlplane.monitoring")


def read_runtime(data_dir) -> dict:
    """What the last `erpctl up` on this data directory recorded ({} if none)."""
    record = Installation.open(data_dir, strict=False).runtime()
    return record.as_dict() if record.pid else {}


class Monitoring:
    """Construct (schedules are checked: a bad one fails before serving), prepare(db), start(),
    and always stop()."""

    def __init__(self, target, erp_url: str, providers: list[str] | None = None, environ: dict | None = None):
        self.target = target
        self.erp_url = erp_url
        inst = Installation.of(target) if environ is None else Installation.of(target, environ=environ)
        self.installation = inst
        self.context = scheduler.JobContext(target, erp_url, dict(inst.toml), dict(inst.environ))
        self.scheduler = scheduler.Scheduler(self.context, providers)
        self._runtime: RuntimeRecord | None = None

    def job_ids(self) -> list[str]:
        return [p.job.id for p in self.scheduler.planned]

    def prepare(self, db, ops_url: str, serving: dict | None = None) -> dict:
        """The probe user and the webhook token; what `erpctl up` reports about monitoring. `serving`:
        how this `erpctl up` serves (host, erp_port, ops_port, database, database_backend), recorded
        in runtime.json with this process's identity for `erpctl stop` and `erpctl restart`."""
        data_dir = self.target.data_dir
        try:
            results.ensure_created(data_dir)
        except OSError:
            log.warning("cannot record the installation's creation (the backup alerts' grace)", exc_info=True)
        user = credentials.ensure_probe_user(db, data_dir)
        token = credentials.ensure_webhook_token(data_dir)
        ops = ops_url.rstrip("/")
        pid = os.getpid()
        self._runtime = RuntimeRecord(pid=pid, pid_start=procs.start_ticks(pid), data_dir=str(data_dir),
                                      unit=procs.systemd_unit(pid, dict(os.environ)), **(serving or {}),
                                      erp_url=self.erp_url, ops_url=ops + "/",
                                      metrics_url=ops + "/metrics", alert_webhook_url=ops + "/alerts/webhook",
                                      settings=self.context.installation.recorded_settings(),
                                      jobs=[p.as_dict() for p in self.scheduler.planned])
        # Recorded at once (not running yet): `erpctl stop` finds an erpctl up that is still starting
        # (seeding demo data can take a minute), and `erpctl restart` knows how it was started.
        self.installation.write_runtime(self._runtime)
        return {"metrics_url": ops + "/metrics", "alert_webhook_url": ops + "/alerts/webhook",
                "alert_webhook_token_file": str(token), "probe_user": user["username"],
                "jobs": self._runtime.jobs}

    def start(self) -> None:
        if self._runtime is not None:
            self._runtime.running, self._runtime.started_at = True, _now()
            self.installation.write_runtime(self._runtime)
        self.scheduler.start()

    def stop(self) -> None:
        self.scheduler.stop()
        if self._runtime is not None and self._runtime.running:
            self._runtime.running, self._runtime.stopped_at = False, _now()
            try:
                self.installation.write_runtime(self._runtime)
            except OSError:
                log.warning("cannot update the runtime file", exc_info=True)


def _now() -> str:
    return dt.datetime.now(dt.timezone.utc).isoformat()
