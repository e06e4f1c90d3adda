"""Liveness of the ERP `erpctl up` serves (a child process: the current release's, or with none the
bundled erp_core), for real: a child SIGSTOPped with its workers (hung: it accepts connections and
never answers), or its main process alone (its workers answer, but nothing would replace one), is
killed and restarted within the documented bound, and every restart counts in
erpctl_erp_restarts_total."""

from __future__ import annotations

import json
import os
import signal
import time
from pathlib import Path

import pytest
import requests

from controlplane.release.process import STOP_GRACE_SECONDS
from controlplane.release.supervisor import (BACKOFF_SECONDS, HEALTH_INTERVAL_SECONDS, HEALTH_TIMEOUT_SECONDS,
                                             UNHEALTHY_AFTER)
from tests.controlplane.cli_helpers import free_ports, log_lines
from tests.controlplane.test_up import _release_data_dir, _serving, _until, up_factory  # noqa: F401 - fixture

START_SECONDS = 20  # the release's ERP starting again on a busy machine
# The documented bound (controlplane/release/supervisor.py): checks, the watch's poll, the stop grace,
# the first back-off.
KILLED_BOUND = UNHEALTHY_AFTER * (HEALTH_INTERVAL_SECONDS + HEALTH_TIMEOUT_SECONDS) + 1 + STOP_GRACE_SECONDS
SERVING_AGAIN_BOUND = KILLED_BOUND + BACKOFF_SECONDS[0] + START_SECONDS


def restarts_metric(ops: str) -> float:
    text = requests.get(ops + "/metrics", timeout=5).text
    (line,) = [ln for ln in text.splitlines() if ln.startswith("erpctl_erp_restarts_total ")]
    return float(line.split()[1])


@pytest.mark.parametrize("served", ["release 1.0", "bundled"])
def test_a_hung_erp_is_killed_and_restarted_within_the_bound(tmp_path, up_factory, served):  # noqa: F811
    from tests.controlplane.test_release import WHEEL_1_0

    data = _release_data_dir(tmp_path, WHEEL_1_0) if served != "bundled" else tmp_path / "data"
    erp_port, ops_port = free_ports(2)
    erp, ops = f"http://127.0.0.1:{erp_port}", f"http://127.0.0.1:{ops_port}"
    up = up_factory("--json", "up", "--data-dir", data, "--erp-port", erp_port, "--ops-port", ops_port)
    info = json.loads(up.wait_for_line(r"^\{.*\"event\": \"started\".*\}$").group(0))
    first = _serving(data)["pid"]
    assert first != up.proc.pid and _serving(data)["bundled"] is (served == "bundled")
    assert (info["release"] is None) if served == "bundled" else info["release"]["pid"] == first
    version = "1.0.0" if served != "bundled" else info["erp_version"]
    assert restarts_metric(ops) == 0

    t0, t0_wall = time.monotonic(), time.time()
    os.killpg(first, signal.SIGSTOP)  # the ERP's processes: the child and, with several workers, its workers
    try:
        requests.get(erp + "/healthz", timeout=1)
        raise AssertionError("a stopped ERP answered")
    except requests.Timeout:
        pass
    second = _until("the hung ERP restarted", lambda: (lambda s: s["state"] == "serving" and s["pid"] != first
                                                       and requests.get(erp + "/healthz", timeout=2).ok
                                                       and s["pid"])(_serving(data)),
                    timeout=SERVING_AGAIN_BOUND + 30)
    took = time.monotonic() - t0
    recs = log_lines(up.stderr)
    (hung,) = [r for r in recs if r["msg"].startswith("the ERP is hung")]
    (exited,) = [r for r in recs if r["msg"] == "the ERP exited unexpectedly: restarting it"]
    killed_after = _at(exited) - t0_wall
    print(f"\nhung ERP ({served}, SIGSTOP): killed after {killed_after:.1f} s (bound {KILLED_BOUND:.0f} s), serving again "
          f"after {took:.1f} s (bound {SERVING_AGAIN_BOUND:.0f} s: back-off {BACKOFF_SECONDS[0]} s, start-up up to "
          f"{START_SECONDS} s)")
    assert took <= SERVING_AGAIN_BOUND, f"{took:.1f}s"
    assert exited["returncode"] == -signal.SIGKILL and exited["pid"] == first, exited
    assert hung["failed_checks"] == UNHEALTHY_AFTER and hung["pid"] == first
    assert killed_after <= KILLED_BOUND + 1, f"killed after {killed_after:.1f}s"
    assert not Path(f"/proc/{first}").exists()
    assert _serving(data)["restarts"] == 1 and restarts_metric(ops) == 1
    assert requests.get(erp + "/healthz", timeout=5).json()["version"] == version

    rc = up.stop(signal.SIGTERM)[0]
    assert rc == 0 and not Path(f"/proc/{second}").exists(), up.stderr


def _at(record: dict) -> float:
    from datetime import datetime
    return datetime.fromisoformat(record["ts"].replace("Z", "+00:00")).timestamp()
