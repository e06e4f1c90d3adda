"""The running drill: drills/active.json (its id, the pid and start time of the process running it, its
sandbox: directory, ports, scratch database). One drill at a time per data directory. `erpctl drill
abort` signals that process (its clean-up runs in it); a drill whose process is gone (SIGKILL, a power
cut) is cleaned up by the next drill command from this file, as runtime records are judged: the pid
and its start time."""

from __future__ import annotations

import json
import os
import signal
import time
from dataclasses import asdict, dataclass
from pathlib import Path

from .. import layout, procs
from ..errors import DrillBusy
from ..fsutil import atomic_write_text, create_exclusive, locked
from . import record as records
from .sandbox import Sandbox

VERSION = 1
ABORT_WAIT_SECONDS = 90.0


@dataclass
class Active:
    id: str
    pid: int
    pid_start: int | None
    sandbox: str
    backend: str
    erp_port: int = 0
    ops_port: int = 0
    database: str | None = None
    admin_url: str | None = None
    keep: bool = False
    live_user: str | None = None  # a live drill's own user, deactivated by whoever cleans up
    version: int = VERSION

    def alive(self) -> bool:
        return procs.is_same(self.pid, self.pid_start)

    def sandbox_of(self) -> Sandbox:
        if self.live_user:  # a live drill's ports and database are the installation's, never the drill's to end
            return Sandbox(Path(self.sandbox), self.backend, None, 0, 0, None)
        return Sandbox(Path(self.sandbox), self.backend, self.admin_url, self.erp_port, self.ops_port, self.database)


def _path(data_dir) -> Path:
    return layout.path(data_dir, "drill_active")


def read(data_dir) -> Active | None:
    try:
        data = json.loads(_path(data_dir).read_text())
        return Active(**{k: v for k, v in data.items() if k in Active.__dataclass_fields__})
    except (FileNotFoundError, ValueError, TypeError):
        return None


def claim(data_dir, active: Active) -> None:
    """This process runs the drill; DrillBusy when another live one does (a dead one is cleaned up first)."""
    with locked(layout.path(data_dir, "drill_lock")):
        recover_stale(data_dir)
        if not create_exclusive(_path(data_dir), json.dumps(asdict(active)).encode()):
            other = read(data_dir)
            raise DrillBusy(f"drill {other.id if other else '?'} is running (pid {other.pid if other else '?'})",
                            fix="Wait for it to end, or stop it with 'erpctl drill abort'.")


def update(data_dir, active: Active) -> None:
    atomic_write_text(_path(data_dir), json.dumps(asdict(active)))


def release(data_dir, drill: str) -> None:
    current = read(data_dir)
    if current is not None and current.id == drill:
        _path(data_dir).unlink(missing_ok=True)


def recover_stale(data_dir) -> dict | None:
    """The drill of a process that is gone: its sandbox destroyed, its record marked aborted."""
    active = read(data_dir)
    if active is None or active.alive():
        return None
    left = active.sandbox_of().destroy(keep=active.keep)
    if active.live_user and (problem := _deactivate(data_dir, active.live_user)):
        left.append(problem)
    _mark_aborted(data_dir, active.id, "its process was gone (killed); cleaned up by the next drill command", left)
    _path(data_dir).unlink(missing_ok=True)
    return {"id": active.id, "left_over": left}


def _deactivate(data_dir, user: str) -> str | None:
    """A killed live drill's user deactivated (it may never have been created: nothing to do); what went wrong."""
    import subprocess

    from ..runbook.environment import erpctl_program

    r = subprocess.run([erpctl_program(), "erp", "user", "deactivate", user, "--data-dir", str(data_dir)],
                       capture_output=True, text=True, timeout=120, stdin=subprocess.DEVNULL)
    if r.returncode in (0, 4):  # 4: no such user
        return None
    return f"drill user {user} still active (erpctl erp user deactivate exited {r.returncode}: " \
           f"{(r.stderr or r.stdout).strip()[-300:]})"


def _mark_aborted(data_dir, drill: str, why: str, left: list) -> None:
    try:
        rec = records.load(data_dir, drill)
    except Exception:  # noqa: BLE001 - a drill killed before its first record has none
        return
    if rec.state == "running":
        rec.state = "aborted"
        rec.ended_at = records.now_iso()
        rec.event("cleanup", f"drill aborted: {why}")
        rec.finding(f"The drill did not finish: {why}.", "medium")
        rec.cleanup = {"ok": not left, "left_over": left}
        rec.save(data_dir)


def abort(data_dir) -> dict:
    """Stop the running drill at once: SIGTERM to its process (which runs its clean-up), SIGKILL and the
    clean-up here when it does not end in time; a stale one is cleaned up here."""
    active = read(data_dir)
    if active is None:
        return {"aborted": None, "said": "no drill is running"}
    if not active.alive():
        stale = recover_stale(data_dir)
        return {"aborted": active.id, "said": "its process was gone: cleaned up", **(stale or {})}
    os.kill(active.pid, signal.SIGTERM)
    if procs.wait_gone(active.pid, active.pid_start, ABORT_WAIT_SECONDS):
        _path(data_dir).unlink(missing_ok=True) if read(data_dir) and read(data_dir).id == active.id else None
        return {"aborted": active.id, "said": "stopped; its clean-up ran"}
    os.kill(active.pid, signal.SIGKILL)
    procs.wait_gone(active.pid, active.pid_start, 10)
    time.sleep(0.1)
    stale = recover_stale(data_dir)
    return {"aborted": active.id, "said": "killed after it did not stop; cleaned up", **(stale or {})}
