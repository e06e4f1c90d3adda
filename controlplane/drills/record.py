"""The drill record: <data dir>/drills/<ID>/record.json (version 1), the contract between the drill
engine (which writes it at every phase change, atomically, so a killed drill leaves a readable one) and
the reports, approvals and sign-off built from it. Typed load and save; unknown keys are kept as they
are (a later writer's additions survive a load and save by this one)."""

from __future__ import annotations

import datetime as dt
import json
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path

from .. import layout
from ..errors import DataDirProblem
from ..fsutil import atomic_write_text
from ..release.wheel import sha256_of

VERSION = 1
STATES = ("running", "passed", "failed", "aborted")
PHASES = ("prepare", "steady-state", "fault", "detect", "recover", "verify", "cleanup")
OBJECTIVES = ("detection", "rto", "rpo_writes", "rpo_seconds")
DEFAULT_RETENTION_DAYS = 3 * 365


def now_iso() -> str:
    return dt.datetime.now(dt.timezone.utc).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def drill_id(scenario: str, at: dt.datetime | None = None) -> str:
    at = at or dt.datetime.now(dt.timezone.utc)
    return f"{at.strftime('%Y%m%dT%H%M%SZ')}-{scenario}"


def directory(data_dir, drill: str) -> Path:
    return layout.path(data_dir, "drill", id=drill)


def sha256_file(path: Path) -> str:
    return sha256_of(path)


@dataclass
class DrillRecord:
    id: str
    scenario: dict                        # name, title, file, sha256, fault, destructive
    target: str = "sandbox"               # or "live"
    backend: str = "sqlite"               # or "postgresql"
    versions: dict = field(default_factory=dict)
    operator: str = ""
    participants: list = field(default_factory=list)
    approvals: list = field(default_factory=list)
    window: dict | None = None
    objectives: dict = field(default_factory=dict)
    state: str = "running"
    started_at: str = field(default_factory=now_iso)
    ended_at: str | None = None
    timeline: list = field(default_factory=list)
    measured: dict = field(default_factory=dict)
    detection: dict = field(default_factory=dict)  # how the fault was detected: probes, Prometheus, `for` used
    results: list = field(default_factory=list)
    checks: list = field(default_factory=list)
    runbook: dict | None = None
    findings: list = field(default_factory=list)
    remediation: list = field(default_factory=list)
    signoffs: list = field(default_factory=list)
    retention_until: str = ""
    artifacts: list = field(default_factory=list)
    cleanup: dict | None = None
    version: int = VERSION
    extra: dict = field(default_factory=dict)   # keys this module does not know, kept as they were

    # ------------------------------------------------------------------ changes the engine makes

    def event(self, phase: str, event: str, **detail) -> dict:
        assert phase in PHASES, phase
        row = {"at": now_iso(), "phase": phase, "event": event, "detail": detail}
        self.timeline.append(row)
        return row

    def check(self, name: str, phase: str, ok: bool, detail: str = "") -> None:
        self.checks.append({"name": name, "phase": phase, "ok": bool(ok), "detail": detail})

    def finding(self, text: str, severity: str = "high") -> dict:
        row = {"id": f"F{len(self.findings) + 1}", "text": text, "severity": severity}
        self.findings.append(row)
        return row

    def artifact(self, path: Path) -> None:
        self.artifacts = [a for a in self.artifacts if a["name"] != path.name]
        self.artifacts.append({"name": path.name, "sha256": sha256_file(path), "bytes": path.stat().st_size})

    # ---------------------------------------------------------------------------- load and save

    def as_dict(self) -> dict:
        out = {**self.extra, **{k: v for k, v in asdict(self).items() if k != "extra"}}
        return out

    @classmethod
    def from_dict(cls, data: dict) -> DrillRecord:
        known = {f.name for f in fields(cls)} - {"extra"}
        if data.get("version") != VERSION:
            raise DataDirProblem(f"drill record version {data.get('version')!r} is not {VERSION}",
                                 fix="Use the erpctl that wrote it.")
        return cls(**{k: v for k, v in data.items() if k in known},
                   extra={k: v for k, v in data.items() if k not in known})

    def path(self, data_dir) -> Path:
        return layout.path(data_dir, "drill_record", id=self.id)

    def save(self, data_dir) -> Path:
        path = self.path(data_dir)
        path.parent.mkdir(parents=True, exist_ok=True)
        atomic_write_text(path, json.dumps(self.as_dict(), indent=2, default=str) + "\n")
        return path


def load(data_dir, drill: str) -> DrillRecord:
    path = layout.path(data_dir, "drill_record", id=drill)
    try:
        return DrillRecord.from_dict(json.loads(path.read_text()))
    except FileNotFoundError as exc:
        raise DataDirProblem(f"no drill {drill!r} ({path} does not exist)",
                             fix="Name a drill of 'erpctl drill list'.") from exc
    except ValueError as exc:
        raise DataDirProblem(f"{path} is not JSON: {exc}", fix="Restore it from a backup of the data directory.") from exc


def all_ids(data_dir) -> list[str]:
    root = layout.path(data_dir, "drills")
    if not root.is_dir():
        return []
    return sorted((p.parent.name for p in root.glob("*/" + layout.basename("drill_record"))), reverse=True)
