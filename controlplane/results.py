"""The latest result of each kind of operation (backup, verification, restore test, upgrade, probe,
runbook, drill), kept in the data directory so the exporter, `erpctl status` and the console can
read them without scanning the evidence log. The evidence log stays the full, tamper-evident
history; this file is only the current picture, rewritten atomically."""

from __future__ import annotations

import contextlib
import datetime as dt
import fcntl
import json
import os
import time
from pathlib import Path

FILE = "results.json"


def _path(data_dir) -> Path:
    return Path(data_dir) / FILE


@contextlib.contextmanager
def _locked(data_dir):
    Path(data_dir).mkdir(parents=True, exist_ok=True)
    with open(Path(data_dir) / ".results.lock", "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


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
    with _locked(data_dir):
        data = read(data_dir)
        data[key] = entry
        if ok:
            data[key + ".last_success"] = entry
        tmp = _path(data_dir).with_suffix(".tmp")
        tmp.write_text(json.dumps(data, indent=1, sort_keys=True, default=str))
        with open(tmp, "rb+") as f:
            os.fsync(f.fileno())
        os.replace(tmp, _path(data_dir))
    return entry
