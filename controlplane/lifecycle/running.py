"""The `erpctl up` that runtime.json records, verified to be that process and to serve this data directory."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from .. import procs
from ..config import DEFAULT_DATA_DIR
from ..installation import Installation, RuntimeRecord


@dataclass(frozen=True)
class Process:
    """A process identified by its pid and its start time."""

    pid: int
    ticks: int | None


def find(inst: Installation, rec: RuntimeRecord) -> tuple[Process | None, str]:
    """This installation's running `erpctl up`, else None and why nothing of it runs."""
    if not rec.pid:
        return None, "no 'erpctl up' has served this data directory yet (no runtime.json)"
    pid = int(rec.pid)
    if not procs.is_same(pid, rec.pid_start):
        if procs.start_ticks(pid) is not None and procs.state(pid) != "Z":
            return None, (f"the 'erpctl up' recorded (pid {pid}) has ended; that pid now belongs to another "
                          "process, which is left alone")
        return None, f"the 'erpctl up' recorded (pid {pid}) has ended"
    if procs.erpctl_up_args(pid) is None:
        return None, f"pid {pid}, recorded as 'erpctl up', runs something else: left alone"
    served = procs.erpctl_up_data_dir(pid, DEFAULT_DATA_DIR)
    if served is None and rec.pid_start is None:  # a record without the start time: the directory must match
        return None, f"pid {pid} is 'erpctl up' on a data directory that cannot be told: left alone"
    if served is not None and served != Path(inst.data_dir).resolve():
        return None, f"pid {pid} is 'erpctl up' on another data directory ({served}): left alone"
    return Process(pid, procs.start_ticks(pid)), ""


def orphan_erp(inst: Installation, rec: RuntimeRecord) -> Process | None:
    """The ERP child of the recorded `erpctl up` when it outlived it (erpctl up was killed and its child
    hangs): the pid serving.json names for that `erpctl up`, still the launcher on the recorded ERP port,
    started after it."""
    serving = inst.serving()
    if serving is None or not serving.pid or not rec.pid or serving.erpctl_pid != rec.pid:
        return None
    pid = int(serving.pid)
    ticks = procs.start_ticks(pid)
    if ticks is None or procs.state(pid) == "Z" or (rec.pid_start is not None and ticks < rec.pid_start):
        return None
    if rec.erp_port is None or procs.erp_child_port(pid) != rec.erp_port:
        return None
    return Process(pid, ticks)
