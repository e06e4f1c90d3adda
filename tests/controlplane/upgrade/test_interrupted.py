"""`erpctl upgrade status` tells a running upgrade from one whose process is gone: a real `erpctl upgrade
apply` held at a failpoint, then SIGKILLed; a state whose pid now belongs to another process."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import time

import pytest

from controlplane import procs
from controlplane.upgrade import state as upgrade_state
from tests.controlplane.cli_helpers import env as cli_env
from tests.controlplane.cli_helpers import erpctl, erpctl_path

INTERRUPTED_EXIT = 47
NEXT = ["erpctl upgrade resume", "erpctl upgrade rollback"]


def wait_for(path, proc: subprocess.Popen, timeout: float = 180) -> None:
    deadline = time.monotonic() + timeout
    while not path.exists():
        assert proc.poll() is None, proc.communicate()
        assert time.monotonic() < deadline, f"{path} did not appear within {timeout} s"
        time.sleep(0.05)


@pytest.mark.parametrize("site", ["sqlite"], indirect=True)
def test_status_after_a_sigkilled_apply_says_interrupted_names_the_commands_and_resume_finishes(site, tmp_path):
    pause = tmp_path / "paused-in-backfill"
    proc = subprocess.Popen([erpctl_path(), "upgrade", "apply", "--offline", "--confirm-contract", *site.args()],
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
                            env=cli_env(**site.env, ERPCTL_FAILPOINTS=f"upgrade.backfill.batch=pause:{pause}"))
    try:
        wait_for(pause, proc)
        running = site.ok_json("upgrade", "status")
        assert running["stage"] == "backfill" and running["alive"] is True and running["interrupted"] is None
        assert running["runner"]["pid"] == proc.pid and running["runner"]["command"] == "apply"
        assert f"running: pid {proc.pid}" in site.ok("upgrade", "status").stdout
    finally:
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=30)
    pause.unlink()

    shown = site.erpctl("upgrade", "status")
    assert shown.returncode == INTERRUPTED_EXIT, shown.stdout + shown.stderr
    assert f"interrupted: the process that ran it (pid {proc.pid}) is gone" in shown.stdout
    assert "'erpctl upgrade resume'" in shown.stdout and "'erpctl upgrade rollback'" in shown.stdout
    assert "ETA" not in shown.stdout  # nothing is moving
    assert "erpctl upgrade resume" in shown.stderr  # the error's fix says it too
    as_json = site.erpctl("--json", "upgrade", "status")
    assert as_json.returncode == INTERRUPTED_EXIT
    r = json.loads(as_json.stdout)
    assert (r["status"], r["stage"], r["alive"], r["next"]) == ("running", "backfill", False, NEXT)

    done = site.ok_json("upgrade", "resume", "--offline", "--confirm-contract", timeout=600)
    assert done["status"] == "done", done
    assert site.ok_json("upgrade", "status")["status"] == "none"


def test_a_pid_reused_by_another_process_is_not_taken_for_the_upgrade(tmp_path):
    """The recorded pid runs, but it is another process (another start time): interrupted all the same."""
    data = tmp_path / "data"
    st = upgrade_state.new(runner={"pid": os.getpid(), "pid_start": procs.start_ticks(os.getpid()) - 1,
                                   "host": socket.gethostname(), "command": "apply"}, to_version="9.9")
    st.stage = "verify"
    upgrade_state.save(data, st)
    r = erpctl("upgrade", "status", "--data-dir", data)
    assert r.returncode == INTERRUPTED_EXIT, r.stdout + r.stderr
    assert f"(pid {os.getpid()}) is gone (pid {os.getpid()} is now another process)" in r.stdout

    st.runner["pid_start"] += 1  # now it is this very process: alive
    upgrade_state.save(data, st)
    r = erpctl("--json", "upgrade", "status", "--data-dir", data)
    assert r.returncode == 0 and json.loads(r.stdout)["alive"] is True

    st.runner["host"] = "another-host"  # a shared data directory: cannot be told from here
    upgrade_state.save(data, st)
    r = erpctl("upgrade", "status", "--data-dir", data)
    assert r.returncode == 0 and "it ran on host another-host" in r.stdout
