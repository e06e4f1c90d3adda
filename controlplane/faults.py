"""Failpoints: named places where a test (or a drill) can make a long operation die or fail for real.

The one fault-injection mechanism of the control plane. ERPCTL_FAILPOINTS="name=action,name=action":

    kill            SIGKILL this process: nothing runs after it, as in a power cut
    fail            raise InjectedFault there
    errno:NAME      raise OSError(errno.NAME) there, e.g. errno:ENOSPC for a full disk
    sleep:SECONDS   wait, then go on
    pause:PATH      create PATH (holding this process's id), wait until it is removed, then go on:
                    a test sees the operation stopped there, looks around, and lets it go

An action ending in @N fires on the N-th time this process reaches the point (e.g. `kill@3`);
earlier passes go on. Unset, a failpoint costs one dictionary lookup.

The failpoints (grep `failpoint(`): upgrade.before.<stage>, upgrade.after.<stage>,
upgrade.migration.<stage>, upgrade.backfill.batch, upgrade.switch.after_set_current,
upgrade.rollback.before_downgrade, restore.before_swap, restore.after_swap, backup.pack.uploaded,
backup.prune.step, up.prepared (erpctl up has recorded itself, before it serves), runbook.step.before
(a runbook run, before a step's first block).
"""

from __future__ import annotations

import errno
import os
import signal
import threading
import time
from pathlib import Path

ENV = "ERPCTL_FAILPOINTS"
PAUSE_LIMIT_SECONDS = 600.0

_hits: dict[str, int] = {}
_hits_lock = threading.Lock()


class InjectedFault(RuntimeError):
    """A failure injected through ERPCTL_FAILPOINTS."""


def _points() -> dict[str, str]:
    spec = os.environ.get(ENV, "")
    out = {}
    for item in filter(None, (s.strip() for s in spec.split(","))):
        name, _, action = item.partition("=")
        out[name.strip()] = action.strip() or "fail"
    return out


def _due(name: str, action: str) -> tuple[bool, str]:
    """(whether this pass fires, the action without its @N)."""
    base, at, nth = action.rpartition("@")
    if not at or not nth.isdigit():
        return True, action
    with _hits_lock:
        _hits[name] = _hits.get(name, 0) + 1
        return _hits[name] == int(nth), base


def failpoint(name: str) -> None:
    action = _points().get(name)
    if action is None:
        return
    due, action = _due(name, action)
    if not due:
        return
    kind, _, arg = action.partition(":")
    if kind == "kill":
        os.kill(os.getpid(), signal.SIGKILL)
        time.sleep(10)  # SIGKILL is delivered asynchronously; never run past the point
    if kind == "sleep":
        time.sleep(float(arg))
        return
    if kind == "pause":
        _pause(name, Path(arg))
        return
    if kind == "errno":
        code = getattr(errno, arg, None)
        if not isinstance(code, int):
            raise InjectedFault(f"failpoint {name}: {arg!r} is not an errno name (e.g. ENOSPC)")
        raise OSError(code, os.strerror(code))
    raise InjectedFault(f"injected failure at {name}")


def _pause(name: str, path: Path) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}")
    tmp.write_text(str(os.getpid()))
    os.replace(tmp, path)  # whoever sees the file sees the pid in it
    deadline = time.monotonic() + PAUSE_LIMIT_SECONDS
    while path.exists():
        if time.monotonic() > deadline:
            raise InjectedFault(f"failpoint {name}: {path} was not removed within {PAUSE_LIMIT_SECONDS:.0f} s")
        time.sleep(0.02)
