"""Monitoring under `erpctl up`: the probe user and the webhook token (created on first start), the
runtime file `erpctl status` finds the ERP by, and the scheduler with its jobs."""

from __future__ import annotations

import datetime as dt
import json
import logging
import os
from pathlib import Path

from .. import scheduler
from . import credentials

log = logging.getLogger("controlplane.monitoring")

RUNTIME_FILE = "runtime.json"


def read_runtime(data_dir) -> dict:
    """What the last `erpctl up` on this data directory wrote ({} if none)."""
    try:
        return json.loads((Path(data_dir) / RUNTIME_FILE).read_text())
    except (FileNotFoundError, ValueError):
        return {}


def _write_runtime(data_dir, data: dict) -> None:
    path = Path(data_dir) / RUNTIME_FILE
    tmp = path.with_name(f".{RUNTIME_FILE}.{os.getpid()}.tmp")
    tmp.write_text(json.dumps(data, indent=1))
    os.replace(tmp, path)


class Monitoring:
    """Construct (schedules are checked: a bad one fails before serving), prepare(db), start(),
    and always stop()."""

    def __init__(self, target, erp_url: str, providers: list[str] | None = None, environ: dict | None = None):
        self.target = target
        self.erp_url = erp_url
        settings = scheduler.load_settings(target.data_dir)
        self.context = scheduler.JobContext(target, erp_url, settings,
                                            dict(os.environ) if environ is None else environ)
        self.scheduler = scheduler.Scheduler(self.context, providers)
        self._runtime: dict | None = None

    def job_ids(self) -> list[str]:
        return [p.job.id for p in self.scheduler.planned]

    def prepare(self, db, ops_url: str) -> dict:
        """The probe user and the webhook token; what `erpctl up` reports about monitoring."""
        data_dir = self.target.data_dir
        user = credentials.ensure_probe_user(db, data_dir)
        token = credentials.ensure_webhook_token(data_dir)
        ops = ops_url.rstrip("/")
        self._runtime = {"pid": os.getpid(), "erp_url": self.erp_url, "ops_url": ops + "/",
                         "metrics_url": ops + "/metrics", "alert_webhook_url": ops + "/alerts/webhook"}
        return {"metrics_url": ops + "/metrics", "alert_webhook_url": ops + "/alerts/webhook",
                "alert_webhook_token_file": str(token), "probe_user": user["username"],
                "jobs": [p.as_dict() for p in self.scheduler.planned]}

    def start(self) -> None:
        if self._runtime is not None:
            self._runtime.update(running=True, started_at=dt.datetime.now(dt.timezone.utc).isoformat())
            _write_runtime(self.target.data_dir, self._runtime)
        self.scheduler.start()

    def stop(self) -> None:
        self.scheduler.stop()
        if self._runtime is not None and self._runtime.get("running"):
            self._runtime.update(running=False, stopped_at=dt.datetime.now(dt.timezone.utc).isoformat())
            try:
                _write_runtime(self.target.data_dir, self._runtime)
            except OSError:
                log.warning("cannot update the runtime file", exc_info=True)
