"""Drills run as an operator runs them: `erpctl drill run SCENARIO --fresh --json` on a data directory of
their own, as a process; what the tests read is the record and what is left on the machine."""

from __future__ import annotations

import json
import os
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

from controlplane import layout, procs
from controlplane.drills import sandbox, state
from tests.controlplane.cli_helpers import env, erpctl, erpctl_path  # noqa: F401 - erpctl for the tests

DRILL_TIMEOUT = 600.0
# Scenarios naming an alert are detected by a Prometheus of the drill's own too: its `for` shortened, so a
# fault that lasts (erp-hung) is not held for the shipped minute in every test.
ALERT_FOR = ("--alert-for", "2")


@dataclass
class Ran:
    data_dir: Path
    exit_code: int
    events: list
    stderr: str

    @property
    def record(self) -> dict:
        (rid,) = [e["drill"] for e in self.events if e["event"] == "end"]
        return json.loads(layout.path(self.data_dir, "drill_record", id=rid).read_text())


def start(data_dir: Path, scenario: str, *extra, **env_extra) -> subprocess.Popen:
    data_dir.mkdir(parents=True, exist_ok=True)
    if not {"--alert-for", "--detect"} & set(extra):
        extra = (*extra, *ALERT_FOR)
    return subprocess.Popen([erpctl_path(), "drill", "run", scenario, "--fresh", "--scale", "0", "--json",
                             "--data-dir", str(data_dir), *extra], stdin=subprocess.DEVNULL,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env(**env_extra))


def finish(data_dir: Path, proc: subprocess.Popen) -> Ran:
    out, err = proc.communicate(timeout=DRILL_TIMEOUT)
    events = [json.loads(line) for line in out.splitlines() if line.startswith("{")]
    return Ran(data_dir, proc.returncode, events, err)


def run(data_dir: Path, scenario: str, *extra, **env_extra) -> Ran:
    return finish(data_dir, start(data_dir, scenario, *extra, **env_extra))


def wait_for(what: str, predicate, timeout: float = 240.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.2)
    raise AssertionError(f"timed out waiting for {what}")


def active(data_dir: Path) -> state.Active | None:
    return state.read(data_dir)


def nothing_left(act: state.Active, pids: list[int], admin_url: str | None = None) -> list[str]:
    """What a drill left on the machine: its sandbox's processes, ports, directory, scratch database."""
    left = [f"process {p}" for p in pids if procs.start_ticks(p) is not None and procs.state(p) != "Z"]
    left += [f"port {p}" for p in (act.erp_port, act.ops_port) if p and not sandbox.port_free(p)]
    left += [f"directory {act.sandbox}"] if os.path.exists(act.sandbox) else []
    if act.database and admin_url and sandbox.database_exists(admin_url, act.database):
        left.append(f"database {act.database}")
    return left


def sandbox_pids(act: state.Active) -> list[int]:
    box = act.sandbox_of()
    return [pid for pid, _ in box.pids() if pid]


def sandbox_processes(root: str) -> list[int]:
    return sandbox.standing_in(Path(root))


def left_by(ran: Ran) -> list[str]:
    """What a finished drill left: processes in its sandbox, its ports, its directory, its database."""
    rec = ran.record
    root = str(layout.path(ran.data_dir, "drill_sandbox", id=rec["id"]))
    (serving,) = [e["detail"] for e in rec["timeline"] if e["event"] == "sandbox serving"] or [{}]
    ports = [int(serving["erp_url"].rsplit(":", 1)[1]), serving["ops_port"]] if serving else []
    left = [f"process {p}" for p in sandbox_processes(root)]
    left += [f"port {p}" for p in ports if not sandbox.port_free(p)]
    left += [f"directory {root}"] if os.path.exists(root) else []
    return left
