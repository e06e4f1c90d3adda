"""Failpoints (controlplane/faults.py), in real processes: each action does what ERPCTL_FAILPOINTS says."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

# Passes the failpoint "demo.point" three times, printing a line after each pass.
CHILD = """
from controlplane.faults import failpoint
for i in range(1, 4):
    failpoint("demo.point")
    print("passed", i, flush=True)
"""


def run_child(spec: str | None, **kw) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k != "ERPCTL_FAILPOINTS"}
    if spec is not None:
        env["ERPCTL_FAILPOINTS"] = spec
    return subprocess.run([sys.executable, "-c", CHILD], capture_output=True, text=True, env=env, timeout=60, **kw)


def passes(r: subprocess.CompletedProcess) -> int:
    return len(r.stdout.splitlines())


def test_unset_or_other_points_change_nothing():
    for spec in (None, "", "other.point=kill"):
        r = run_child(spec)
        assert r.returncode == 0 and passes(r) == 3, r.stderr


def test_kill_at_the_nth_pass():
    r = run_child("demo.point=kill@2")
    assert r.returncode == -signal.SIGKILL and passes(r) == 1
    r = run_child("other.point=fail, demo.point=kill")
    assert r.returncode == -signal.SIGKILL and passes(r) == 0


def test_fail_and_errno():
    r = run_child("demo.point=fail@3")
    assert r.returncode == 1 and passes(r) == 2 and "InjectedFault: injected failure at demo.point" in r.stderr
    r = run_child("demo.point=errno:ENOSPC")
    assert r.returncode == 1 and passes(r) == 0 and "OSError: [Errno 28] No space left on device" in r.stderr
    r = run_child("demo.point=errno:ENOSUCH")
    assert r.returncode == 1 and "'ENOSUCH' is not an errno name" in r.stderr


def test_pause_until_the_file_is_removed(tmp_path):
    flag = tmp_path / "paused"
    proc = subprocess.Popen([sys.executable, "-c", CHILD], stdout=subprocess.PIPE, text=True,
                            env={**os.environ, "ERPCTL_FAILPOINTS": f"demo.point=pause:{flag}@2"})
    deadline = time.monotonic() + 30
    while not flag.exists() and time.monotonic() < deadline:
        time.sleep(0.01)
    assert flag.read_text() == str(proc.pid)
    time.sleep(0.3)
    assert proc.poll() is None, "the process went on while paused"
    flag.unlink()
    out, _ = proc.communicate(timeout=30)
    assert proc.returncode == 0 and out.split() == ["passed", "1", "passed", "2", "passed", "3"]


def test_sleep_then_go_on():
    t0 = time.monotonic()
    r = run_child("demo.point=sleep:0.3")
    assert r.returncode == 0 and passes(r) == 3 and time.monotonic() - t0 >= 0.9
