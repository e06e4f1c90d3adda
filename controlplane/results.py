"""The latest result of each kind of operation (backup, verification, restore test, upgrade, probe,
runbook, drill), kept in the data directory so the exporter, `erpctl status` and the console can
read them without scanning the evidence log. The evidence log stays the full, tamper-evident
history; this file is only the current picture, rewritten atomically."""

from __future__ import annotations

import datetime as dt
import json
import time
from pathlib import Path

from .fsutil import atomic_write_text, locked
from . import layout

FILE = layout.name("results")


def _path(data_dir) -> Path:
    return Path(data_dir) / FILE


def read(data_dir) -> dict:
    """{key: {"ok": bool, "at": unix seconds, "at_iso": str, **fields}} for every recorded key."""
    try:
        return json.loads(_path(data_dir).read_text())
    except FileNotFoundError:
        return {}


def record(data_dir, key: str, ok: bool, **fields) -> dict:
    """Record the latest result under `key` (e.g. 'backup.create', 'backup.verify.L3', 'probe.readyz')."""
    now = time.time()
    entry = {"ok": bool(ok), "at": now,
             "at_iso": dt.datetime.fromtimestamp(now, dt.timezone.utc).isoformat(), **fields}
    with locked(layout.path(data_dir, "results_lock")):
        data = read(data_dir)
        data[key] = entry
        if ok:
            data[key + ".last_success"] = entry
        atomic_write_text(_path(data_dir), json.dumps(data, indent=1, sort_keys=True, default=str))
    return entry


CREATED = "installation.created"  # when this installation was first served (the alerts' grace period)


def ensure_created(data_dir) -> float:
    """When the installation was created, recorded by the first `erpctl up` (unix seconds): the oldest
    result already recorded (an installation older than this code), else now. Never changed after."""
    now = time.time()
    with locked(layout.path(data_dir, "results_lock")):
        data = read(data_dir)
        if CREATED not in data:
            at = min([now] + [float(e["at"]) for e in data.values() if isinstance(e, dict) and e.get("at")])
            data[CREATED] = {"ok": True, "at": at,
                             "at_iso": dt.datetime.fromtimestamp(at, dt.timezone.utc).isoformat()}
            atomic_write_text(_path(data_dir), json.dumps(data, indent=1, sort_keys=True, default=str))
        return float(data[CREATED]["at"])


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
