"""The latest result of each kind of operation (backup, verification, restore test, upgrade, probe,
runbook, drill), kept in the data directory so the exporter, `erpctl status` and the console can
read them without scanning the evidence log. The evidence log stays the full, tamper-evident
history; this file is only the current picture, rewritten atomically."""

from __future__ import annotations

import datetime as dt
import json
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping

from .errors import DataDirProblem
from .fsutil import atomic_write_text, locked
from .installation import check_version
from . import layout

FILE = layout.name("results")
# Version 2: {"version": 2, "results": {key: result}}. Version 1 (no version) was the map of results alone.
VERSION = 2


@dataclass
class Result:
    """The latest result of one kind of operation: whether it succeeded, when (unix seconds and ISO
    8601), and what the operation recorded besides (duration, detail, error, bytes_added, ...)."""

    ok: bool = False
    at: float = 0.0
    at_iso: str | None = None
    fields: dict = field(default_factory=dict)

    @classmethod
    def from_dict(cls, data: Mapping) -> "Result":
        rest = {k: v for k, v in data.items() if k not in ("ok", "at", "at_iso")}
        return cls(ok=data.get("ok") is True, at=unix_seconds(data.get("at")), at_iso=data.get("at_iso"), fields=rest)

    def as_dict(self) -> dict:
        return {"ok": self.ok, "at": self.at, "at_iso": self.at_iso, **self.fields}

    def value(self, name: str, default: Any = None) -> Any:
        """A field the operation recorded (default when it recorded none)."""
        return self.fields.get(name, default)


def at(result: Result | None) -> float:
    """When the result was recorded, in unix seconds (0 for none)."""
    return result.at if result is not None else 0.0


def _path(data_dir) -> Path:
    return Path(data_dir) / FILE


def _parse(data, where: str) -> dict[str, Result]:
    if not isinstance(data, Mapping):
        raise DataDirProblem(f"{where} is not a JSON object", fix="Restore it, or move it away.")
    if check_version(data, VERSION, where) == 1:
        entries = data  # written before the file had a version: the map of results itself
    else:
        entries = data.get("results") or {}
    return {k: Result.from_dict(v) for k, v in entries.items() if isinstance(v, Mapping)}


def read(data_dir) -> dict[str, Result]:
    """The latest Result of every recorded key (a file of a newer erpctl is refused)."""
    path = _path(data_dir)
    try:
        text = path.read_text()
    except FileNotFoundError:
        return {}
    return _parse(json.loads(text), str(path))


def _write(data_dir, data: dict[str, Result]) -> None:
    out = {"version": VERSION, "results": {k: v.as_dict() for k, v in sorted(data.items())}}
    atomic_write_text(_path(data_dir), json.dumps(out, indent=1, sort_keys=True, default=str))


def _now_result(ok: bool, now: float, **fields) -> Result:
    return Result(bool(ok), now, dt.datetime.fromtimestamp(now, dt.timezone.utc).isoformat(), fields)


def record(data_dir, key: str, ok: bool, **fields) -> Result:
    """Record the latest result under `key` (e.g. 'backup.create', 'backup.verify.L3', 'probe.readyz')."""
    entry = _now_result(ok, time.time(), **fields)
    with locked(layout.path(data_dir, "results_lock")):
        data = read(data_dir)
        data[key] = entry
        if ok:
            data[key + ".last_success"] = entry
        _write(data_dir, data)
    return entry


CREATED = "installation.created"  # when this installation was first served (the alerts' grace period)


def ensure_created(data_dir) -> float:
    """When the installation was created, recorded by the first `erpctl up` (unix seconds): the oldest
    result already recorded (an installation older than this code), else now. Never changed after."""
    now = time.time()
    with locked(layout.path(data_dir, "results_lock")):
        data = read(data_dir)
        if CREATED not in data:
            data[CREATED] = _now_result(True, min([now] + [e.at for e in data.values() if e.at]))
            _write(data_dir, data)
        return data[CREATED].at


def unix_seconds(value) -> float:
    """Unix seconds from a number or an ISO 8601 string (a result's "at"; 0 when missing or unreadable)."""
    if value in (None, ""):
        return 0.0
    if isinstance(value, (int, float)):
        return float(value)
    try:
        parsed = dt.datetime.fromisoformat(str(value).replace("Z", "+00:00"))
    except ValueError:
        try:
            return float(value)
        except ValueError:
            return 0.0
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=dt.timezone.utc)
    return parsed.timestamp()
