"""`erpctl stop`: end this installation's `erpctl up` (and an ERP child it left behind), wait for the exit."""

from __future__ import annotations

import datetime as dt
import time
from contextlib import contextmanager

from .. import procs
from ..errors import StopFailed
from ..evidence import EvidenceLog
from ..fsutil import locked
from ..installation import Installation, RuntimeRecord
from . import running

# `erpctl up` stops its ERP child with a grace of 10 s (release/process.py STOP_GRACE_SECONDS) before it
# kills it, then the ops console (2 s): a hung ERP takes up to ~13 s to stop cleanly. The default gives
# that and a margin before SIGKILL; the systemd unit's TimeoutStopSec is longer still.
DEFAULT_TIMEOUT_SECONDS = 30.0
ORPHAN_GRACE_SECONDS = 10.0


@contextmanager
def lifecycle_lock(inst: Installation):
    """One `erpctl stop` or `erpctl restart` at a time on a data directory."""
    with locked(inst.path("lifecycle_lock")):
        yield


def stop(inst: Installation, timeout: float = DEFAULT_TIMEOUT_SECONDS) -> dict:
    """Stop this installation's `erpctl up`; what was done. Nothing running is a success that says so."""
    if not inst.data_dir.is_dir():
        return _nothing(inst, f"there is no data directory at {inst.data_dir}")
    with lifecycle_lock(inst):
        result = stop_locked(inst, timeout)
        if result["stopped"]:
            EvidenceLog(inst.data_dir).append("erpctl.stop", _evidence(result))
        return result


def stop_locked(inst: Installation, timeout: float) -> dict:
    """The stop itself, under the lifecycle lock, without an evidence record."""
    t0 = time.monotonic()
    rec = inst.runtime()
    up, why = running.find(inst, rec)
    if up is None and running.orphan_erp(inst, rec) is None:
        return _nothing(inst, why, rec)
    result = {**_nothing(inst, why, rec), "stopped": True, "was_running": up is not None}
    if up is not None:
        result["signal"] = _end(inst, up, "erpctl up", timeout)
    if rec.pid:
        _mark_stopped(inst, int(rec.pid), result["signal"])
    orphan = running.orphan_erp(inst, rec)
    if orphan is not None:  # erpctl up was killed (now or before) and its ERP child still holds the port
        result["erp_child"] = {"pid": orphan.pid, "signal": _end(inst, orphan, "its ERP", ORPHAN_GRACE_SECONDS)}
    result["seconds"] = round(time.monotonic() - t0, 2)
    return result


def _nothing(inst: Installation, why: str, rec: RuntimeRecord | None = None) -> dict:
    return {"data_dir": str(inst.data_dir), "stopped": False, "was_running": False, "message": why,
            "pid": rec.pid if rec else None, "signal": None, "erp_child": None, "seconds": 0.0}


def _end(inst: Installation, proc: running.Process, what: str, grace: float) -> str | None:
    try:
        return procs.terminate(proc.pid, proc.ticks, grace)
    except PermissionError:
        raise StopFailed(f"not allowed to signal {what} (pid {proc.pid}) of {inst.data_dir}",
                         fix="Run erpctl stop as the user that runs erpctl up (or as root).", pid=proc.pid) from None
    except TimeoutError as exc:
        raise StopFailed(f"{what} (pid {proc.pid}) of {inst.data_dir} did not end: {exc}",
                         fix="A process that outlives SIGKILL waits on the kernel (state D: a hung disk or NFS "
                             "mount); check 'cat /proc/<pid>/stack' and the storage, then run erpctl stop again.",
                         pid=proc.pid) from None


def _mark_stopped(inst: Installation, pid: int, signal: str | None) -> None:
    """A killed `erpctl up` could not say it stopped: say it for it (a clean one has already)."""
    rec = inst.runtime()
    if rec.pid != pid or (not rec.running and rec.stopped_at):
        return
    rec.running, rec.stopped_at = False, dt.datetime.now(dt.timezone.utc).isoformat()
    rec.stopped_by = f"erpctl stop ({signal})" if signal else "erpctl stop (it had ended without saying so)"
    inst.write_runtime(rec)


def _evidence(result: dict) -> dict:
    return {k: result[k] for k in ("data_dir", "pid", "was_running", "signal", "erp_child", "seconds")}
