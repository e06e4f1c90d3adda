"""`erpctl restart`: stop this installation's `erpctl up` and start it again exactly as it served.

The plan comes first and stops nothing when it refuses: the host and ports are the recorded ones; the
database URL comes from the installation's settings (flag, ERPCTL_DATABASE_URL, erpctl.toml [database]
url) and must name the database that was served (its password is never recorded, so it cannot come
from runtime.json). A PostgreSQL installation whose URL is not set where restart runs is refused,
never started on an empty SQLite database.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from .. import http
from ..errors import EXIT_CODES, RestartRefused, StartFailed
from ..evidence import EvidenceLog
from ..installation import Installation, RuntimeRecord
from . import running
from .stop import DEFAULT_TIMEOUT_SECONDS, lifecycle_lock, stop_locked

READY_TIMEOUT_SECONDS = 120.0
LOG_TAIL_LINES = 12
URL_FIX = ("Give the URL of the database it served (with its password) as ERPCTL_DATABASE_URL or "
           "--database-url, or keep it in erpctl.toml [database] url (or the systemd unit's EnvironmentFile).")


@dataclass(frozen=True)
class StartPlan:
    """How `erpctl up` is started again. The database URL travels in the environment, never on the command line."""

    argv: tuple[str, ...]
    database_url: str | None   # None: the data directory's SQLite database
    host: str
    erp_port: int
    ops_port: int
    database: str              # the URL without its password

    def as_dict(self) -> dict:
        return {"command": list(self.argv), "host": self.host, "erp_port": self.erp_port,
                "ops_port": self.ops_port, "database": self.database}


def erpctl_program() -> list[str]:
    """The erpctl of this environment (the script beside this Python, else `python -m controlplane`)."""
    beside = Path(sys.executable).with_name("erpctl")
    return [str(beside)] if beside.exists() else [sys.executable, "-m", "controlplane"]


def plan(inst: Installation, rec: RuntimeRecord, program: list[str]) -> StartPlan:
    """The start plan from what `erpctl up` recorded and the installation's database setting; RestartRefused
    (naming the fix) when it cannot be started again as it served."""
    start = f"'erpctl up --data-dir {inst.data_dir}' with the options it needs"
    if rec.erp_port is None or rec.ops_port is None or not rec.host:
        raise RestartRefused(f"nothing records how 'erpctl up' serves {inst.data_dir} (no runtime.json, or one "
                             "written by an older erpctl)",
                             fix=f"Stop it with 'erpctl stop' if it runs, and start {start}; from then on "
                                 "'erpctl restart' repeats it.")
    if rec.data_dir and Path(rec.data_dir) != Path(inst.data_dir):
        raise RestartRefused(f"runtime.json in {inst.data_dir} was written by 'erpctl up' on {rec.data_dir}",
                             fix=f"Start {start} (a copied data directory keeps the record of the original).")
    if rec.unit:
        raise RestartRefused(f"the systemd unit {rec.unit} runs 'erpctl up' on {inst.data_dir}: a restart "
                             "outside it would leave systemd without its service",
                             fix=f"Run 'systemctl restart {rec.unit}' (as root), then 'erpctl status'.")
    given = inst.resolve("database_url")
    recorded = rec.database
    if recorded and rec.database_backend and rec.database_backend != "sqlite" and given.value is None:
        raise RestartRefused(f"'erpctl up' served {recorded}, and no database URL is set here: a restart would "
                             "serve an empty SQLite database instead", fix=URL_FIX)
    if recorded and inst.display_url != recorded:
        raise RestartRefused(f"'erpctl up' served {recorded}, but the database URL here ({given.source}) is "
                             f"{inst.display_url}", fix=URL_FIX + " To serve another database on purpose, use "
                                                                  f"'erpctl stop', then {start}.")
    argv = (*program, "up", "--data-dir", str(inst.data_dir), "--host", rec.host, "--erp-port", str(rec.erp_port),
            "--ops-port", str(rec.ops_port), *(("--ops-host", rec.ops_host) if rec.ops_host else ()))
    return StartPlan(argv, inst.database_url if given.value is not None else None, rec.host, rec.erp_port,
                     rec.ops_port, inst.display_url)


def restart(inst: Installation, timeout: float = DEFAULT_TIMEOUT_SECONDS,
            ready_timeout: float = READY_TIMEOUT_SECONDS, program: list[str] | None = None) -> dict:
    """Stop, start in the background with the plan, wait until /readyz answers 200; what was done."""
    if not inst.data_dir.is_dir():
        plan(inst, RuntimeRecord(), [])  # refuses: nothing has served there
    with lifecycle_lock(inst):
        t0 = time.monotonic()
        the_plan = plan(inst, inst.runtime(), program or erpctl_program())
        down = time.monotonic()  # the ERP answers until erpctl up stops it
        stopped = stop_locked(inst, timeout)
        result = {"data_dir": str(inst.data_dir), "stopped": stopped, "plan": the_plan.as_dict(),
                  "log": str(inst.path("up_log"))}
        try:
            proc, offset = start_detached(inst, the_plan)
            result.update(pid=proc.pid, **wait_ready(inst, proc, ready_timeout, offset))
        except StartFailed as exc:
            EvidenceLog(inst.data_dir).append("erpctl.restart", {**_evidence(result), "error": exc.detail},
                                              outcome="failed")
            raise
        result["down_seconds"] = round(time.monotonic() - down, 2) if stopped["stopped"] else None
        result["seconds"] = round(time.monotonic() - t0, 2)
        EvidenceLog(inst.data_dir).append("erpctl.restart", _evidence(result))
        return result


def dry_run(inst: Installation, program: list[str] | None = None) -> dict:
    """What `erpctl restart` would do, changing nothing (RestartRefused when it would refuse)."""
    rec = inst.runtime()
    up, why = running.find(inst, rec)
    the_plan = plan(inst, rec, program or erpctl_program())
    return {"data_dir": str(inst.data_dir), "running": up is not None, "pid": up.pid if up else None,
            "message": why, "plan": the_plan.as_dict(), "log": str(inst.path("up_log"))}


def start_detached(inst: Installation, the_plan: StartPlan) -> tuple[subprocess.Popen, int]:
    """Start `erpctl up` in a session of its own (it outlives this command and the terminal), its output
    appended to erpctl-up.log; the process and where its output starts in the log."""
    env = {k: v for k, v in os.environ.items() if k != "ERPCTL_DATABASE_URL"}
    if the_plan.database_url is not None:
        env["ERPCTL_DATABASE_URL"] = the_plan.database_url
    with open(inst.path("up_log"), "ab") as log:
        offset = log.tell()
        try:
            proc = subprocess.Popen(the_plan.argv, stdin=subprocess.DEVNULL, stdout=log, stderr=log, env=env,
                                    cwd=inst.data_dir, start_new_session=True)
        except OSError as exc:
            raise StartFailed(f"cannot start {the_plan.argv[0]}: {exc.strerror or exc}",
                              fix="Reinstall erpctl in this environment.") from None
    return proc, offset


def wait_ready(inst: Installation, proc: subprocess.Popen, timeout: float, offset: int) -> dict:
    """Wait until the new `erpctl up` records serving and its ERP's /readyz answers 200 (or says that only
    maintenance mode keeps it from being ready)."""
    t0 = time.monotonic()
    last = "it has not recorded serving yet"
    while True:
        code = proc.poll()
        if code is not None:
            raise StartFailed(f"the new 'erpctl up' (pid {proc.pid}) exited with code {code}:\n{_said(inst, offset)}",
                              fix=f"Its own message above says why; the whole output is in {inst.path('up_log')}.",
                              exit_code=code if code > 0 and code in EXIT_CODES else None)
        rec = inst.runtime()
        if rec.pid == proc.pid and rec.running and rec.erp_url:
            try:
                status, body = http.get(rec.erp_url.rstrip("/") + "/readyz", timeout=2)
                maintenance = _maintenance(body)
                if status == 200 or maintenance:
                    return {"erp_url": rec.erp_url, "ops_url": rec.ops_url, "database": rec.database,
                            "ready_seconds": round(time.monotonic() - t0, 2), "maintenance": maintenance}
                last = f"/readyz answers {http.describe(status, body)}"
            except OSError as exc:
                last = f"/readyz: {exc}"
        if time.monotonic() - t0 > timeout:
            raise StartFailed(f"the new 'erpctl up' (pid {proc.pid}) was not ready within {timeout:g} s: {last}. "
                              "It is left running.",
                              fix=f"Its output is in {inst.path('up_log')}; 'erpctl status' says what is not "
                                  "ready (maintenance mode, the database, the schema). 'erpctl stop' ends it.")
        time.sleep(0.2)


def _maintenance(body) -> dict | None:
    """The maintenance state when /readyz says the ERP is fine but in maintenance mode (switched on before
    the restart, and still on: serving read-only as it did), else None."""
    checks = body.get("checks") if isinstance(body, dict) else None
    if not isinstance(checks, dict) or checks.get("database") != "ok":
        return None
    schema, mode = checks.get("schema") or {}, checks.get("maintenance") or {}
    ok = isinstance(schema, dict) and schema.get("supported") and isinstance(mode, dict) and mode.get("enabled")
    return mode if ok else None


def _said(inst: Installation, offset: int) -> str:
    """The new `erpctl up`'s last lines of output (its error and fix last)."""
    try:
        with open(inst.path("up_log"), "rb") as f:
            f.seek(offset)
            text = f.read().decode(errors="replace")
    except OSError:
        return "(its output cannot be read)"
    lines = [line for line in text.splitlines() if line.strip()]
    return "\n".join(lines[-LOG_TAIL_LINES:]) or "(it wrote nothing)"


def _evidence(result: dict) -> dict:
    stopped = result.get("stopped") or {}
    return {"data_dir": result["data_dir"], "old_pid": stopped.get("pid") if stopped.get("stopped") else None,
            "stop_signal": stopped.get("signal"), "pid": result.get("pid"), "plan": result["plan"],
            "ready_seconds": result.get("ready_seconds"), "down_seconds": result.get("down_seconds")}
