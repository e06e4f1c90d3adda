"""Failpoints: named places where a test (or a drill) can make a long operation die or fail for real.

ERPCTL_FAILPOINTS="name=action,name=action" with action `kill` (SIGKILL this process: nothing runs
after it, as in a power cut), `fail` (raise InjectedFault there) or `sleep:SECONDS`. Unset, a
failpoint costs one dictionary lookup.
"""

from __future__ import annotations

import os
import signal
import time

ENV = "ERPCTL_FAILPOINTS"


class InjectedFault(RuntimeError):
    """A failure injected through ERPCTL_FAILPOINTS."""


def _points() -> dict[str, str]:
    spec = os.environ.get(ENV, "")
    out = {}
    for item in filter(None, (s.strip() for s in spec.split(","))):
        name, _, action = item.partition("=")
        out[name.strip()] = action.strip() or "fail"
    return out


def failpoint(name: str) -> None:
    action = _points().get(name)
    if action is None:
        return
    if action == "kill":
        os.kill(os.getpid(), signal.SIGKILL)
        time.sleep(10)  # SIGKILL is delivered asynchronously; never run past the point
    if action.startswith("sleep:"):
        time.sleep(float(action.split(":", 1)[1]))
        return
    raise InjectedFault(f"injected failure at {name}")
