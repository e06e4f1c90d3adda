"""The scheduled drills: one scheduler job per scenario given a schedule, `drill.<scenario>`.

    [drill]
    blackout = ["month-end", "payroll=day:25"]     # controlplane/blackout.py
    [drill.schedule]
    erp-killed = "cron:0 3 * * 2"                  # any schedule of controlplane/scheduler.py
    disk-full = "cron:0 4 8 * *"

A scenario without a schedule has no job. ERPCTL_SCHEDULE_DRILL_ERP_KILLED (or [schedule]
"drill.erp-killed") overrides a schedule like every job's. When the job is due it decides first, on the
scheduler's date (its time zone): inside a blackout window the drill is skipped, and the skip is recorded
with its reason (evidence `drill.skipped`, result `drill.scheduled.<scenario>`); otherwise it runs
`erpctl drill run SCENARIO --json` as a child process (stdin closed, the installation's data directory
and database in its environment) and records the outcome the same way. A drill that exits non-zero makes
the job fail (ScheduledJobFailing); the drill's own record says why (DrillFailed).
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import re
import subprocess
from dataclasses import dataclass
from zoneinfo import ZoneInfo

from . import blackout, results
from .errors import ControlPlaneError, SettingInvalid
from .evidence import EvidenceLog
from .runbook.environment import erpctl_program
from .scheduler import Job, JobContext, ScheduleInvalid

log = logging.getLogger("controlplane.drills.schedule")

JOB_PREFIX = "drill."
RESULT_PREFIX = "drill.scheduled."
SCENARIO = re.compile(r"^[a-z0-9]+(-[a-z0-9]+)*$")
OUTPUT_TAIL = 4000


class ScheduledDrillFailed(ControlPlaneError):
    """A scheduled drill exited non-zero."""

    status, exit_code, title = 500, 10, "Scheduled drill failed"


def drill_schedules(inst) -> dict[str, str]:
    """{scenario: schedule} of erpctl.toml [drill.schedule]; a bad scenario name is refused."""
    table = inst.section("drill.schedule")
    for name in table:
        if not SCENARIO.match(str(name)):
            raise ScheduleInvalid(f"[drill.schedule] {name!r} is not a scenario name (kebab-case, as "
                                  "runbooks/drills/<name>.yaml)", fix="Name the scenario as its file is named.")
    return {str(k): str(v) for k, v in table.items()}


def blackouts(inst) -> tuple[blackout.Blackout, ...]:
    try:
        return inst.get("drill_blackout")
    except SettingInvalid as exc:
        raise ScheduleInvalid(exc.detail, fix=exc.fix) from None


def command(scenario: str) -> list[str]:
    """The command line of a scheduled drill."""
    return [erpctl_program(), "drill", "run", scenario, "--json"]


@dataclass
class DrillJob:
    """What runs when `drill.<scenario>` is due (the job's func)."""

    context: JobContext
    scenario: str
    windows: tuple
    timeout: float

    def __call__(self, now: dt.datetime | None = None) -> dict:
        tz = self.context.installation.get("scheduler_timezone")
        now = now or dt.datetime.now(_zone(tz))
        window = blackout.blocking(now.date(), self.windows)
        if window is not None:
            return self.skip(window, now)
        return self.run()

    def skip(self, window: blackout.Blackout, now: dt.datetime) -> dict:
        why = blackout.reason(window, now.date())
        out = {"scenario": self.scenario, "outcome": "skipped", "reason": why, "blackout": str(window),
               "command": command(self.scenario)}
        EvidenceLog(self.context.data_dir).append("drill.skipped", out, outcome="skipped")
        results.record(self.context.data_dir, RESULT_PREFIX + self.scenario, True, **out)
        log.info("scheduled drill skipped", extra=out)
        return out

    def run(self) -> dict:
        argv = command(self.scenario)
        env = {**self.context.environ, "ERPCTL_DATA_DIR": str(self.context.data_dir),
               "ERPCTL_DATABASE_URL": self.context.target.database_url}
        try:
            p = subprocess.run(argv, stdin=subprocess.DEVNULL, capture_output=True, text=True, env=env,
                               timeout=self.timeout, check=False)
            code, stdout, stderr = p.returncode, p.stdout, p.stderr
        except subprocess.TimeoutExpired as exc:
            code, stdout, stderr = None, _text(exc.stdout), _text(exc.stderr) + f"\ntimed out after {self.timeout} s"
        last = _last_json(stdout)
        out = {"scenario": self.scenario, "outcome": "ran" if code == 0 else "failed", "exit_code": code,
               "command": argv, "drill": last.get("id") or (last.get("drill") or {}).get("id"),
               "state": last.get("state") or last.get("status")}
        results.record(self.context.data_dir, RESULT_PREFIX + self.scenario, code == 0, **out)
        if code != 0:
            raise ScheduledDrillFailed(f"the drill {self.scenario} exited {code}: {stderr.strip()[-OUTPUT_TAIL:]}",
                                       fix="Its record and report say why (erpctl drill list).")
        return out


def _text(data) -> str:
    return data.decode(errors="replace") if isinstance(data, bytes) else data or ""


def _last_json(stdout: str) -> dict:
    for line in reversed(stdout.splitlines()):
        if line.startswith("{"):
            try:
                found = json.loads(line)
            except ValueError:
                continue
            return found if isinstance(found, dict) else {}
    return {}


def _zone(name):
    return ZoneInfo(name) if name else None  # None: the machine's


def scheduled_jobs(context: JobContext) -> list[Job]:
    inst = context.installation
    windows = blackouts(inst)
    timeout = inst.get("drill_timeout_seconds")
    jobs = []
    for scenario, spec in sorted(drill_schedules(inst).items()):
        jobs.append(Job(JOB_PREFIX + scenario, DrillJob(context, scenario, windows, timeout), spec,
                        f"drill {scenario} (erpctl drill run {scenario})",
                        default_source=f"erpctl.toml [drill.schedule] {scenario!r}"))
    return jobs


__all__ = ["DrillJob", "blackouts", "command", "drill_schedules", "scheduled_jobs"]
