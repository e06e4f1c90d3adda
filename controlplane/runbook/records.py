"""The state of each runbook run, one JSON record in the data directory (layout `runbook_run`), written
atomically after every step, so a run killed mid-step is found at that step and resumed with the same
parameters; and the lock its process holds while it runs (layout `runbook_run_lock`).

A record whose status is `running` while no process holds its lock was interrupted (killed, power cut).
The directory is created mode 0700: the record keeps the parameters (and the database URL) the run
was started with, which may hold secrets; output and the evidence log never show them."""

from __future__ import annotations

import contextlib
import datetime as dt
import fcntl
import json
import os
import secrets
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path

from .. import layout
from ..errors import DataDirProblem, RunNotResumable
from ..fsutil import atomic_write_text
from ..installation import check_version

VERSION = 1
RUNNING = "running"
WAITING_CONFIRMATION = "waiting-confirmation"
WAITING_MANUAL = "waiting-manual"
FAILED = "failed"
RECOVERED = "recovered"
NOT_RECOVERED = "not-recovered"
INTERRUPTED = "interrupted"   # shown for a `running` record no process holds
FINISHED = (FAILED, RECOVERED, NOT_RECOVERED)


def now() -> str:
    return dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")


@dataclass
class RunRecord:
    id: str
    runbook: str
    path: str
    runbook_sha256: str
    env: dict                      # what the engine sets for the blocks: installation variables and params
    params: list                   # the names given with --param
    yes: bool                      # --yes: every confirm block of this run is confirmed
    operator: str
    started_at: str
    version: int = VERSION
    status: str = RUNNING
    step: int = 1                  # the step it is at (running, waiting, or failed at)
    block: int = 0                 # the next executed block of that step
    current: dict = field(default_factory=dict)   # the step in progress: started_at, commands so far
    steps: list = field(default_factory=list)     # each finished step's result
    findings: list = field(default_factory=list)  # non-zero exits of Confirm and Check recovery commands
    waiting: str | None = None
    ended_at: str | None = None
    pid: int | None = None

    @classmethod
    def from_dict(cls, data: dict, where: str) -> "RunRecord":
        if not isinstance(data, dict):
            raise DataDirProblem(f"{where} is not a JSON object", fix="Move it away; the run cannot be resumed.")
        check_version(data, VERSION, where)
        names = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in names})

    def as_dict(self) -> dict:
        return asdict(self)


def new_id() -> str:
    """Sortable by start time (to the millisecond), unique by its random part."""
    t = dt.datetime.now(dt.timezone.utc)
    return t.strftime("%Y%m%dT%H%M%S.") + f"{t.microsecond // 1000:03d}Z-" + secrets.token_hex(3)


def _dir(data_dir) -> Path:
    d = layout.path(data_dir, "runbook_runs")
    d.mkdir(mode=0o700, parents=True, exist_ok=True)
    return d


def save(data_dir, rec: RunRecord) -> None:
    _dir(data_dir)
    atomic_write_text(layout.path(data_dir, "runbook_run", run=rec.id), json.dumps(rec.as_dict(), indent=1) + "\n")


def load(data_dir, run_id: str) -> RunRecord:
    path = layout.path(data_dir, "runbook_run", run=run_id)
    if "/" in run_id or not path.is_file():
        raise RunNotResumable(f"no runbook run {run_id!r} in {data_dir}",
                              fix="'erpctl runbook history' lists the runs of this data directory (--data-dir).")
    try:
        data = json.loads(path.read_text())
    except ValueError:
        raise DataDirProblem(f"{path} is not readable JSON", fix="Move it away; start a new run.") from None
    return RunRecord.from_dict(data, str(path))


def all_runs(data_dir) -> list[RunRecord]:
    """Every run of the data directory, newest first (unreadable records skipped)."""
    d = layout.path(data_dir, "runbook_runs")
    out = []
    for p in sorted(d.glob("*.json"), reverse=True) if d.is_dir() else []:
        try:
            out.append(RunRecord.from_dict(json.loads(p.read_text()), str(p)))
        except (ValueError, DataDirProblem):
            continue
    return out


def _try_lock(path: Path):
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        return None
    return fd


@contextlib.contextmanager
def holding(data_dir, run_id: str, new: bool = False):
    """Hold the run's lock while it runs; another process holding it: RunNotResumable. A new run (an id
    nobody else knows yet) whose lock cannot be created (a full disk) runs without it."""
    try:
        _dir(data_dir)
        fd = _try_lock(layout.path(data_dir, "runbook_run_lock", run=run_id))
    except OSError:
        if not new:
            raise
        yield
        return
    if fd is None:
        raise RunNotResumable(f"runbook run {run_id} is running in another process",
                              fix="Wait for it, or stop that process first.")
    try:
        yield
    finally:
        os.close(fd)


def shown_status(data_dir, rec: RunRecord) -> str:
    """The status as a user should read it: `interrupted` for a running record nobody holds."""
    if rec.status != RUNNING:
        return rec.status
    lock = layout.path(data_dir, "runbook_run_lock", run=rec.id)
    fd = _try_lock(lock) if lock.exists() else None
    if fd is None and lock.exists():
        return RUNNING
    if fd is not None:
        os.close(fd)
    return INTERRUPTED
