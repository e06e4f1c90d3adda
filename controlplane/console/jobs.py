"""Actions an operator starts from the ops console: each runs as the same `erpctl` command a person
would type, in the background, on this installation (its data directory and database), with the
console account as the operator (ERPCTL_OPERATOR) so every evidence record it writes names them. The
start itself is recorded in the evidence log (kind console.action). Each job keeps a record
(console-jobs/<id>.json: who, when, the command, pid, exit code) and its output (<id>.log).

What each action runs, and the confirmation it needs (the CLI's own: a flag where the CLI wants one,
typed on the form):

    backup    erpctl backup create
    verify    erpctl backup verify [ID|latest] --level N
    upgrade   erpctl upgrade apply|resume|rollback [--offline] [--confirm-contract]
              typed confirmation: the step's name; "contract" with --confirm-contract (the point of no
              return)
    drill     erpctl drill run SCENARIO (in a sandbox of its own)
"""

from __future__ import annotations

import datetime as dt
import json
import os
import re
import secrets
import subprocess
import sys
import threading
from pathlib import Path

from .. import layout
from ..evidence import EvidenceLog
from ..fsutil import atomic_write_text
from ..installation import Installation

ACTIONS = ("backup", "verify", "upgrade", "drill")
UPGRADE_STEPS = ("apply", "resume", "rollback")
ID_RE = re.compile(r"[0-9]{8}T[0-9]{6}Z-[0-9a-f]{6}")
BACKUP_ID_RE = re.compile(r"latest|[0-9a-f]{4,64}")
SCENARIO_RE = re.compile(r"[A-Za-z0-9._-]{1,64}")


class Refused(ValueError):
    """The form does not make a command (a missing confirmation, an unknown step): shown on the page."""


def command(action: str, form, scenarios: list[str]) -> list[str]:
    """The erpctl arguments for an action's form, after its confirmation; Refused says what is missing."""
    if action == "backup":
        return ["backup", "create"]
    if action == "verify":
        backup = (form.get("backup") or "latest").strip().lower()
        level = (form.get("level") or "3").strip()
        if not BACKUP_ID_RE.fullmatch(backup) or level not in ("1", "2", "3", "4"):
            raise Refused("bad_verify")
        return ["backup", "verify", backup, "--level", level]
    if action == "upgrade":
        step = form.get("step") or ""
        if step not in UPGRADE_STEPS:
            raise Refused("bad_step")
        contract = step != "rollback" and form.get("contract") == "yes"
        if (form.get("confirm") or "").strip().lower() != ("contract" if contract else step):
            raise Refused("confirm_contract" if contract else "confirm_step")
        args = ["upgrade", step]
        if form.get("offline") == "yes":
            args.append("--offline")
        return args + (["--confirm-contract"] if contract else [])
    if action == "drill":
        scenario = (form.get("scenario") or "").strip()
        if not SCENARIO_RE.fullmatch(scenario) or scenario not in scenarios:
            raise Refused("bad_scenario")
        return ["drill", "run", scenario]
    raise Refused("bad_action")


def _now() -> str:
    return dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")


def _save(data_dir, job: dict) -> None:
    atomic_write_text(layout.path(data_dir, "console_job", id=job["id"]), json.dumps(job, indent=1) + "\n")


def start(inst: Installation, actor: str, action: str, args: list[str]) -> dict:
    """Start `erpctl ARGS` on this installation in the background; its record."""
    job_id = dt.datetime.now(dt.timezone.utc).strftime("%Y%m%dT%H%M%SZ") + "-" + secrets.token_hex(3)
    directory = layout.path(inst.data_dir, "console_jobs")
    directory.mkdir(mode=0o700, parents=True, exist_ok=True)
    argv = [sys.executable, "-m", "controlplane", *args, "--data-dir", str(inst.data_dir)]
    shown = "erpctl " + " ".join(args)
    # the database URL through the environment: it may hold a password, which a command line shows to `ps`
    env = {**os.environ, "ERPCTL_OPERATOR": actor, "ERPCTL_DATABASE_URL": inst.database_url}
    job = {"version": 1, "id": job_id, "action": action, "command": shown, "actor": actor, "started_at": _now(),
           "pid": None, "exit_code": None, "ended_at": None}
    log_path = layout.path(inst.data_dir, "console_job_log", id=job_id)
    with open(log_path, "wb") as out:
        os.chmod(log_path, 0o600)
        proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT, env=env,
                                start_new_session=True, close_fds=True)
    job["pid"] = proc.pid
    _save(inst.data_dir, job)
    EvidenceLog(inst.data_dir).append("console.action", {"job": job_id, "action": action, "command": shown,
                                                         "pid": proc.pid}, actor=actor)

    def wait():
        job["exit_code"] = proc.wait()
        job["ended_at"] = _now()
        _save(inst.data_dir, job)

    threading.Thread(target=wait, daemon=True, name=f"console-job-{job_id}").start()
    return job


def get(data_dir, job_id: str) -> dict | None:
    if not ID_RE.fullmatch(job_id or ""):
        return None
    try:
        job = json.loads(layout.path(data_dir, "console_job", id=job_id).read_text())
    except (OSError, ValueError):
        return None
    try:
        job["output"] = layout.path(data_dir, "console_job_log", id=job_id).read_text(errors="replace")[-20000:]
    except OSError:
        job["output"] = ""
    return job


def listing(data_dir, limit: int = 30) -> list[dict]:
    directory = layout.path(data_dir, "console_jobs")
    rows = []
    for p in sorted(directory.glob("*.json"), reverse=True)[:limit] if directory.is_dir() else []:
        try:
            rows.append(json.loads(Path(p).read_text()))
        except (OSError, ValueError):
            continue
    return rows


def running(data_dir, action: str) -> bool:
    """Whether a job of `action` started here has not ended."""
    return any(j.get("action") == action and j.get("exit_code") is None and _alive(j.get("pid"))
               for j in listing(data_dir))


def _alive(pid) -> bool:
    if not isinstance(pid, int):
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:  # a child that ended but was not reaped yet
        return Path(f"/proc/{pid}/stat").read_text().split(")")[-1].split()[0] != "Z"
    except (OSError, IndexError):
        return True
