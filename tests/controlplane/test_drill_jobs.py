"""Scheduled drills: a job per scenario with a schedule, the blackout decision, the command it runs and what
it records (the real erpctl as the child: a scenario that does not exist exits non-zero)."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path

import pytest

from controlplane import layout, results, scheduler
from controlplane.config import Target
from controlplane.drill_jobs import JOB_PREFIX, RESULT_PREFIX, ScheduledDrillFailed, command
from controlplane.scheduler import JobContext

TOML = """
[drill]
blackout = ["month-end", "payroll=day:25"]
[drill.schedule]
erp-killed = "cron:0 3 * * 2"
no-such-scenario = "1d"
"""


def _context(tmp_path: Path, toml: str = TOML, environ=None) -> JobContext:
    (tmp_path / "erpctl.toml").write_text(toml)
    return JobContext(Target(tmp_path, f"sqlite:///{tmp_path}/erp.sqlite3"), "http://127.0.0.1:1",
                      settings=scheduler.load_settings(tmp_path), environ=dict(environ or {}))


def _planned(ctx) -> dict:
    return {p.job.id: p for p in scheduler.plan(ctx, ["controlplane.drill_jobs"])}


def test_a_job_per_scheduled_scenario_with_its_schedule_and_source(tmp_path):
    planned = _planned(_context(tmp_path, environ={"ERPCTL_SCHEDULE_DRILL_NO_SUCH_SCENARIO": "off"}))
    assert sorted(planned) == ["drill.erp-killed", "drill.no-such-scenario"]
    killed = planned["drill.erp-killed"].as_dict()
    assert (killed["schedule"], killed["source"], killed["enabled"]) == \
        ("cron:0 3 * * 2", "erpctl.toml [drill.schedule] 'erp-killed'", True)
    off = planned["drill.no-such-scenario"].as_dict()
    assert (off["enabled"], off["source"]) == (False, "environment ERPCTL_SCHEDULE_DRILL_NO_SUCH_SCENARIO")
    assert command("erp-killed")[1:] == ["drill", "run", "erp-killed", "--json"]
    assert Path(command("erp-killed")[0]).name == "erpctl"


@pytest.mark.parametrize("toml, why", [
    ('[drill]\nblackout = ["fortnightly"]\n[drill.schedule]\nerp-killed = "1d"\n', "not a blackout window"),
    ('[drill.schedule]\n"Erp Killed" = "1d"\n', "not a scenario name"),
    ('[drill.schedule]\nerp-killed = "sometimes"\n', "is not valid"),
])
def test_a_bad_schedule_or_window_stops_erpctl_up_before_it_serves(tmp_path, toml, why):
    with pytest.raises(scheduler.ScheduleInvalid) as exc:
        scheduler.plan(_context(tmp_path, toml), ["controlplane.drill_jobs"])
    assert why in exc.value.detail


def test_a_drill_due_in_a_blackout_is_skipped_and_recorded_with_its_reason(tmp_path):
    job = _planned(_context(tmp_path))["drill.erp-killed"].job
    out = job.func(dt.datetime(2026, 11, 25, 3, 0))  # the 25th: payroll
    reason = "2026-11-25 is in the blackout window payroll (day:25)"
    assert (out["outcome"], out["reason"], out["blackout"]) == ("skipped", reason, "payroll=day:25")
    (rec,) = [json.loads(x) for x in layout.path(tmp_path, "evidence").read_text().splitlines()]
    assert (rec["kind"], rec["outcome"], rec["data"]["reason"]) == ("drill.skipped", "skipped", reason)
    assert rec["data"]["command"][1:] == ["drill", "run", "erp-killed", "--json"]
    result = results.read(tmp_path)[RESULT_PREFIX + "erp-killed"]
    assert result.ok and result.value("outcome") == "skipped" and result.value("reason") == reason


def test_a_due_drill_outside_blackouts_runs_erpctl_drill_run_and_a_failure_fails_the_job(tmp_path):
    """The child is the real erpctl: a scenario that does not exist exits non-zero, so the job fails (the
    scheduler records it: ScheduledJobFailing) and the outcome is recorded with the exit code."""
    ctx = _context(tmp_path)
    job = _planned(ctx)[JOB_PREFIX + "no-such-scenario"].job
    with pytest.raises(ScheduledDrillFailed):
        job.func(dt.datetime(2026, 11, 24, 3, 0))
    result = results.read(tmp_path)[RESULT_PREFIX + "no-such-scenario"]
    assert not result.ok and result.value("outcome") == "failed" and result.value("exit_code") not in (0, None)
    assert result.value("command")[1:] == ["drill", "run", "no-such-scenario", "--json"]
