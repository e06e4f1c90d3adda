"""The jobs that run by themselves under `erpctl up`: probes, the invariants check, and whatever
other parts add (backups, verifications, drills), on an APScheduler BackgroundScheduler.

Adding jobs: a module listed in JOB_PROVIDERS exposes `scheduled_jobs(context) -> list[Job]`;
each Job has a stable id ("probe.readyz", "backup.create") and a default schedule. Operators
change a schedule without touching code, first match wins:

    1. the environment: ERPCTL_SCHEDULE_<ID>, the id in capitals with every other character
       replaced by "_" (ERPCTL_SCHEDULE_PROBE_READYZ=5s, ERPCTL_SCHEDULE_BACKUP_CREATE="cron:0 2 * * *");
    2. the [schedule] table of erpctl.toml in the data directory ("probe.readyz" = "30s");
    3. the job's default.

A schedule is an interval ("15s", "5m", "1h", "1d"), a crontab line ("cron:30 2 * * *", or just
the five fields; in the scheduler's time zone, [scheduler] timezone in erpctl.toml, default the
machine's), or "off". A bad one stops `erpctl up` before it serves, naming the job and the source.

Every run is timed and recorded with controlplane.results under "scheduler.<id>" (ok = the job
returned without raising; a probe that finds a problem still ran fine), with the job's failures so
far (failures), its last failure (last_failure_at, last_error) and, when it failed, the error. A run
whose result cannot be written (a full disk) counts as failed and is kept in memory (unrecorded()).
The exporter turns those into erpctl_job_last_success_timestamp_seconds{job},
erpctl_job_last_failure_timestamp_seconds{job} and erpctl_job_failures_total{job} (alert
ScheduledJobFailing), and erpctl_scheduler_job_last_success_timestamp_seconds{job} as before.

A job marked `retry` (the monitoring jobs: probes, the invariants check) is run again soon after a failed
run (it raised, or its `failed(result)` says so: a probe that found a problem) instead of only at its
next scheduled run: RETRY_FIRST_SECONDS after the first failure, then twice as long each time up to
RETRY_MAX_SECONDS, and never later than its next scheduled run, until a run succeeds. So a recovery is
seen within seconds of it (not a minute later for a probe, ten for the invariants), while a
lasting failure costs at most one extra run a RETRY_MAX_SECONDS. Every retry is a run like any other:
recorded, counted in the metrics, and a failing probe still fails (its alert still fires).
"""

from __future__ import annotations

import contextlib
import datetime as dt
import importlib
import logging
import os
import re
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from . import results
from .errors import DataDirProblem, SettingInvalid
from .installation import FILES, Installation, read_toml, schedule_env

log = logging.getLogger("controlplane.scheduler")

JOB_PROVIDERS = [
    "controlplane.monitoring.jobs",
    "controlplane.backup.schedule",
    "controlplane.drill_jobs",
    "controlplane.pitr.schedule",
]
CONFIG_FILE = FILES["config"].path
RESULT_PREFIX = "scheduler."
_INTERVAL = re.compile(r"^\s*(?:every\s+)?(\d+(?:\.\d+)?)\s*(s|sec|m|min|h|d)?\s*$", re.IGNORECASE)
_UNITS = {"s": 1, "sec": 1, "m": 60, "min": 60, "h": 3600, "d": 86400}
RETRY_FIRST_SECONDS = 5.0
RETRY_MAX_SECONDS = 60.0
RETRY_SUFFIX = "#retry"


class ScheduleInvalid(SettingInvalid):
    """A job schedule (or erpctl.toml) cannot be understood."""

    status, exit_code, title = 400, 2, "Invalid schedule"


@dataclass
class Job:
    """One scheduled job. `func()` does the work; raising marks the run as failed."""

    id: str
    func: Callable[[], Any]
    schedule: str
    description: str = ""
    run_at_start: bool = False  # interval jobs only: first run as soon as the scheduler starts
    retry: bool = False         # run again soon after a failed run (module docstring), not only at its schedule
    failed: Callable[[Any], bool] | None = None  # a returned value that is a failure too (a probe's finding)
    default_source: str = "default"  # where `schedule` came from when nothing overrides it


@dataclass
class JobContext:
    """What providers get to build their jobs from."""

    target: Any  # controlplane.config.Target
    erp_url: str
    settings: dict = field(default_factory=dict)  # erpctl.toml, parsed
    environ: dict = field(default_factory=lambda: dict(os.environ))

    @property
    def data_dir(self) -> Path:
        return Path(self.target.data_dir)

    @property
    def installation(self) -> Installation:
        """The settings of the jobs: this context's environment and erpctl.toml (the jobs run in the
        `erpctl up` that records its settings: what an earlier one recorded does not count)."""
        return Installation(self.data_dir, self.target.database_url, self.environ, {}, self.settings,
                            read_recorded=False)


def load_settings(data_dir) -> dict:
    """erpctl.toml in the data directory ({} when there is none)."""
    try:
        return read_toml(Path(data_dir) / CONFIG_FILE)
    except SettingInvalid as exc:
        raise ScheduleInvalid(exc.detail, fix=exc.fix) from None


def env_name(job_id: str) -> str:
    return schedule_env(job_id)


def interval_seconds(spec: str) -> float | None:
    """Seconds of an interval schedule, None for cron and off."""
    m = _INTERVAL.match(spec or "")
    return float(m.group(1)) * _UNITS[(m.group(2) or "s").lower()] if m else None


def parse_schedule(spec: str, timezone=None):
    """An APScheduler trigger for `spec`, or None for "off". Raises ValueError when unreadable."""
    # APScheduler is loaded by what schedules (erpctl up, status's schedule check), not by every command
    from apscheduler.triggers.cron import CronTrigger
    from apscheduler.triggers.interval import IntervalTrigger

    text = (spec or "").strip()
    if text.lower() in ("off", "disabled", "never", "none"):
        return None
    seconds = interval_seconds(text)
    if seconds is not None:
        if seconds <= 0:
            raise ValueError("an interval must be longer than 0 seconds")
        return IntervalTrigger(seconds=seconds, timezone=timezone)
    cron = text[5:].strip() if text.lower().startswith("cron:") else text
    if len(cron.split()) == 5:
        return CronTrigger.from_crontab(cron, timezone=timezone)
    raise ValueError("expected an interval (15s, 5m, 1h, 1d), a crontab line (cron:0 2 * * *) or off")


def schedule_of(job: Job, settings: dict, environ: dict) -> tuple[str, str]:
    """(schedule, where it came from) for a job."""
    spec, source = Installation(Path("."), "", environ, {}, settings).schedule(job.id, job.schedule)
    return spec, job.default_source if source == "default" else source


def collect_jobs(context: JobContext, providers: list[str] | None = None) -> list[Job]:
    jobs: list[Job] = []
    seen = set()
    for name in JOB_PROVIDERS if providers is None else providers:
        module = importlib.import_module(name)
        for job in module.scheduled_jobs(context):
            if job.id in seen:
                raise ScheduleInvalid(f"two jobs have the id {job.id!r} (the second from {name})",
                                      fix="Give every job its own id.")
            seen.add(job.id)
            jobs.append(job)
    return jobs


@dataclass
class Planned:
    job: Job
    schedule: str
    source: str
    trigger: Any  # None when off

    def as_dict(self) -> dict:
        return {"id": self.job.id, "schedule": self.schedule, "source": self.source,
                "enabled": self.trigger is not None, "description": self.job.description}


def plan(context: JobContext, providers: list[str] | None = None) -> list[Planned]:
    """Every job with its schedule resolved and checked (nothing runs)."""
    timezone = context.installation.get("scheduler_timezone")
    out = []
    for job in collect_jobs(context, providers):
        spec, source = schedule_of(job, context.settings, context.environ)
        try:
            trigger = parse_schedule(spec, timezone)
        except (ValueError, TypeError, LookupError) as exc:
            raise ScheduleInvalid(f"schedule {spec!r} of job {job.id!r} (from {source}) is not valid: {exc}",
                                  fix="Use an interval like 15s, 5m, 1h, a crontab line like 'cron:0 2 * * *', "
                                      "or off.", job=job.id) from None
        out.append(Planned(job, spec, source, trigger))
    return out


class Scheduler:
    """The BackgroundScheduler of one `erpctl up`. plan() at construction (so a bad schedule fails
    before serving), start() when serving, stop() when stopping."""

    def __init__(self, context: JobContext, providers: list[str] | None = None, max_workers: int = 4,
                 retry_first: float = RETRY_FIRST_SECONDS, retry_max: float = RETRY_MAX_SECONDS):
        self.context = context
        self.planned = plan(context, providers)
        self.max_workers = max_workers
        self.retry_first, self.retry_max = retry_first, retry_max
        self._scheduler = None
        self._stopping = threading.Event()
        self._lock = threading.Lock()
        self._unrecorded: dict[str, dict] = {}
        self._running: dict[str, threading.Lock] = {}   # a job's run in progress (its schedule's or its retry's)
        self._failures: dict[str, int] = {}             # a retried job's failed runs in a row

    def start(self) -> None:
        from apscheduler.executors.pool import ThreadPoolExecutor
        from apscheduler.schedulers.background import BackgroundScheduler
        from apscheduler.triggers.interval import IntervalTrigger

        # APScheduler logs every job added and every run at INFO; failures are logged here, with the job's id.
        logging.getLogger("apscheduler").setLevel(logging.WARNING)
        timezone = self.context.installation.get("scheduler_timezone")
        kw = {"timezone": timezone} if timezone else {}
        sched = BackgroundScheduler(executors={"default": ThreadPoolExecutor(self.max_workers)},
                                    job_defaults={"coalesce": True, "max_instances": 1,
                                                  "misfire_grace_time": 60}, **kw)
        for p in self.planned:
            if p.trigger is None:
                continue
            extra = {}
            if p.job.run_at_start and isinstance(p.trigger, IntervalTrigger):
                extra["next_run_time"] = dt.datetime.now(dt.timezone.utc)
            sched.add_job(self._run, p.trigger, args=[p.job], id=p.job.id, name=p.job.description or p.job.id,
                          **extra)
        sched.start()
        self._scheduler = sched
        log.info("scheduler started", extra={"jobs": [p.as_dict() for p in self.planned]})

    def _run(self, job: Job) -> None:
        if self._stopping.is_set():
            return
        with self._lock:
            running = self._running.setdefault(job.id, threading.Lock())
        if not running.acquire(blocking=False):
            return  # its retry and its scheduled run met: one is enough
        try:
            error, value, seconds = execute(job)
            if self._stopping.is_set():
                return  # stopping: the servers are closing, a failure now says nothing
            self._record(job.id, error, seconds)
        finally:
            running.release()
        if job.retry:
            self._plan_retry(job, error is not None or bool(job.failed and job.failed(value)))

    def _plan_retry(self, job: Job, failed: bool) -> None:
        """After a failed run, the next one soon (RETRY_FIRST_SECONDS, doubling to RETRY_MAX_SECONDS), unless
        the schedule runs it sooner; after a successful one, the schedule alone."""
        with self._lock:
            was = self._failures.get(job.id, 0)
            streak = self._failures[job.id] = was + 1 if failed else 0
        sched = self._scheduler
        if sched is None or self._stopping.is_set() or not (streak or was):
            return
        if not streak:  # recovered: a retry still planned has nothing left to find
            with contextlib.suppress(Exception):
                sched.remove_job(job.id + RETRY_SUFFIX)
            return
        delay = min(self.retry_first * 2 ** (streak - 1), self.retry_max)
        at = dt.datetime.now(dt.timezone.utc) + dt.timedelta(seconds=delay)
        scheduled = sched.get_job(job.id)
        if scheduled is not None and scheduled.next_run_time and scheduled.next_run_time <= at:
            return
        try:
            sched.add_job(self._run, "date", run_date=at, args=[job], id=job.id + RETRY_SUFFIX,
                          name=f"retry of {job.id}", replace_existing=True)
        except Exception:  # noqa: BLE001 - shutting down: the schedule resumes at the next start
            log.debug("no retry planned", extra={"job": job.id})

    def _record(self, job_id: str, error: str | None, seconds: float) -> None:
        """Record a run (record_run). A run whose result cannot be written (a full disk) is a failed run:
        kept in memory for the exporter (unrecorded())."""
        with self._lock:
            pending = dict(self._unrecorded.get(job_id) or {})
        try:
            record_run(self.context.data_dir, job_id, error, seconds, pending)
        except OSError as exc:
            log.error("the result of a scheduled job cannot be recorded", extra={"job": job_id, "error": str(exc)})
            with self._lock:
                entry = self._unrecorded.setdefault(job_id, {"failures": 0})
                entry.update(at=time.time(), failures=entry["failures"] + 1,
                             error=f"{error + '; ' if error else ''}its result could not be recorded: {exc}")
            return
        with self._lock:
            self._unrecorded.pop(job_id, None)

    def unrecorded(self) -> dict[str, dict]:
        """{job id: {"at", "failures", "error"}} for the jobs whose latest results could not be
        written: those runs count as failed (the exporter adds them to what results.json says)."""
        with self._lock:
            return {k: dict(v) for k, v in self._unrecorded.items()}

    def run_now(self, job_id: str) -> None:
        """Run one job in the calling thread (for operators and tests)."""
        for p in self.planned:
            if p.job.id == job_id:
                return self._run(p.job)
        raise KeyError(job_id)

    def jobs(self) -> list[dict]:
        out = []
        for p in self.planned:
            d = p.as_dict()
            aj = self._scheduler.get_job(p.job.id) if self._scheduler else None
            d["next_run"] = aj.next_run_time.isoformat() if aj is not None and aj.next_run_time else None
            out.append(d)
        return out

    def stop(self) -> None:
        """Stop scheduling; runs in progress finish in the background and record nothing."""
        self._stopping.set()
        if self._scheduler is not None:
            self._scheduler.shutdown(wait=False)
            self._scheduler = None
            log.info("scheduler stopped")


def execute(job: Job, log_failure: bool = True) -> tuple[str | None, Any, float]:
    """Run a job: (its error or None, what it returned, seconds). Never raises an Exception."""
    t0 = time.perf_counter()
    error = value = None
    try:
        value = job.func()
    except Exception as exc:  # noqa: BLE001 - a failing job must not stop the others
        error = f"{exc.__class__.__name__}: {exc}"
        if log_failure:
            log.exception("scheduled job failed", extra={"job": job.id})
    return error, value, round(time.perf_counter() - t0, 6)


def record_run(data_dir, job_id: str, error: str | None, seconds: float, pending: dict | None = None) -> None:
    """Record a run under scheduler.<id> with the job's failures so far and its last failure (`pending`: the
    failed runs that could not be recorded). Raises OSError when it cannot be written."""
    key, now = RESULT_PREFIX + job_id, time.time()
    pending = pending or {}
    try:
        prev = results.read(data_dir).get(key) or results.Result()
    except (OSError, ValueError, DataDirProblem):
        prev = results.Result()
    failures = int(prev.value("failures") or 0) + pending.get("failures", 0) + (error is not None)
    last_failure = now if error else pending.get("at") or prev.value("last_failure_at")
    fields = {"duration": seconds, "failures": failures, "last_failure_at": last_failure,
              "last_error": error or pending.get("error") or prev.value("last_error")}
    if error:
        fields["error"] = error
    results.record(data_dir, key, error is None, **fields)


def job(id: str, func: Callable[[], Any], schedule: str, description: str = "", **kw) -> Job:
    """Shorthand for providers."""
    return Job(id, func, schedule, description, **kw)


__all__ = ["JOB_PROVIDERS", "Job", "JobContext", "Scheduler", "ScheduleInvalid", "collect_jobs", "plan",
           "load_settings", "parse_schedule", "env_name", "interval_seconds", "job", "execute", "record_run"]
