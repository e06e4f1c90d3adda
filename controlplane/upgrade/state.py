"""The upgrade's state on disk: <data dir>/upgrade/state.json, rewritten atomically at every step.

One upgrade at a time per data directory (an exclusive lock beside the state). A finished upgrade
(done or rolled back) moves its state to upgrade/history/<id>.json.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import fcntl
import json
import os
import socket
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import ClassVar

from ..errors import UpgradeBusy
from ..fsutil import atomic_write_text
from ..installation import Record, check_version
from .. import layout, procs

STAGES = ("preflight", "backup", "expand", "backfill", "verify", "switch", "contract")
FINISHED = ("done", "rolled_back")
WORKING = ("running", "rolling_back")  # a process works on the upgrade while its state says so
NEXT_COMMANDS = ("erpctl upgrade resume", "erpctl upgrade rollback")
VERSION = 1  # of the state record; states written before it had one are version 1


@dataclass
class UpgradeState(Record):
    """The upgrade state as a typed record (upgrade/state.json and upgrade/history/*.json). The engine
    keeps the dict form while it runs (as_dict() of this record); readers take the record."""

    KEY: ClassVar[str] = "upgrade_state"
    VERSION: ClassVar[int] = VERSION
    version: int = VERSION
    id: str = ""
    status: str = "running"
    stage: str = "preflight"
    completed: list = field(default_factory=list)
    stages: dict = field(default_factory=dict)
    started_at: str | None = None
    updated_at: str | None = None
    error: dict | None = None
    events: list = field(default_factory=list)
    from_version: str | None = None
    to_version: str | None = None
    from_revision: str | None = None
    to_revision: str | None = None
    expand_revision: str | None = None
    backfill_revision: str | None = None
    contract_revision: str | None = None
    migrations: list = field(default_factory=list)
    backup: dict | None = None
    backfill: dict | None = None
    rollback: dict | None = None
    maintenance: dict | None = None
    options: dict | None = None
    soak_seconds: float | None = None
    stall_budget_ms: float | None = None
    catalogue_before: dict | None = None
    preflight: dict | None = None
    verified: dict | None = None
    runner: dict | None = None  # the process working on it: pid, pid_start, host, command (see runner())

    @property
    def finished(self) -> bool:
        return self.status in FINISHED


def load_record(data_dir: Path) -> UpgradeState | None:
    """The upgrade in progress as a typed record (None when there is none)."""
    state = load(data_dir)
    return None if state is None else UpgradeState.from_dict(state, str(state_path(data_dir)))


def history_records(data_dir: Path) -> list[UpgradeState]:
    """Finished upgrades, oldest first, as typed records."""
    return [UpgradeState.from_dict(s, "upgrade history") for s in history(data_dir)]


def now_iso() -> str:
    return dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")


def directory(data_dir: Path) -> Path:
    return layout.path(data_dir, "upgrade")


def state_path(data_dir: Path) -> Path:
    return layout.path(data_dir, "upgrade_state")


def load(data_dir: Path) -> dict | None:
    """The upgrade in progress (None when there is none); a state written by a newer erpctl is refused."""
    path = state_path(data_dir)
    try:
        state = json.loads(path.read_text())
    except FileNotFoundError:
        return None
    check_version(state, VERSION, str(path))
    return state


def save(data_dir: Path, state: dict) -> None:
    state["updated_at"] = now_iso()
    directory(data_dir).mkdir(parents=True, exist_ok=True)
    atomic_write_text(state_path(data_dir), json.dumps(state, indent=1, default=str) + "\n")


def new(**fields) -> dict:
    return {"version": VERSION, "id": uuid.uuid4().hex[:12], "status": "running", "stage": "preflight", "completed": [],
            "stages": {}, "started_at": now_iso(), "error": None, "events": [], **fields}


def archive(data_dir: Path, state: dict) -> Path:
    """Move a finished upgrade's state into the history."""
    hist = layout.path(data_dir, "upgrade_history")
    hist.mkdir(parents=True, exist_ok=True)
    dest = hist / f"{state['started_at'][:19].replace(':', '')}-{state['id']}.json"
    atomic_write_text(dest, json.dumps(state, indent=1, default=str) + "\n")
    with contextlib.suppress(FileNotFoundError):
        os.unlink(state_path(data_dir))
    return dest


def history(data_dir: Path) -> list[dict]:
    hist = layout.path(data_dir, "upgrade_history")
    out = []
    for p in sorted(hist.glob("*.json")) if hist.exists() else []:
        state = json.loads(p.read_text())
        check_version(state, VERSION, str(p))
        out.append(state)
    return out


def runner(command: str) -> dict:
    """This process as the one working on the upgrade: its pid with its start time (a reused pid has
    another, procs.start_ticks) and its host, as runtime.json identifies `erpctl up`."""
    pid = os.getpid()
    return {"pid": pid, "pid_start": procs.start_ticks(pid), "host": socket.gethostname(), "command": command,
            "since": now_iso()}


def liveness(st: dict) -> dict:
    """Whether the process that works on the upgrade still runs: {"alive": True | False | None, "why"}.
    None: it cannot be told here (another host ran it, or a state written before runners were recorded)."""
    r = st.get("runner") or {}
    pid = r.get("pid")
    if not pid:
        return {"alive": None, "why": "the state does not record which process ran it"}
    if r.get("host") and r["host"] != socket.gethostname():
        return {"alive": None, "why": f"it ran on host {r['host']}: check there"}
    if procs.is_same(pid, r.get("pid_start")):
        return {"alive": True, "why": f"pid {pid} ({r.get('command')}) runs"}
    reused = procs.start_ticks(pid) is not None and procs.state(pid) != "Z"
    return {"alive": False, "why": f"the process that ran it (pid {pid}) is gone"
                                   + (f" (pid {pid} is now another process)" if reused else "")}


def event(state: dict, what: str, **data) -> None:
    state["events"].append({"at": now_iso(), "event": what, **data})


@contextlib.contextmanager
def exclusive(data_dir: Path):
    """Hold the upgrade lock, or fail at once naming the process that holds it."""
    d = directory(data_dir)
    d.mkdir(parents=True, exist_ok=True)
    path = layout.path(data_dir, "upgrade_lock")
    with open(path, "a+") as f:
        try:
            fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            f.seek(0)
            holder = f.read().strip() or "another process"
            raise UpgradeBusy(f"another upgrade operation is running (pid {holder})",
                              fix="Wait for it ('erpctl upgrade status'), or stop it; a killed one is "
                                  "continued with 'erpctl upgrade resume' or undone with 'erpctl upgrade rollback'.")
        f.seek(0)
        f.truncate()
        f.write(str(os.getpid()))
        f.flush()
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


# ---- what `erpctl upgrade status` shows (read without loading the stage machine) ------------------

def summary(st: dict) -> dict:
    keys = ("id", "status", "stage", "from_version", "to_version", "from_revision", "to_revision",
            "completed", "error", "backup", "backfill", "started_at", "updated_at")
    out = {k: st.get(k) for k in keys}
    out["stages"] = {k: {kk: v.get(kk) for kk in ("seconds", "detail", "started_at", "finished_at")}
                     for k, v in st.get("stages", {}).items()}
    return out


def status(data_dir: Path) -> dict:
    """The upgrade in progress, or {"status": "none", "last": the last finished one or None}."""
    st = load(data_dir)
    if st is None:
        last = history(data_dir)
        return {"status": "none", "last": summary(last[-1]) if last else None}
    out = summary(st)
    out["maintenance_set_by_upgrade"] = bool((st.get("maintenance") or {}).get("set"))
    out["runner"] = st.get("runner")
    live = liveness(st) if st.get("status") in WORKING else {"alive": False, "why": f"it is {st.get('status')}"}
    out["alive"] = live["alive"]
    out["interrupted"] = None
    if st.get("status") == "interrupted" or (st.get("status") in WORKING and live["alive"] is False):
        out["interrupted"] = live["why"] if st.get("status") in WORKING else "the process that ran it was stopped"
        out["next"] = list(NEXT_COMMANDS)
    return out
