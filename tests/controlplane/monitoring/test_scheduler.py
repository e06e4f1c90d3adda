"""The scheduler: schedules from defaults, erpctl.toml and the environment; providers; runs recorded."""

from __future__ import annotations

import threading
import time

import pytest
from apscheduler.triggers.cron import CronTrigger
from apscheduler.triggers.interval import IntervalTrigger

from controlplane import results, scheduler
from controlplane.config import Target
from controlplane.scheduler import Job, JobContext, ScheduleInvalid

RUNS: list[str] = []
EVENTS: dict[str, threading.Event] = {}


def scheduled_jobs(context):
    """This module is a job provider too (the tests pass providers=[__name__])."""
    def work(name):
        RUNS.append(name)
        EVENTS.setdefault(name, threading.Event()).set()

    def fail():
        EVENTS.setdefault("fails", threading.Event()).set()
        raise RuntimeError("the store is unreachable")

    return [
        Job("test.fast", lambda: work("fast"), "1s", "a fast job", run_at_start=True),
        Job("test.fails", fail, "1s", "a failing job", run_at_start=True),
        Job("test.nightly", lambda: work("nightly"), "cron:0 2 * * *", "a nightly job"),
        Job("test.off", lambda: work("off"), "off"),
    ]


def context(tmp_path, environ=None, settings=None):
    return JobContext(Target(tmp_path, f"sqlite:///{tmp_path}/erp.sqlite3"), "http://127.0.0.1:1",
                      settings or {}, environ or {})


@pytest.mark.parametrize("spec,kind,seconds", [
    ("15s", IntervalTrigger, 15), ("5m", IntervalTrigger, 300), ("1h", IntervalTrigger, 3600),
    ("2d", IntervalTrigger, 172800), ("every 30 s", IntervalTrigger, 30), ("0.5s", IntervalTrigger, 0.5),
    ("cron:30 2 * * *", CronTrigger, None), ("*/5 * * * 1-5", CronTrigger, None),
])
def test_parse_schedule(spec, kind, seconds):
    trigger = scheduler.parse_schedule(spec, "UTC")
    assert isinstance(trigger, kind)
    assert scheduler.interval_seconds(spec) == seconds


@pytest.mark.parametrize("spec", ["often", "0s", "cron:61 * * * *", "cron:* * *", ""])
def test_parse_schedule_refuses(spec):
    with pytest.raises(ValueError):
        scheduler.parse_schedule(spec, "UTC")


def test_off_disables():
    assert scheduler.parse_schedule("off") is None and scheduler.parse_schedule("Disabled") is None


def test_schedule_sources_environment_then_file_then_default(tmp_path):
    (tmp_path / scheduler.CONFIG_FILE).write_text('[schedule]\n"test.fast" = "10m"\n"test.nightly" = "off"\n')
    settings = scheduler.load_settings(tmp_path)
    ctx = context(tmp_path, {"ERPCTL_SCHEDULE_TEST_FAST": "7s"}, settings)
    planned = {p.job.id: p for p in scheduler.plan(ctx, [__name__])}
    assert planned["test.fast"].schedule == "7s"
    assert planned["test.fast"].source == "environment ERPCTL_SCHEDULE_TEST_FAST"
    assert planned["test.nightly"].trigger is None and "erpctl.toml" in planned["test.nightly"].source
    assert planned["test.fails"].source == "default"
    assert scheduler.env_name("probe.db_integrity") == "ERPCTL_SCHEDULE_PROBE_DB_INTEGRITY"


def test_bad_schedules_are_refused_with_the_job_and_source(tmp_path):
    with pytest.raises(ScheduleInvalid) as exc:
        scheduler.plan(context(tmp_path, {"ERPCTL_SCHEDULE_TEST_FAST": "sometimes"}), [__name__])
    assert "test.fast" in exc.value.detail and "ERPCTL_SCHEDULE_TEST_FAST" in exc.value.detail
    assert exc.value.exit_code == 2
    (tmp_path / scheduler.CONFIG_FILE).write_text("[schedule\n")
    with pytest.raises(ScheduleInvalid, match="cannot read"):
        scheduler.load_settings(tmp_path)


def test_default_providers_give_the_monitoring_jobs(tmp_path):
    ids = [p.job.id for p in scheduler.plan(context(tmp_path))]
    assert ids[:6] == ["probe.readyz", "probe.business", "probe.db_integrity", "probe.backup_freshness",
                   "probe.disk_headroom", "invariants"]
    assert "controlplane.monitoring.jobs" in scheduler.JOB_PROVIDERS


def test_duplicate_job_ids_are_refused(tmp_path):
    with pytest.raises(ScheduleInvalid, match="two jobs"):
        scheduler.collect_jobs(context(tmp_path), [__name__, __name__])


def test_scheduler_runs_jobs_and_records_each_run(tmp_path):
    RUNS.clear()
    EVENTS.clear()
    s = scheduler.Scheduler(context(tmp_path), [__name__])
    s.start()
    try:
        EVENTS.setdefault("fast", threading.Event()).wait(10)
        EVENTS.setdefault("fails", threading.Event()).wait(10)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            r = results.read(tmp_path)
            if "scheduler.test.fast" in r and "scheduler.test.fails" in r and RUNS.count("fast") >= 2:
                break
            time.sleep(0.1)
        jobs = {j["id"]: j for j in s.jobs()}
    finally:
        s.stop()
    r = results.read(tmp_path)
    assert r["scheduler.test.fast"].ok and "scheduler.test.fast.last_success" in r
    assert r["scheduler.test.fails"].ok is False
    assert r["scheduler.test.fails"].value("error") == "RuntimeError: the store is unreachable"
    assert RUNS.count("fast") >= 2  # the failing job did not stop the others
    assert "nightly" not in RUNS and "off" not in RUNS
    assert jobs["test.nightly"]["next_run"] and "02:00:00" in jobs["test.nightly"]["next_run"]
    assert jobs["test.off"]["enabled"] is False and jobs["test.off"]["next_run"] is None

    # After stop, nothing runs and nothing is recorded.
    count = RUNS.count("fast")
    time.sleep(1.5)
    assert RUNS.count("fast") == count


def test_run_now(tmp_path):
    s = scheduler.Scheduler(context(tmp_path), [__name__])
    s.run_now("test.off")
    assert results.read(tmp_path)["scheduler.test.off"].ok
    with pytest.raises(KeyError):
        s.run_now("nope")


def test_a_failed_run_is_retried_soon_until_it_succeeds(tmp_path):
    """Hourly jobs marked retry: one raising twice, one whose result says it failed once; each is run again
    after the first retry delay, then twice that, and no more once it succeeds. A job not marked retry waits
    for its schedule. Every run is recorded: the failures stay counted after the success."""
    calls: dict[str, list[float]] = {"flaky": [], "finding": [], "plain": []}

    def flaky():
        calls["flaky"].append(time.monotonic())
        if len(calls["flaky"]) <= 2:
            raise RuntimeError("the database is unreachable")

    def finding():
        calls["finding"].append(time.monotonic())
        return {"ok": len(calls["finding"]) > 1}

    def plain():
        calls["plain"].append(time.monotonic())
        raise RuntimeError("always")

    s = scheduler.Scheduler(context(tmp_path), [__name__], retry_first=0.3, retry_max=0.6)
    s.planned = [scheduler.Planned(j, "1h", "test", scheduler.parse_schedule("1h")) for j in (
        Job("flaky", flaky, "1h", run_at_start=True, retry=True),
        Job("finding", finding, "1h", run_at_start=True, retry=True, failed=lambda r: not r["ok"]),
        Job("plain", plain, "1h", run_at_start=True))]
    s.start()
    try:
        deadline = time.monotonic() + 15
        while (len(calls["flaky"]) < 3 or len(calls["finding"]) < 2) and time.monotonic() < deadline:
            time.sleep(0.05)
        time.sleep(1.5)  # nothing more: they succeeded, and the plain job waits an hour
    finally:
        s.stop()
    assert [len(c) for c in calls.values()] == [3, 2, 1], calls
    gaps = [b - a for a, b in zip(calls["flaky"], calls["flaky"][1:])]
    assert 0.25 <= gaps[0] < 5 and 0.55 <= gaps[1] < 5, gaps  # 0.3 s, then twice that
    r = results.read(tmp_path)
    assert r["scheduler.flaky"].ok and r["scheduler.flaky"].value("failures") == 2
    assert r["scheduler.flaky"].value("last_error") == "RuntimeError: the database is unreachable"
    assert r["scheduler.plain"].ok is False and r["scheduler.plain"].value("failures") == 1


def test_a_retry_never_comes_after_the_next_scheduled_run(tmp_path):
    """A job failing every run, every 0.4 s, with a first retry delay of 5 s: it runs on its schedule alone."""
    calls: list[float] = []

    def fails():
        calls.append(time.monotonic())
        raise RuntimeError("down")

    s = scheduler.Scheduler(context(tmp_path), [__name__], retry_first=5, retry_max=5)
    s.planned = [scheduler.Planned(Job("fails", fails, "0.4s", run_at_start=True, retry=True), "0.4s", "test",
                                   scheduler.parse_schedule("0.4s"))]
    s.start()
    try:
        time.sleep(1.5)
        planned = [j.id for j in s._scheduler.get_jobs()]
    finally:
        s.stop()
    assert planned == ["fails"] and 2 <= len(calls) <= 6, (planned, calls)
