"""The upgrade's state on disk: <data dir>/upgrade/state.json, rewritten atomically at every step.

One upgrade at a time per data directory (an exclusive lock beside the state). A finished upgrade
(done or rolled back) moves its state to upgrade/history/<id>.json. Every writer and reader goes
through the typed record UpgradeState (a state written before records had a version is version 1).
"""

from __future__ import annotations

import contextlib
import dataclasses
import datetime as dt
import fcntl
import json
import os
import socket
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar, Mapping

from ..errors import UpgradeBusy
from ..fsutil import atomic_write_text
from ..installation import Record
from .. import layout, procs

STAGES = ("preflight", "backup", "expand", "backfill", "verify", "switch", "contract")
FINISHED = ("done", "rolled_back")
WORKING = ("running", "rolling_back")  # a process works on the upgrade while its state says so
NEXT_COMMANDS = ("erpctl upgrade resume", "erpctl upgrade rollback")
VERSION = 1  # of the state record; states written before it had one are version 1


@dataclass
class Part:
    """A typed part of the upgrade state (a JSON object inside it); unknown fields are kept."""

    extra: dict = field(default_factory=dict, repr=False)

    @classmethod
    def of(cls, data: Mapping | None):
        if data is None or isinstance(data, cls):
            return data
        names = {f.name for f in dataclasses.fields(cls)} - {"extra"}
        return cls(**{k: v for k, v in data.items() if k in names},
                   extra={k: v for k, v in data.items() if k not in names})

    def as_dict(self) -> dict:
        """The part as JSON; fields never set (None) are left out, so a state reads back as it was written."""
        return {**self.extra, **{f.name: getattr(self, f.name) for f in dataclasses.fields(self)
                                 if f.name != "extra" and getattr(self, f.name) is not None}}


@dataclass
class StageRun(Part):
    """One stage's run: when it started and finished, how long it took, what it reports."""

    started_at: str | None = None
    started_epoch: float | None = None
    finished_at: str | None = None
    finished_epoch: float | None = None
    seconds: float | None = None
    detail: Any = None


@dataclass
class BackupTaken(Part):
    """The pre-upgrade backup (what a rollback after contract restores)."""

    id: str = ""
    repository: str | None = None
    created_at: str | None = None
    verified_level: int | None = None
    audit_rows: int | None = None


@dataclass
class MaintenanceHold(Part):
    """Maintenance mode as the upgrade set it: whether it holds it, and the mode it found before."""

    set: bool = False
    prior: dict | None = None  # ops.switch_maintenance's answer: {"enabled", "reason", ...}
    since: float | None = None  # when it set it (unix seconds)
    read_only_seconds: float | None = None  # how long the ERP refused writes for it, to compare with the plan


@dataclass
class RunOptions(Part):
    """The options of the run that started the upgrade (resume and rollback reuse them)."""

    erp_url: str | None = None
    soak_seconds: float | None = None
    stall_budget_ms: float | None = None
    repo: str | None = None
    key_file: str | None = None


PARTS = {"backup": BackupTaken, "maintenance": MaintenanceHold, "options": RunOptions}


@dataclass
class UpgradeState(Record):
    """The upgrade state as a typed record (upgrade/state.json and upgrade/history/*.json)."""

    KEY: ClassVar[str] = "upgrade_state"
    VERSION: ClassVar[int] = VERSION
    version: int = VERSION
    id: str = ""
    status: str = "running"
    stage: str = "preflight"
    completed: list = field(default_factory=list)
    stages: dict = field(default_factory=dict)  # stage name -> StageRun
    started_at: str | None = None
    updated_at: str | None = None
    error: dict | None = None  # {"stage", "reason"}
    events: list = field(default_factory=list)
    from_version: str | None = None
    to_version: str | None = None
    from_revision: str | None = None
    to_revision: str | None = None
    expand_revision: str | None = None
    backfill_revision: str | None = None
    contract_revision: str | None = None
    migrations: list = field(default_factory=list)
    backup: BackupTaken | None = None
    backfill: dict | None = None
    rollback: dict | None = None
    maintenance: MaintenanceHold | None = None
    options: RunOptions | None = None
    soak_seconds: float | None = None
    stall_budget_ms: float | None = None
    catalogue_before: dict | None = None
    preflight: list | None = None
    verified: dict | None = None
    runner: dict | None = None  # the process working on it: pid, pid_start, host, command (see runner())
    estimates: dict | None = None  # the plan's seconds per stage, as `erpctl upgrade plan` showed them

    def __post_init__(self):
        self.stages = {k: StageRun.of(v) for k, v in (self.stages or {}).items()}
        for name, part in PARTS.items():
            setattr(self, name, part.of(getattr(self, name)))

    def as_dict(self) -> dict:
        out = super().as_dict()
        out["stages"] = {k: v.as_dict() for k, v in self.stages.items()}
        for name in PARTS:
            out[name] = None if out[name] is None else out[name].as_dict()
        return out

    @property
    def finished(self) -> bool:
        return self.status in FINISHED

    def update(self, **fields) -> None:
        """Set fields by name (the plan's description of the upgrade); an unknown name is a bug."""
        for name, value in fields.items():
            if name not in self.__dataclass_fields__ or name == "extra":
                raise AttributeError(f"the upgrade state has no field {name!r}")
            setattr(self, name, value)
        self.__post_init__()

    def event(self, what: str, **data) -> None:
        self.events.append({"at": now_iso(), "event": what, **data})

    def begin(self, stage: str) -> StageRun:
        self.stage = stage
        run = self.stages.setdefault(stage, StageRun())
        run.started_at, run.started_epoch = now_iso(), time.time()
        return run

    def end(self, stage: str, detail, seconds: float) -> None:
        run = self.stages[stage]
        run.detail, run.seconds = detail, round(seconds, 2)
        run.finished_at, run.finished_epoch = now_iso(), time.time()
        self.completed.append(stage)

    def backfill_revisions(self) -> list[str]:
        return [m["revision"] for m in self.migrations if m["stage"] == "backfill"]

    def summary(self) -> dict:
        """What `erpctl upgrade status` and the commands' answers show of it."""
        out = {k: getattr(self, k) for k in ("id", "status", "stage", "from_version", "to_version", "from_revision",
                                              "to_revision", "completed", "error", "backfill", "started_at",
                                              "updated_at")}
        out["backup"] = self.backup.as_dict() if self.backup else None
        out["stages"] = {k: {kk: getattr(v, kk) for kk in ("seconds", "detail", "started_at", "finished_at")}
                         for k, v in self.stages.items()}
        return out


def now_iso() -> str:
    return dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")


def directory(data_dir: Path) -> Path:
    return layout.path(data_dir, "upgrade")


def state_path(data_dir: Path) -> Path:
    return layout.path(data_dir, "upgrade_state")


def _read(path: Path) -> UpgradeState:
    """A state file as the record; one written by a newer erpctl is refused."""
    return UpgradeState.from_dict(json.loads(path.read_text()), str(path))


def _write(path: Path, st: UpgradeState) -> None:
    atomic_write_text(path, json.dumps(st.as_dict(), indent=1, default=str) + "\n")


def load(data_dir: Path) -> UpgradeState | None:
    """The upgrade in progress (None when there is none)."""
    try:
        return _read(state_path(data_dir))
    except FileNotFoundError:
        return None


def save(data_dir: Path, st: UpgradeState) -> None:
    st.updated_at = now_iso()
    directory(data_dir).mkdir(parents=True, exist_ok=True)
    _write(state_path(data_dir), st)


def new(**fields) -> UpgradeState:
    st = UpgradeState(id=uuid.uuid4().hex[:12], started_at=now_iso())
    st.update(**fields)
    return st


def archive(data_dir: Path, st: UpgradeState) -> Path:
    """Move a finished upgrade's state into the history."""
    hist = layout.path(data_dir, "upgrade_history")
    hist.mkdir(parents=True, exist_ok=True)
    dest = hist / f"{(st.started_at or '')[:19].replace(':', '')}-{st.id}.json"
    _write(dest, st)
    with contextlib.suppress(FileNotFoundError):
        os.unlink(state_path(data_dir))
    return dest


def history(data_dir: Path) -> list[UpgradeState]:
    """Finished upgrades, oldest first."""
    hist = layout.path(data_dir, "upgrade_history")
    return [_read(p) for p in (sorted(hist.glob("*.json")) if hist.exists() else [])]


def runner(command: str) -> dict:
    """This process as the one working on the upgrade: its pid with its start time (a reused pid has
    another, procs.start_ticks) and its host, as runtime.json identifies `erpctl up`."""
    pid = os.getpid()
    return {"pid": pid, "pid_start": procs.start_ticks(pid), "host": socket.gethostname(), "command": command,
            "since": now_iso()}


def liveness(st: UpgradeState) -> dict:
    """Whether the process that works on the upgrade still runs: {"alive": True | False | None, "why"}.
    None: it cannot be told here (another host ran it, or a state written before runners were recorded)."""
    r = st.runner or {}
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


def progress(data_dir: Path) -> dict:
    """The upgrade in progress as monitoring sees it (the state file, the one truth): whether one is in
    progress, its stage, when that stage started (unix seconds, 0 when none) and whether the process
    working on it is gone (interrupted: resume or rollback is needed)."""
    st = load(data_dir)
    if st is None or st.finished:
        return {"in_progress": False, "stage": None, "stage_started": 0.0, "interrupted": False}
    run = st.stages.get(st.stage)
    interrupted = st.status == "interrupted" or (st.status in WORKING and liveness(st)["alive"] is False)
    return {"in_progress": True, "stage": st.stage, "stage_started": (run and run.started_epoch) or 0.0,
            "interrupted": interrupted, "status": st.status, "id": st.id}


# ---- what `erpctl upgrade status` shows (read without loading the stage machine) ------------------

def status(data_dir: Path) -> dict:
    """The upgrade in progress, or {"status": "none", "last": the last finished one or None}."""
    st = load(data_dir)
    if st is None:
        last = history(data_dir)
        return {"status": "none", "last": last[-1].summary() if last else None}
    out = st.summary()
    out["maintenance_set_by_upgrade"] = bool(st.maintenance and st.maintenance.set)
    out["runner"] = st.runner
    live = liveness(st) if st.status in WORKING else {"alive": False, "why": f"it is {st.status}"}
    out["alive"], out["liveness"] = live["alive"], live["why"]
    out["interrupted"] = None
    if st.status == "interrupted" or (st.status in WORKING and live["alive"] is False):
        out["interrupted"] = live["why"] if st.status in WORKING else "the process that ran it was stopped"
        out["next"] = list(NEXT_COMMANDS)
    return out
